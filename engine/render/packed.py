"""Pure-torch packed volume rendering: only samples in occupied cells exist, in a ray-major list.

Why: the batched layout keeps every (ray, bin) pair alive through backward, so memory grows with
the image; nerfacc's packed path needs its compiled kernels. Here the samples are the same
stratified bins as the batched path (the same per-ray offsets from the same device generator, so
the two agree), culled by the occupancy grid before the field runs, and kept as a packed list
(ray, bin) with a variable number per ray. With `fine` > 0 a coarse pass without autograd draws
that many more samples per ray from its weights and the list holds the union (importance.py).
Optional early stop: a density-only pass without autograd drops the samples behind the
point where transmittance falls below eps (nerfacc's rule, T_before ≥ eps is kept). The field
runs in chunks of `chunk` samples; with gradients on and more than one chunk each chunk is
checkpointed, so what backward keeps is ~80 bytes per occupied sample, plus one chunk's
activations while it is recomputed. Transmittance is an exclusive cumulative sum per ray,
computed on a dense (rays, bins) scratch tensor (float32-exact, no cross-ray cancellation) that
autograd does not keep.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from .importance import early_stop_cut, pdf_positions, stratified_bins, union_partition
from .jitter import ray_offsets

DEFAULT_CHUNK = 1 << 18  # samples per field call
# samples per normal-pass call: each call builds its own graph for ∇σ (~3.6 KB per sample with the
# torch grid) and frees it, so the pass peaks at ~0.25 GB whatever the sample count (a preview at 512²)
NORMAL_CHUNK = 1 << 16
RAY_CHUNK = 1 << 14  # rays per occupancy lookup while sampling (bounds the dense point scratch)


@dataclass
class PackedSamples:
    """Ray-major samples: `ray` indexes the rays given to `sample_packed`, `bin` the stratified bin."""

    ray: torch.Tensor  # (M,) int64, non-decreasing
    bin: torch.Tensor  # (M,) int64 in [0, bins)
    t_start: torch.Tensor  # (M,)
    t_end: torch.Tensor  # (M,)
    t_mid: torch.Tensor  # (M,) where the field is evaluated
    points: torch.Tensor  # (M, 3)
    n_rays: int
    bins: int

    @property
    def count(self) -> int:
        return int(self.ray.shape[0])

    def subset(self, keep: torch.Tensor) -> PackedSamples:
        """The samples where bool `keep` (M,) is true, order kept."""
        return PackedSamples(self.ray[keep], self.bin[keep], self.t_start[keep], self.t_end[keep], self.t_mid[keep],
                             self.points[keep], self.n_rays, self.bins)


def sample_packed(o: torch.Tensor, d: torch.Tensor, t0: torch.Tensor, t1: torch.Tensor, bins: int,
                  offset: torch.Tensor | None, occupancy=None, ray_chunk: int = RAY_CHUNK) -> PackedSamples:
    """Stratified bins over [t0, t1] per ray, occupied ones only; each ray's samples sit at fraction
    `offset` (n,) of their bins (jitter.ray_offsets: one draw per ray), at midpoints when None."""
    n, dev = o.shape[0], o.device
    if offset is None:
        offset = torch.full((n,), 0.5, device=dev, dtype=o.dtype)
    parts: list[tuple[torch.Tensor, ...]] = []
    for s in range(0, n, ray_chunk):
        e = min(s + ray_chunk, n)
        ts, te, tm = stratified_bins(t0[s:e], t1[s:e], bins, offset[s:e])
        pts = o[s:e, None, :] + tm[..., None] * d[s:e, None, :]
        if occupancy is None:
            r, b = torch.meshgrid(torch.arange(e - s, device=dev), torch.arange(bins, device=dev), indexing="ij")
            r, b = r.reshape(-1), b.reshape(-1)
        else:
            r, b = occupancy.lookup(pts).nonzero(as_tuple=True)
        parts.append((r + s, b, ts[r, b], te[r, b], tm[r, b], pts[r, b]))
    return _packed(parts, o, n, bins)


def _packed(parts: list[tuple[torch.Tensor, ...]], o: torch.Tensor, n: int, bins: int) -> PackedSamples:
    if not parts:
        idx, t = o.new_zeros(0, dtype=torch.long), o.new_zeros(0)
        return PackedSamples(idx, idx, t, t, t, o.new_zeros(0, 3), n_rays=n, bins=bins)
    return PackedSamples(*(torch.cat(c) for c in zip(*parts, strict=True)), n_rays=n, bins=bins)


@torch.no_grad()
def resample_packed(field, o: torch.Tensor, d: torch.Tensor, t0: torch.Tensor, t1: torch.Tensor,
                    coarse: PackedSamples, offset: torch.Tensor | None, fine: int, fine_offset: torch.Tensor | None,
                    eps: float, chunk: int, ray_chunk: int = RAY_CHUNK) -> PackedSamples:
    """The union of the coarse samples and `fine` more per ray drawn from the coarse weights
    (importance.py), as a packed list; with eps > 0 the samples past the coarse early-stop cut are dropped.

    One density-only pass over the coarse samples, without autograd; the dense (rays, bins) scratch
    is built a ray chunk at a time, so it stays bounded at 512²."""
    n, bins, dev, dt = coarse.n_rays, coarse.bins, o.device, o.dtype
    if offset is None:
        offset = torch.full((n,), 0.5, device=dev, dtype=dt)
    if fine_offset is None:
        fine_offset = torch.full((n,), 0.5, device=dev, dtype=dt)
    sigma = torch.cat([field.density(p) for p in coarse.points.split(chunk)]).to(dt) if coarse.count \
        else coarse.t_mid.new_zeros(0)
    weights, trans = transmittance_weights(sigma, coarse)
    flat = coarse.ray * bins + coarse.bin
    dense_w = weights.new_zeros(n * bins).index_put((flat,), weights).view(n, bins)
    dense_tr = weights.new_ones(n * bins).index_put((flat,), trans).view(n, bins)
    dense_ev = torch.zeros(n * bins, dtype=torch.bool, device=dev).index_put((flat,), torch.ones_like(flat, dtype=torch.bool))
    dense_ev = dense_ev.view(n, bins)
    parts: list[tuple[torch.Tensor, ...]] = []
    for s in range(0, n, ray_chunk):
        e = min(s + ray_chunk, n)
        ts, te, tm = stratified_bins(t0[s:e], t1[s:e], bins, offset[s:e])
        fine_t = pdf_positions(ts, te, dense_w[s:e], fine, fine_offset[s:e])
        pos, starts, ends, ev = union_partition(tm, dense_ev[s:e], fine_t, t0[s:e], t1[s:e])
        if eps > 0:
            ev &= pos < early_stop_cut(tm, dense_tr[s:e], dense_ev[s:e], eps)[:, None]
        r, b = ev.nonzero(as_tuple=True)
        pts = o[s:e][r] + pos[r, b, None] * d[s:e][r]
        parts.append((r + s, b, starts[r, b], ends[r, b], pos[r, b], pts))
    return _packed(parts, o, n, bins + fine)


def exclusive_sum_per_ray(values: torch.Tensor, s: PackedSamples) -> torch.Tensor:
    """Σ of `values` over the earlier samples of the same ray, (M,), differentiable.

    Scattered into a (rays, bins) scratch and summed along the bins, the same float32 sum as the
    batched path's; only the flat indices are kept for backward.
    """
    flat = s.ray * s.bins + s.bin
    dense = values.new_zeros(s.n_rays * s.bins).index_put((flat,), values).view(s.n_rays, s.bins)
    excl = F.pad(dense[:, :-1].cumsum(dim=1), (1, 0))
    return excl.reshape(-1)[flat]


def transmittance_weights(sigma: torch.Tensor, s: PackedSamples) -> tuple[torch.Tensor, torch.Tensor]:
    """(weights wᵢ = Tᵢ·αᵢ, transmittance before each sample Tᵢ), each (M,)."""
    sd = sigma * (s.t_end - s.t_start)
    trans = torch.exp(-exclusive_sum_per_ray(sd, s))
    return trans * (1.0 - torch.exp(-sd)), trans


def accumulate(weights: torch.Tensor, values: torch.Tensor | None, s: PackedSamples) -> torch.Tensor:
    """Per-ray Σ wᵢ·valuesᵢ (values None: Σ wᵢ) → (n_rays, C)."""
    src = weights[:, None] if values is None else weights[:, None] * values
    return src.new_zeros(s.n_rays, src.shape[1]).index_add(0, s.ray, src)


def run_field(field, points: torch.Tensor, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(σ, albedo) for `points` in chunks; checkpointed per chunk when autograd records and it splits."""
    if points.shape[0] <= chunk:
        return field(points)
    use_ckpt = torch.is_grad_enabled()
    outs = [checkpoint(field, p, use_reentrant=False) if use_ckpt else field(p) for p in points.split(chunk)]
    return torch.cat([a for a, _ in outs]), torch.cat([b for _, b in outs])


