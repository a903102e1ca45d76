"""Hash-grid indexing primitives shared by the encodings: corner columns, trilinear weights, gather.

Kept apart from the modules so that the memory-light autograd function (hashgrid_autograd.py) and
the reference path (hashgrid.py) use one implementation of the indexing.
"""
from __future__ import annotations

import torch

PRIMES = (1, 2654435761, 805459861)


def corner_indices_weights(u: torch.Tensor, res: torch.Tensor, dense: torch.Tensor | int,
                           table_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat table columns (8, L, N) int32 and trilinear weights (8, L, N) for points u (N, 3) in [0, 1].

    Level-major layout with the corner loop unrolled in Python keeps every op a large contiguous
    one (broadcasting over tiny trailing dims is several times slower on CPU). Hash products wrap
    in int32; only the low bits survive the `& (T - 1)`, so the result equals the int64 hash.
    Corner c = 4·bx + 2·by + bz. Weights carry u's autograd graph.
    """
    # levels ascend, so dense levels form a prefix; `dense` may be its length (no data-dependent
    # read, which fake tensors cannot answer) or the per-level mask
    n_levels, n_dense = res.numel(), dense if isinstance(dense, int) else int(dense.sum())
    n = u.shape[0]
    pos = u.t().unsqueeze(1) * res.view(1, -1, 1).to(u.dtype)  # (3, L, N)
    c0 = torch.minimum(pos.detach().floor().to(torch.int32), (res - 1).view(1, -1, 1).to(torch.int32))
    frac = pos - c0.to(pos.dtype)
    offsets = (torch.arange(n_levels, device=u.device, dtype=torch.int32) * table_size).view(-1, 1)
    idx = torch.empty(8, n_levels, n, dtype=torch.int32, device=u.device)
    bits = [(bx, by, bz) for bx in (0, 1) for by in (0, 1) for bz in (0, 1)]
    if n_dense:
        s = (res[:n_dense] + 1).to(torch.int32).view(-1, 1)
        cd = c0[:, :n_dense]
        base = cd[0] + cd[1] * s + cd[2] * (s * s) + offsets[:n_dense]
        for c, (bx, by, bz) in enumerate(bits):
            torch.add(base, bx + by * s + bz * s * s, out=idx[c, :n_dense])
    if n_dense < n_levels:
        # (hx ^ hy ^ hz) & m == (hx & m) ^ (hy & m) ^ (hz & m); the level offset sits above m's bits
        ch, m = c0[:, n_dense:], table_size - 1
        # (c + 1)·p & m == (c·p & m + p & m) & m: the +1 corner costs an add and a mask, not a product
        h = []
        for a, p in enumerate(PRIMES):
            lo = ch[a] & m if p == 1 else ch[a] * _wrap32(p) & m
            h.append([lo, (lo + (p & m)) & m])
        h[0] = [hx + offsets[n_dense:] for hx in h[0]]
        hxy = [h[0][bx] ^ h[1][by] for bx in (0, 1) for by in (0, 1)]
        for c, (bx, by, bz) in enumerate(bits):
            torch.bitwise_xor(hxy[2 * bx + by], h[2][bz], out=idx[c, n_dense:])
    wx, wy, wz = ((1.0 - frac[a], frac[a]) for a in range(3))
    wxy = [wx[bx] * wy[by] for bx in (0, 1) for by in (0, 1)]
    if u.requires_grad:  # the weights carry u's graph (normals): autograd needs stack, not out=
        return idx, torch.stack([wxy[2 * bx + by] * wz[bz] for bx, by, bz in bits])
    w = torch.empty(8, n_levels, n, dtype=frac.dtype, device=u.device)  # written in place: no stack copy
    for c, (bx, by, bz) in enumerate(bits):
        torch.mul(wxy[2 * bx + by], wz[bz], out=w[c])
    return idx, w


def _wrap32(p: int) -> int:
    return p - 2 ** 32 if p >= 2 ** 31 else p


def gather_features(table: torch.Tensor, idx: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Σ_corners w · table[:, idx] → (N, L·F) with plain autograd (also w.r.t. w)."""
    f = table.shape[0]
    _, n_levels, n = idx.shape
    cols = [(table[k].index_select(0, idx.reshape(-1)).view_as(w) * w).sum(0) for k in range(f)]
    return torch.stack(cols, dim=-1).permute(1, 0, 2).reshape(n, n_levels * f)
