"""Volume rendering of a radiance field inside a sphere: nerfacc's kernels, or pure torch.

Three paths, one interface and one result (up to sampling), chosen by `method`:
- "nerfacc" (auto on CUDA when its compiled kernels load): `OccGridEstimator` ray marching
  (step = diameter / samples) over our occupancy mask, packed samples, `nerfacc.rendering`. The
  stratified jitter (one random start offset per ray, as nerfacc's own `stratified=True` does) is
  handed over as t_min. `importance_samples` is not used there: the grid already marches only
  through occupied cells.
- "packed" (auto everywhere else: CPU, or CUDA without any build): `samples_per_ray` stratified
  bins between each ray's entry and exit of the sphere, culled by the occupancy grid before the
  field runs, composited as a packed list in pure torch (packed.py); the field runs in chunks,
  checkpointed when there are several, so memory grows with the occupied samples of a chunk.
- "batched": the same bins on a (rays, bins) grid through nerfacc's plain-torch batched
  functions (batched.py): the reference the packed path is tested against.
With `importance_samples` > 0 the packed and batched paths add that many samples per ray drawn
from a coarse pass's weights (the official ProlificDreamer code's 64 + 32; importance.py).
Every path draws its jitter as one offset per ray on the rays' device, from a device generator
seeded by one draw from `gen` (jitter.py): no per-sample host draws, no host→device copy.
Rays that miss the sphere cost nothing. With `early_stop_eps` > 0 and gradients on, a
density-only pass without autograd first finds where each ray's transmittance falls below it, and
only the samples before that get the full forward/backward pass (nerfacc's early stop). On CPU
that extra pass costs about what it saves for the soft blob-initialised fields of stage 1, hence
off by default there; on CUDA (either path) it is on at 1e-4.

Compositing is rgb = Σ wᵢ albedoᵢ + (1 − opacity) · background, per pixel.
"""
from __future__ import annotations

from dataclasses import dataclass

import nerfacc
import torch

from .. import accel
from ..cameras import Cameras
from ..field.occupancy import OccupancyGrid
from .batched import render_batched
from .geometry import sphere_intersect
from .jitter import device_generator, ray_offsets
from .packed import DEFAULT_CHUNK, render_packed, run_field, sample_normals

METHODS = ("auto", "packed", "batched", "nerfacc")


@dataclass
class RenderOutput:
    rgb: torch.Tensor  # (B, H, W, 3) composited over the background
    opacity: torch.Tensor  # (B, H, W, 1) Σ wᵢ
    depth: torch.Tensor  # (B, H, W, 1) Σ wᵢ tᵢ / opacity along the unit ray (0 where empty)
    normal: torch.Tensor | None  # (B, H, W, 3) Σ wᵢ nᵢ, world space, detached; length ≈ opacity
    # (B, H, W, 1) Σ wᵢ (tᵢ − depth)² / opacity: how far along the ray the weight is spread (0 for
    # a hard surface); scene mode's z-variance regulariser pulls it down (nerf.lambda_z_variance)
    depth_variance: torch.Tensor | None = None


def render_volume(field, cameras: Cameras, background: torch.Tensor, samples_per_ray: int, radius: float,
                  gen: torch.Generator | None = None, occupancy: OccupancyGrid | None = None,
                  want_normals: bool = False, early_stop_eps: float | None = None, method: str = "auto",
                  chunk: int = DEFAULT_CHUNK, importance_samples: int = 0) -> RenderOutput:
    """Render `field` (with .density(x) and forward(x) → (σ, albedo)) from `cameras`.

    background: (B, H, W, 3) colours behind the field (see field.background.choose_background).
    gen: the stage's generator: one draw from it seeds the device generator of the per-ray jitter;
        None puts samples at bin midpoints (deterministic).
    occupancy: skip samples in empty cells; None evaluates every sample inside the sphere.
    early_stop_eps: transmittance below which samples are skipped; None = 1e-4 on CUDA, 0 (off) on CPU.
    method: "auto" (nerfacc's kernels where they load, else packed), "packed", "batched" or "nerfacc".
    chunk: samples per field call on the packed path (checkpointed per chunk when there are several).
    importance_samples: fine samples per ray drawn from the coarse weights (packed and batched paths).
    """
    bsz, h, w = cameras.batch, cameras.height, cameras.width
    if background.shape != (bsz, h, w, 3):
        raise ValueError(f"background must be (B, H, W, 3) = {(bsz, h, w, 3)}, got {tuple(background.shape)}")
    if samples_per_ray < 1:
        raise ValueError(f"samples_per_ray = {samples_per_ray}: must be ≥ 1")
    if method not in METHODS:
        raise ValueError(f"method = {method!r}: use one of {', '.join(map(repr, METHODS))}")
    if chunk < 1:
        raise ValueError(f"chunk = {chunk}: samples per field call, must be ≥ 1")
    if importance_samples < 0:
        raise ValueError(f"importance_samples = {importance_samples}: must be ≥ 0 (0: no importance resampling)")
    origins, dirs = cameras.rays()
    o, d = origins.reshape(-1, 3), dirs.reshape(-1, 3)
    dgen = device_generator(gen, o.device)
    if method == "auto":
        method = "nerfacc" if o.is_cuda and accel.allowed("nerfacc") and _nerfacc_kernels() else "packed"
    if method == "nerfacc" and not (o.is_cuda and _nerfacc_kernels()):
        raise RuntimeError("method='nerfacc' needs CUDA rays and nerfacc's compiled kernels: use 'auto' or 'packed'")
    eps = (1e-4 if o.is_cuda else 0.0) if early_stop_eps is None else early_stop_eps
    if method == "nerfacc":
        acc = _render_nerfacc(field, o, d, samples_per_ray, radius, dgen, occupancy, want_normals, eps, chunk)
    elif method == "batched":
        acc = render_batched(field, o, d, samples_per_ray, radius, dgen, occupancy, want_normals, eps,
                             importance_samples)
    else:
        acc = _render_torch_packed(field, o, d, samples_per_ray, radius, dgen, occupancy, want_normals, eps, chunk,
                                   importance_samples)
    rgb, opacity, depth, normal, depth_sq = acc
    bg = background.reshape(-1, 3).to(rgb.dtype)
    rgb = rgb + (1.0 - opacity) * bg
    variance = (depth_sq / opacity.clamp_min(1e-10) - depth ** 2).clamp_min(0.0)

    def img(t: torch.Tensor | None) -> torch.Tensor | None:
        return None if t is None else t.view(bsz, h, w, t.shape[-1])

    return RenderOutput(img(rgb), img(opacity), img(depth), img(normal), img(variance))