def sample_normals(field, points: torch.Tensor, chunk: int = NORMAL_CHUNK) -> torch.Tensor:
    """(M, 3) outward unit normals −∇σ/|∇σ| (detached), `chunk` points per call so the graph each
    gradient needs is one chunk's, never all samples' at once."""
    if points.shape[0] == 0:
        return points.new_zeros(0, 3)
    return torch.cat([field.density_and_normal(p)[1].to(points.dtype) for p in points.split(chunk)])


@torch.no_grad()
def visible(field, s: PackedSamples, eps: float, chunk: int) -> torch.Tensor:
    """Bool (M,): transmittance before the sample ≥ eps (a density-only pass, no autograd)."""
    sigma = torch.cat([field.density(p) for p in s.points.split(chunk)]) if s.count else s.t_mid.new_zeros(0)
    _, trans = transmittance_weights(sigma.to(s.t_mid.dtype), s)
    return trans >= eps


def render_samples(field, o: torch.Tensor, d: torch.Tensor, t0: torch.Tensor, t1: torch.Tensor, bins: int,
                   dgen: torch.Generator | None, occupancy, eps: float, chunk: int = DEFAULT_CHUNK,
                   fine: int = 0) -> PackedSamples:
    """The samples a render evaluates with the full pass: stratified bins (one offset per ray from
    `dgen`), occupancy-culled, then importance-resampled (`fine` > 0) or early-stopped (eps > 0,
    gradients on)."""
    n = o.shape[0]
    offset = None if dgen is None else ray_offsets(n, dgen, o.device, o.dtype)
    s = sample_packed(o, d, t0, t1, bins, offset, occupancy)
    early = eps if torch.is_grad_enabled() else 0.0
    if fine > 0:
        fine_offset = None if dgen is None else ray_offsets(n, dgen, o.device, o.dtype)
        return resample_packed(field, o, d, t0, t1, s, offset, fine, fine_offset, early, chunk)
    if early > 0 and s.count:
        s = s.subset(visible(field, s, early, chunk))
    return s


