"""Batched (non-packed) volume rendering through nerfacc's plain-torch functions: the reference.

Every ray gets `samples` stratified bins between its entry and exit of the sphere, laid out as a
(rays, bins) grid; only samples in occupied cells reach the field (the rest have σ = 0), then
nerfacc's batched `render_weight_from_density` and `accumulate_along_rays` composite. Autograd
keeps the whole grid, so memory grows with the image: the packed path (packed.py) is the default
and this one is what it is checked against (`render_volume(..., method="batched")`).
"""
from __future__ import annotations

import nerfacc
import torch

from .geometry import sphere_intersect
from .importance import early_stop_cut, pdf_positions, stratified_bins, union_partition
from .jitter import ray_offsets
from .packed import sample_normals


def render_batched(field, o, d, samples, radius, dgen, occupancy, want_normals, eps, fine: int = 0):
    """Per-ray stratified bins over the sphere chord (one offset per ray from the device generator
    `dgen`, midpoints when None), `fine` importance samples more per ray (importance.py); returns
    unpadded (n_rays, C) accumulations: rgb, opacity, depth, normal | None and the second moment Σ wᵢtᵢ²."""
    n_rays, dev, dt = o.shape[0], o.device, o.dtype
    out_rgb = torch.zeros(n_rays, 3, device=dev, dtype=dt)
    out_opacity = torch.zeros(n_rays, 1, device=dev, dtype=dt)
    out_depth = torch.zeros(n_rays, 1, device=dev, dtype=dt)
    out_normal = torch.zeros(n_rays, 3, device=dev, dtype=dt) if want_normals else None
    out_depth_sq = torch.zeros(n_rays, 1, device=dev, dtype=dt)
    t0, t1, hit = sphere_intersect(o, d, radius)
    ids = hit.nonzero().squeeze(1)
    if ids.numel() == 0:
        return out_rgb, out_opacity, out_depth, out_normal, out_depth_sq
    o, d, t0, t1 = o[ids], d[ids], t0[ids], t1[ids]
    n = o.shape[0]
    offset = ray_offsets(n, dgen, dev, dt)  # the same draws, in the same order, as the packed path
    t_starts, t_ends, t_mid = stratified_bins(t0, t1, samples, offset)
    pts = o[:, None, :] + t_mid[..., None] * d[:, None, :]
    keep = occupancy.lookup(pts) if occupancy is not None else torch.ones_like(t_mid, dtype=torch.bool)
    early = eps if torch.is_grad_enabled() else 0.0
    if fine > 0:
        fine_offset = ray_offsets(n, dgen, dev, dt)
        t_starts, t_ends, t_mid, keep = resample_batched(field, pts, keep, t0, t1, t_starts, t_ends, t_mid, fine,
                                                         fine_offset, early)
        pts = o[:, None, :] + t_mid[..., None] * d[:, None, :]
    elif early > 0 and bool(keep.any()):
        keep = visible_batched(field, pts, keep, t_starts, t_ends, early)
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
    out_depth_sq = out_depth_sq.index_put((ids,), nerfacc.accumulate_along_rays(weights, t_mid[..., None] ** 2))
    if want_normals:
        normals = torch.zeros_like(pts).index_put(sel, sample_normals(field, pts[sel]))
        out_normal = out_normal.index_put((ids,), nerfacc.accumulate_along_rays(weights.detach(), normals))
    return out_rgb, out_opacity, out_depth, out_normal, out_depth_sq


@torch.no_grad()
def visible_batched(field, pts, keep, t_starts, t_ends, eps):
    """Drop samples behind the point where transmittance falls below eps (density-only pass)."""
    sel = keep.nonzero(as_tuple=True)
    sigma = torch.zeros_like(t_starts).index_put(sel, field.density(pts[sel]).to(t_starts.dtype))
    vis = nerfacc.render_visibility_from_density(t_starts, t_ends, sigma, early_stop_eps=eps)
    return keep & vis


@torch.no_grad()
def resample_batched(field, pts, keep, t0, t1, t_starts, t_ends, t_mid, fine, fine_offset, eps):
    """Coarse weights without autograd → the union of coarse and fine positions (importance.py), as
    (t_starts, t_ends, t_mid, keep) of shape (rays, bins + fine)."""
    sel = keep.nonzero(as_tuple=True)
    sigma = torch.zeros_like(t_starts)
    if sel[0].numel():
        sigma = sigma.index_put(sel, field.density(pts[sel]).to(t_starts.dtype))
    weights, trans, _ = nerfacc.render_weight_from_density(t_starts, t_ends, sigma)
    fine_t = pdf_positions(t_starts, t_ends, weights, fine, fine_offset)
    pos, starts, ends, ev = union_partition(t_mid, keep, fine_t, t0, t1)
    if eps > 0:
        ev &= pos < early_stop_cut(t_mid, trans, keep, eps)[:, None]
    return starts, ends, pos, ev
