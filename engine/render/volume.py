"""Volume rendering of a radiance field inside a sphere, through nerfacc.

Two paths, one interface and one result (up to sampling):
- CUDA with nerfacc's compiled kernels: `OccGridEstimator` ray marching (step = diameter / samples)
  over our occupancy mask, packed samples, `nerfacc.rendering`. The stratified jitter (one random
  start offset per ray, as nerfacc's own `stratified=True` does) is drawn from `gen` here and
  handed over as t_min, so the job's seed fixes it and torch's global RNG is never touched.
- Otherwise (CPU, or CUDA without the kernels): `samples_per_ray` stratified bins between each
  ray's entry and exit of the sphere, weights from nerfacc's batched (non-packed)
  `render_weight_from_density` and `accumulate_along_rays`, which are plain torch and run on CPU.
  Only samples in occupied cells reach the field (others have σ = 0); rays that miss the sphere
  cost nothing. With `early_stop_eps` > 0 and gradients on, a density-only pass without autograd
  first finds where each ray's transmittance falls below it, and only the samples before that get
  the full forward/backward pass (nerfacc's early stop). On CPU that extra pass costs about what
  it saves for the soft blob-initialised fields of stage 1, hence off by default there.

Compositing is rgb = Σ wᵢ albedoᵢ + (1 − opacity) · background, per pixel.
"""
from __future__ import annotations

from dataclasses import dataclass

import nerfacc
import torch

from .. import accel
from ..cameras import Cameras
from ..field.occupancy import OccupancyGrid


@dataclass
class RenderOutput:
    rgb: torch.Tensor  # (B, H, W, 3) composited over the background
    opacity: torch.Tensor  # (B, H, W, 1) Σ wᵢ
    depth: torch.Tensor  # (B, H, W, 1) Σ wᵢ tᵢ / opacity along the unit ray (0 where empty)
    normal: torch.Tensor | None  # (B, H, W, 3) Σ wᵢ nᵢ, world space, detached; length ≈ opacity


def sphere_intersect(o: torch.Tensor, d: torch.Tensor, radius: float) -> tuple[torch.Tensor, ...]:
    """Entry/exit distances (clamped to ≥ 0, so a camera inside sees from 0) and a hit mask."""
    b = (o * d).sum(-1)
    c = (o * o).sum(-1) - radius * radius
    disc = b * b - c
    root = disc.clamp_min(0).sqrt()
    t0 = (-b - root).clamp_min(0.0)
    t1 = -b + root
    return t0, t1, (disc > 0) & (t1 > t0)


def render_volume(field, cameras: Cameras, background: torch.Tensor, samples_per_ray: int, radius: float,
                  gen: torch.Generator | None = None, occupancy: OccupancyGrid | None = None,
                  want_normals: bool = False, early_stop_eps: float | None = None) -> RenderOutput:
    """Render `field` (with .density(x) and forward(x) → (σ, albedo)) from `cameras`.

    background: (B, H, W, 3) colours behind the field (see field.background.choose_background).
    gen: stratified jitter inside each bin; None puts samples at bin midpoints (deterministic).
    occupancy: skip samples in empty cells; None evaluates every sample inside the sphere.
    early_stop_eps: transmittance below which samples are skipped; None = 1e-4 on the CUDA path, 0
    (off) on the batched path.
    """
    bsz, h, w = cameras.batch, cameras.height, cameras.width
    if background.shape != (bsz, h, w, 3):
        raise ValueError(f"background must be (B, H, W, 3) = {(bsz, h, w, 3)}, got {tuple(background.shape)}")
    if samples_per_ray < 1:
        raise ValueError(f"samples_per_ray = {samples_per_ray}: must be ≥ 1")
    origins, dirs = cameras.rays()
    o, d = origins.reshape(-1, 3), dirs.reshape(-1, 3)
    if o.is_cuda and accel.allowed("nerfacc") and _nerfacc_kernels():
        eps = 1e-4 if early_stop_eps is None else early_stop_eps
        acc = _render_packed(field, o, d, samples_per_ray, radius, gen, occupancy, want_normals, eps)
    else:
        eps = 0.0 if early_stop_eps is None else early_stop_eps
        acc = _render_batched(field, o, d, samples_per_ray, radius, gen, occupancy, want_normals, eps)
    rgb, opacity, depth, normal = acc
    bg = background.reshape(-1, 3).to(rgb.dtype)
    rgb = rgb + (1.0 - opacity) * bg

    def img(t: torch.Tensor | None) -> torch.Tensor | None:
        return None if t is None else t.view(bsz, h, w, t.shape[-1])

    return RenderOutput(img(rgb), img(opacity), img(depth), img(normal))