def render_packed(field, o: torch.Tensor, d: torch.Tensor, t0: torch.Tensor, t1: torch.Tensor, bins: int,
                  dgen: torch.Generator | None, occupancy, want_normals: bool, eps: float,
                  chunk: int = DEFAULT_CHUNK, fine: int = 0):
    """(rgb, opacity, depth, normal | None, Σwt²) per ray, each (n_rays, C), for rays o + t·d over [t0, t1]."""
    s = render_samples(field, o, d, t0, t1, bins, dgen, occupancy, eps, chunk, fine)
    dt = o.dtype
    if s.count:
        sigma, rgb = run_field(field, s.points, chunk)
        sigma, rgb = sigma.to(dt), rgb.to(dt)
    else:
        sigma, rgb = o.new_zeros(0), o.new_zeros(0, 3)
    weights, _ = transmittance_weights(sigma, s)
    opacity = accumulate(weights, None, s)
    out_rgb = accumulate(weights, rgb, s)
    depth = accumulate(weights, s.t_mid[:, None], s) / opacity.clamp_min(1e-10)
    depth_sq = accumulate(weights, s.t_mid[:, None] ** 2, s)
    normal = None
    if want_normals:
        normal = accumulate(weights.detach(), sample_normals(field, s.points), s)
    return out_rgb, opacity, depth, normal, depth_sq
