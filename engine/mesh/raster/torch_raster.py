"""Pure-PyTorch rasteriser: triangle ids without gradient, barycentrics recomputed with gradient.

Visibility: every triangle scans the pixel centres inside its screen bounding box (vectorised over
chunks of (triangle, pixel) pairs); a pair survives the inside test and the [−1, 1] depth range,
and one int64 key per pixel = (quantised z/w, triangle id) is reduced with `amin`, which is a
depth test with a deterministic tie-break. Triangles with a vertex behind the camera (w ≤ 0) are
dropped rather than clipped: fine for cameras that look at an object from outside it.
Then, with gradient, the perspective-correct barycentrics of each covered pixel are solved from
the clip-space vertices, so positions and interpolated attributes get gradients.
Antialiasing follows nvdiffrast's idea: for neighbouring pixels of which one is empty, the covered
pixel's triangle is checked for a silhouette edge (its neighbour across the edge faces away, or
there is none) crossing the segment between the two pixel centres; the colours are blended by how
far past the midpoint it crosses. Like nvdiffrast, sub-pixel triangles whose edges are not
silhouettes get no blending; unlike it, occlusion edges over other geometry are left alone.
"""
from __future__ import annotations

import torch

from ..topology import face_neighbors
from .base import Rasterizer

_DEPTH_BITS, _ID_BITS = 36, 27
_EMPTY = torch.iinfo(torch.int64).max