def _render_batched(field, o, d, samples, radius, gen, occupancy, want_normals, eps):
    """Per-ray stratified bins over the sphere chord; returns unpadded (n_rays, C) accumulations."""
    n_rays, dev, dt = o.shape[0], o.device, o.dtype
    out_rgb = torch.zeros(n_rays, 3, device=dev, dtype=dt)
    out_opacity = torch.zeros(n_rays, 1, device=dev, dtype=dt)
    out_depth = torch.zeros(n_rays, 1, device=dev, dtype=dt)
    out_normal = torch.zeros(n_rays, 3, device=dev, dtype=dt) if want_normals else None
    t0, t1, hit = sphere_intersect(o, d, radius)
    ids = hit.nonzero().squeeze(1)
    if ids.numel() == 0:
        return out_rgb, out_opacity, out_depth, out_normal
    o, d, t0, t1 = o[ids], d[ids], t0[ids], t1[ids]
    edges = torch.linspace(0.0, 1.0, samples + 1, device=dev, dtype=dt)
    t_edges = t0[:, None] + (t1 - t0)[:, None] * edges
    t_starts, t_ends = t_edges[:, :-1], t_edges[:, 1:]
    if gen is None:
        frac = torch.full_like(t_starts, 0.5)
    else:
        frac = torch.rand(t_starts.shape, generator=gen, device=gen.device, dtype=dt).to(dev)
    t_mid = t_starts + (t_ends - t_starts) * frac
    pts = o[:, None, :] + t_mid[..., None] * d[:, None, :]
    keep = occupancy.lookup(pts) if occupancy is not None else torch.ones_like(t_mid, dtype=torch.bool)
    if torch.is_grad_enabled() and eps > 0 and bool(keep.any()):
        keep = _visible(field, pts, keep, t_starts, t_ends, eps)
    sel = keep.nonzero(as_tuple=True)
    sigma_s, rgb_s = field(pts[sel]) if sel[0].numel() else (pts.new_zeros(0), pts.new_zeros(0, 3))
    sigma = torch.zeros_like(t_mid).index_put(sel, sigma_s.to(dt))
    rgbs = torch.zeros_like(pts).index_put(sel, rgb_s.to(dt))
    weights, _, _ = nerfacc.render_weight_from_density(t_starts, t_ends, sigma)
    opacity = nerfacc.accumulate_along_rays(weights, None)
    out_rgb = out_rgb.index_put((ids,), nerfacc.accumulate_along_rays(weights, rgbs))
    out_opacity = out_opacity.index_put((ids,), opacity)
    depth = nerfacc.accumulate_along_rays(weights, t_mid[..., None]) / opacity.clamp_min(1e-10)
    out_depth = out_depth.index_put((ids,), depth)
    if want_normals:
        normals = torch.zeros_like(pts)
        if sel[0].numel():
            normals[sel] = field.density_and_normal(pts[sel])[1].to(dt)
        out_normal = out_normal.index_put((ids,), nerfacc.accumulate_along_rays(weights.detach(), normals))
    return out_rgb, out_opacity, out_depth, out_normal