def _render_torch_packed(field, o, d, samples, radius, dgen, occupancy, want_normals, eps, chunk, fine):
    """The packed path over the rays that hit the sphere, scattered back to every ray."""
    n_rays = o.shape[0]
    t0, t1, hit = sphere_intersect(o, d, radius)
    ids = hit.nonzero().squeeze(1)
    outs = [o.new_zeros(n_rays, c) for c in (3, 1, 1)] + [o.new_zeros(n_rays, 3) if want_normals else None,
                                                           o.new_zeros(n_rays, 1)]
    if ids.numel() == 0:
        return tuple(outs)
    acc = render_packed(field, o[ids], d[ids], t0[ids], t1[ids], samples, dgen, occupancy, want_normals, eps, chunk,
                        fine)
    return tuple(None if a is None else full.index_put((ids,), a) for full, a in zip(outs, acc, strict=True))


def _nerfacc_kernels() -> bool:
    """Whether nerfacc's CUDA extension loads (accel.nerfacc_kernels: tried once; a job announces a build)."""
    return accel.nerfacc_kernels()


def _estimator(occupancy: OccupancyGrid | None, radius: float, device: torch.device):
    """nerfacc OccGridEstimator over the field's cube, reusing our mask (one source of truth)."""
    res = occupancy.resolution if occupancy is not None else 1
    key = (res, float(radius), str(device))
    holder = occupancy if occupancy is not None else _estimator
    cache = getattr(holder, "_nerfacc_estimator", None)
    if cache is None or cache[0] != key:
        est = nerfacc.OccGridEstimator(roi_aabb=[-radius] * 3 + [radius] * 3, resolution=res).to(device)
        cache = (key, est)
        holder._nerfacc_estimator = cache
    est = cache[1]
    if occupancy is not None:
        est.binaries.copy_(occupancy.mask.to(device)[None])
    else:
        est.binaries.fill_(True)
    return est


def march_start_jitter(n_rays: int, step: float, dgen: torch.Generator | None, device: torch.device | str,
                       dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Per-ray start offsets U[0, step) from the device generator `dgen` (zeros when None), on `device`.

    nerfacc's `stratified=True` adds `rand_like(near) * step` from torch's global generator; this
    is the same jitter from the job's generator (jitter.device_generator), drawn on the device.
    """
    if dgen is None:
        return torch.zeros(n_rays, device=device, dtype=dtype)
    return ray_offsets(n_rays, dgen, device, dtype) * step


def _render_nerfacc(field, o, d, samples, radius, dgen, occupancy, want_normals, eps, chunk):
    """CUDA: nerfacc ray marching over the occupancy mask, packed samples."""
    n_rays = o.shape[0]
    est = _estimator(occupancy, radius, o.device)
    step = 2 * radius / samples
    t0, t1, hit = sphere_intersect(o, d, radius)
    t1 = torch.where(hit, t1, t0)
    t0 = t0 + march_start_jitter(n_rays, step, dgen, o.device, t0.dtype)  # nerfacc starts at max(near, t_min)

    def positions(ts, te, ri):
        return o[ri] + d[ri] * ((ts + te) / 2)[:, None]

    def sigma_fn(ts, te, ri):
        return field.density(positions(ts, te, ri))

    def rgb_sigma_fn(ts, te, ri):
        # without autograd (previews, evaluation) in chunks: one call's activations on every sample of
        # a 512² view are gigabytes even though none of them is kept
        pts = positions(ts, te, ri)
        sigma, rgb = field(pts) if torch.is_grad_enabled() else run_field(field, pts, chunk)
        return rgb, sigma

    ri, ts, te = est.sampling(o, d, sigma_fn=sigma_fn if torch.is_grad_enabled() else None, t_min=t0, t_max=t1,
                              render_step_size=step, stratified=False, early_stop_eps=eps)
    rgb, opacity, depth, extras = nerfacc.rendering(ts, te, ri, n_rays=n_rays, rgb_sigma_fn=rgb_sigma_fn)
    depth_sq = nerfacc.accumulate_along_rays(extras["weights"], ((ts + te) / 2)[:, None] ** 2, ri, n_rays)
    normal = None
    if want_normals:
        n = sample_normals(field, positions(ts, te, ri))  # chunked: bounded peak on all samples
        normal = nerfacc.accumulate_along_rays(extras["weights"].detach(), n, ri, n_rays)
    return rgb, opacity, depth, normal, depth_sq
