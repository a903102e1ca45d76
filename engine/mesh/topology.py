"""Edge/face adjacency of a triangle mesh, in torch (used by antialiasing and the regularisers)."""
from __future__ import annotations

import torch


def face_neighbors(faces: torch.Tensor, num_vertices: int | None = None) -> torch.Tensor:
    """(F, 3) index of the face across edge k of each face (edge k is opposite corner k), −1 when
    the edge is a boundary or is shared by more than two faces."""
    faces = faces.long()
    n_f = faces.shape[0]
    nv = int(num_vertices if num_vertices is not None else (faces.max().item() + 1 if n_f else 0))
    a = faces[:, [1, 2, 0]].reshape(-1)
    b = faces[:, [2, 0, 1]].reshape(-1)
    keys = torch.minimum(a, b) * nv + torch.maximum(a, b)
    sk, order = torch.sort(keys)
    out = torch.full((3 * n_f,), -1, dtype=torch.long, device=faces.device)
    if sk.numel() < 2:
        return out.view(n_f, 3)
    same = sk[1:] == sk[:-1]  # pair (i, i+1)
    before = torch.cat([torch.zeros(1, dtype=torch.bool, device=faces.device), same[:-1]])
    after = torch.cat([same[1:], torch.zeros(1, dtype=torch.bool, device=faces.device)])
    pair = same & ~before & ~after  # exactly two half-edges share this edge
    i = torch.nonzero(pair).squeeze(1)
    h0, h1 = order[i], order[i + 1]
    out[h0], out[h1] = h1 // 3, h0 // 3
    return out.view(n_f, 3)


def unique_edges(faces: torch.Tensor) -> torch.Tensor:
    """(E, 2) undirected edges, each once, smaller vertex id first."""
    e = torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]).long()
    if e.numel() == 0:
        return e
    n = int(e.max()) + 1
    keys = torch.unique(torch.minimum(e[:, 0], e[:, 1]) * n + torch.maximum(e[:, 0], e[:, 1]))
    return torch.stack([keys // n, keys % n], dim=1)