@torch.no_grad()
def _visible(field, pts, keep, t_starts, t_ends, eps):
    """Drop samples behind the point where transmittance falls below eps (density-only pass)."""
    sel = keep.nonzero(as_tuple=True)
    sigma = torch.zeros_like(t_starts).index_put(sel, field.density(pts[sel]).to(t_starts.dtype))
    vis = nerfacc.render_visibility_from_density(t_starts, t_ends, sigma, early_stop_eps=eps)
    return keep & vis


_KERNELS: bool | None = None


def _nerfacc_kernels() -> bool:
    """Whether nerfacc's CUDA extension loads (it may JIT-build on first use; cached)."""
    global _KERNELS
    if _KERNELS is None:
        try:
            from nerfacc.cuda._backend import _C
            _KERNELS = _C is not None
        except Exception:  # no nvcc, failed build, missing CUDA libraries: use the batched path
            _KERNELS = False
    return _KERNELS


def _estimator(occupancy: OccupancyGrid | None, radius: float, device: torch.device):
    """nerfacc OccGridEstimator over the field's cube, reusing our mask (one source of truth)."""
    res = occupancy.resolution if occupancy is not None else 1
    key = (res, float(radius), str(device))
    holder = occupancy if occupancy is not None else _estimator
    cache = getattr(holder, "_nerfacc_estimator", None)
    if cache is None or cache[0] != key:
        est = nerfacc.OccGridEstimator(roi_aabb=[-radius] * 3 + [radius] * 3, resolution=res).to(device)
        cache = (key, est)
        setattr(holder, "_nerfacc_estimator", cache)
    est = cache[1]
    if occupancy is not None:
        est.binaries.copy_(occupancy.mask.to(device)[None])
    else:
        est.binaries.fill_(True)
    return est


def march_start_jitter(n_rays: int, step: float, gen: torch.Generator | None, device: torch.device | str,
                       dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Per-ray start offsets U[0, step) from `gen` (zeros when None), on `device`.

    nerfacc's `stratified=True` adds `rand_like(near) * step` from torch's global generator; this
    is the same jitter from the job's generator, drawn on the generator's device and moved.
    """
    if gen is None:
        return torch.zeros(n_rays, device=device, dtype=dtype)
    u = torch.rand(n_rays, generator=gen, device=gen.device, dtype=dtype)
    return (u * step).to(device)


def _render_packed(field, o, d, samples, radius, gen, occupancy, want_normals, eps):
    """CUDA: nerfacc ray marching over the occupancy mask, packed samples."""
    n_rays = o.shape[0]
    est = _estimator(occupancy, radius, o.device)
    step = 2 * radius / samples
    t0, t1, hit = sphere_intersect(o, d, radius)
    t1 = torch.where(hit, t1, t0)
    t0 = t0 + march_start_jitter(n_rays, step, gen, o.device, t0.dtype)  # nerfacc starts at max(near, t_min)

    def positions(ts, te, ri):
        return o[ri] + d[ri] * ((ts + te) / 2)[:, None]

    def sigma_fn(ts, te, ri):
        return field.density(positions(ts, te, ri))

    def rgb_sigma_fn(ts, te, ri):
        sigma, rgb = field(positions(ts, te, ri))
        return rgb, sigma

    ri, ts, te = est.sampling(o, d, sigma_fn=sigma_fn if torch.is_grad_enabled() else None, t_min=t0, t_max=t1,
                              render_step_size=step, stratified=False, early_stop_eps=eps)
    rgb, opacity, depth, extras = nerfacc.rendering(ts, te, ri, n_rays=n_rays, rgb_sigma_fn=rgb_sigma_fn)
    normal = None
    if want_normals:
        n = field.density_and_normal(positions(ts, te, ri))[1] if ri.numel() else o.new_zeros(0, 3)
        normal = nerfacc.accumulate_along_rays(extras["weights"].detach(), n, ri, n_rays)
    return rgb, opacity, depth, normal