def _pixel_coords(pos: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Clip positions (..., 4) → continuous pixel coordinates (..., 2) with centres at integers."""
    ndc = pos[..., :2] / pos[..., 3:4]
    return torch.stack([(ndc[..., 0] + 1) * (w / 2) - 0.5, (ndc[..., 1] + 1) * (h / 2) - 0.5], dim=-1)


class TorchRasterizer(Rasterizer):
    name = "torch"

    def __init__(self, pairs_per_chunk: int = 1 << 21):
        self.pairs_per_chunk = pairs_per_chunk

    # ------------------------------------------------------------ visibility
    @torch.no_grad()
    def _visible_ids(self, pos: torch.Tensor, tri: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """(H·W,) triangle id + 1 per pixel (0 = empty) for one batch element pos (V, 4)."""
        dev = pos.device
        p = pos.double()[tri]  # (F, 3, 4)
        valid = (p[..., 3] > 1e-8).all(-1)
        xy = _pixel_coords(p, h, w)
        zw = p[..., 2] / p[..., 3].clamp(min=1e-8)
        lo = torch.ceil(xy.min(1).values).clamp(min=0)
        hi = torch.floor(xy.max(1).values)
        hi[:, 0].clamp_(max=w - 1)
        hi[:, 1].clamp_(max=h - 1)
        span = (hi - lo + 1).clamp(min=0).long()  # (F, 2) pixel columns / rows in the bbox
        count = span[:, 0] * span[:, 1] * valid
        ids = torch.nonzero(count > 0).squeeze(1)
        keys = torch.full((h * w,), _EMPTY, dtype=torch.int64, device=dev)
        if ids.numel() == 0:
            return torch.zeros(h * w, dtype=torch.int64, device=dev)
        cum = torch.cumsum(count[ids], 0)
        start = 0
        while start < ids.numel():
            base = cum[start - 1] if start > 0 else 0
            stop = int(torch.searchsorted(cum, base + self.pairs_per_chunk, right=True))
            stop = max(stop, start + 1)
            self._scan(ids[start:stop], count, span, lo, xy, zw, keys, w)
            start = stop
        out = torch.where(keys == _EMPTY, 0, (keys & ((1 << _ID_BITS) - 1)) + 1)
        return out

    def _scan(self, ids, count, span, lo, xy, zw, keys, w) -> None:
        n = count[ids]
        face = torch.repeat_interleave(ids, n)
        first = torch.cumsum(n, 0) - n
        local = torch.arange(face.numel(), device=face.device) - torch.repeat_interleave(first, n)
        cols = span[face, 0]
        px = lo[face, 0] + (local % cols)
        py = lo[face, 1] + torch.div(local, cols, rounding_mode="floor")
        a, b, c = xy[face, 0], xy[face, 1], xy[face, 2]
        area = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])

        def edge(p, q):  # twice the signed area of (p, q, pixel)
            return (q[:, 0] - p[:, 0]) * (py - p[:, 1]) - (q[:, 1] - p[:, 1]) * (px - p[:, 0])

        l0, l1, l2 = edge(b, c) / area, edge(c, a) / area, edge(a, b) / area
        z = l0 * zw[face, 0] + l1 * zw[face, 1] + l2 * zw[face, 2]  # z/w is affine in screen space
        hit = (area.abs() > 1e-12) & (l0 >= 0) & (l1 >= 0) & (l2 >= 0) & (z >= -1) & (z <= 1)
        q = ((z[hit] + 1) * 0.5 * ((1 << _DEPTH_BITS) - 1)).long()
        key = (q << _ID_BITS) | face[hit]
        pix = (py[hit] * w + px[hit]).long()
        keys.scatter_reduce_(0, pix, key, reduce="amin", include_self=True)

    # --------------------------------------------------------------- public
    def rasterize(self, pos: torch.Tensor, tri: torch.Tensor, resolution: tuple[int, int]) -> torch.Tensor:
        if pos.dim() == 2:
            pos = pos.unsqueeze(0)
        h, w = int(resolution[0]), int(resolution[1])
        tri = tri.long()
        if tri.shape[0] >= 1 << _ID_BITS:
            raise ValueError(f"the torch rasteriser handles at most {1 << _ID_BITS} triangles")
        dev = pos.device
        j = torch.arange(w, device=dev, dtype=pos.dtype)
        i = torch.arange(h, device=dev, dtype=pos.dtype)
        ndc_y, ndc_x = torch.meshgrid((2 * i + 1) / h - 1, (2 * j + 1) / w - 1, indexing="ij")
        out = []
        for bi in range(pos.shape[0]):
            tid = self._visible_ids(pos[bi], tri, h, w)  # (H·W,)
            covered = tid > 0
            corners = pos[bi][tri[(tid[covered] - 1)]]  # (P, 3, 4) with gradient
            px, py = ndc_x.reshape(-1)[covered], ndc_y.reshape(-1)[covered]
            rx = corners[..., 0] - px[:, None] * corners[..., 3]
            ry = corners[..., 1] - py[:, None] * corners[..., 3]
            # perspective-correct barycentrics: the null vector of [rx; ry], normalised to sum 1
            bary = torch.stack([rx[:, 1] * ry[:, 2] - rx[:, 2] * ry[:, 1],
                                rx[:, 2] * ry[:, 0] - rx[:, 0] * ry[:, 2],
                                rx[:, 0] * ry[:, 1] - rx[:, 1] * ry[:, 0]], dim=-1)
            bary = bary / bary.sum(-1, keepdim=True)
            point = (bary.unsqueeze(-1) * corners).sum(1)  # clip-space surface point
            vals = torch.stack([bary[:, 0], bary[:, 1], point[:, 2] / point[:, 3]], dim=-1)
            flat = pos.new_zeros(h * w, 3).index_put((torch.nonzero(covered).squeeze(1),), vals)
            ids = tid.to(pos.dtype).unsqueeze(-1)
            out.append(torch.cat([flat, ids], dim=-1).view(h, w, 4))
        return torch.stack(out)

    def antialias(self, color: torch.Tensor, rast: torch.Tensor, pos: torch.Tensor,
                  tri: torch.Tensor) -> torch.Tensor:
        if pos.dim() == 2:
            pos = pos.unsqueeze(0).expand(color.shape[0], -1, -1)
        b, h, w, ch = color.shape
        tri = tri.long()
        tid = rast[..., 3].long()
        flat = color.reshape(-1, ch)
        delta = torch.zeros_like(flat)
        index = torch.arange(b * h * w, device=color.device).view(b, h, w)
        neighbors = face_neighbors(tri, pos.shape[1])
        screen = _pixel_coords(pos[:, tri], h, w)  # (B, F, 3, 2)
        d1, d2 = screen[:, :, 1] - screen[:, :, 0], screen[:, :, 2] - screen[:, :, 0]
        facing = torch.sign(d1[..., 0] * d2[..., 1] - d1[..., 1] * d2[..., 0]).detach()  # (B, F)
        for axis in (2, 1):  # horizontal then vertical neighbours
            n_pair = [slice(None)] * 3
            a_sl, b_sl = list(n_pair), list(n_pair)
            a_sl[axis], b_sl[axis] = slice(0, -1), slice(1, None)
            ta, tb = tid[tuple(a_sl)], tid[tuple(b_sl)]
            ia, ib = index[tuple(a_sl)], index[tuple(b_sl)]
            edge = (ta > 0) != (tb > 0)
            if not bool(edge.any()):
                continue
            fg = torch.where(ta > 0, ia, ib)[edge]  # covered pixel
            bg = torch.where(ta > 0, ib, ia)[edge]  # empty neighbour
            fid = tid.reshape(-1)[fg] - 1
            face = tri[fid]
            batch = fg // (h * w)
            nb = neighbors[fid]  # (P, 3) faces across edges (b, c), (c, a), (a, b)
            nb_facing = torch.where(nb >= 0, facing[batch[:, None], nb.clamp(min=0)], torch.zeros_like(nb, dtype=facing.dtype))
            silhouette = nb_facing != facing[batch, fid][:, None]
            xy = _pixel_coords(pos[batch[:, None], face], h, w)  # (P, 3, 2) with gradient

            def centre(flat_index, xy=xy):
                rem = flat_index % (h * w)
                return torch.stack([(rem % w).to(xy.dtype), (rem // w).to(xy.dtype)], dim=-1)

            pf, pb = centre(fg), centre(bg)
            a, bb, c = xy[:, 0], xy[:, 1], xy[:, 2]
            area = (bb[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (bb[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
            sgn = torch.sign(area).detach()
            edges = [(bb, c), (c, a), (a, bb)]

            def ef(p, q, at, sgn=sgn):
                return ((q[:, 0] - p[:, 0]) * (at[:, 1] - p[:, 1]) - (q[:, 1] - p[:, 1]) * (at[:, 0] - p[:, 0])) * sgn

            e_f = torch.stack([ef(p, q, pf) for p, q in edges], -1)
            e_b = torch.stack([ef(p, q, pb) for p, q in edges], -1)
            leaving = (e_b < 0) & silhouette
            t = torch.where(leaving, e_f.clamp(min=0) / (e_f.clamp(min=0) - e_b).clamp(min=1e-12),
                            torch.full_like(e_f, 2.0)).min(-1).values.clamp(0, 1)  # crossing: 0 at fg, 1 at bg
            found = leaving.any(-1, keepdim=True)
            grow = (t - 0.5).clamp(min=0).unsqueeze(-1) * found  # foreground spills into the empty pixel
            shrink = (0.5 - t).clamp(min=0).unsqueeze(-1) * found  # the covered pixel is partly empty
            cf, cb = flat[fg], flat[bg]
            delta = delta.index_add(0, bg, grow * (cf - cb)).index_add(0, fg, shrink * (cb - cf))
        return (flat + delta).view(b, h, w, ch)
