"""Surface regularisers of the geometry stage (DESIGN.md §3 stage 2)."""
from __future__ import annotations

import torch

from .topology import face_neighbors, unique_edges


def face_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    v0, v1, v2 = vertices[faces[:, 0]], vertices[faces[:, 1]], vertices[faces[:, 2]]
    return torch.nn.functional.normalize(torch.linalg.cross(v1 - v0, v2 - v0), dim=-1, eps=1e-12)


def normal_consistency(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Mean (1 − cos) between the normals of faces sharing an edge: 0 for a flat sheet."""
    nb = face_neighbors(faces, vertices.shape[0])
    fi, k = torch.nonzero(nb >= 0, as_tuple=True)
    keep = fi < nb[fi, k]  # each interior edge once
    if not bool(keep.any()):
        return vertices.sum() * 0.0
    n = face_normals(vertices, faces)
    return (1.0 - (n[fi[keep]] * n[nb[fi[keep], k[keep]]]).sum(-1)).mean()


def laplacian_smoothing(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Mean squared distance of each vertex to the mean of its edge neighbours (uniform Laplacian)."""
    e = unique_edges(faces)
    if e.numel() == 0:
        return vertices.sum() * 0.0
    nv = vertices.shape[0]
    idx = torch.cat([e[:, 0], e[:, 1]])
    nbr = torch.cat([e[:, 1], e[:, 0]])
    total = torch.zeros_like(vertices).index_add(0, idx, vertices[nbr])
    deg = torch.zeros(nv, device=vertices.device, dtype=vertices.dtype).index_add(
        0, idx, torch.ones_like(idx, dtype=vertices.dtype))
    used = deg > 0
    lap = vertices[used] - total[used] / deg[used].unsqueeze(-1)
    return lap.pow(2).sum(-1).mean()
