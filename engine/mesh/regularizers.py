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
    """Mean over vertices of ‖(L·v)ᵢ‖, L = D − A the unnormalised uniform Laplacian.

    (L·v)ᵢ = Σ_j∈N(i) (vᵢ − vⱼ) = degᵢ · (vᵢ − mean of its neighbours). This is threestudio's
    `Mesh.laplacian()` (its geometry-stage loss, weighted 1e4 in the ProlificDreamer configs), so the
    paper's λ means here what it meant there. Vertices no edge uses are left out of the mean (marching
    tets leaves none). The norm is not squared: its gradient at a flat vertex is the zero subgradient.
    """
    e = unique_edges(faces)
    if e.numel() == 0:
        return vertices.sum() * 0.0
    i, j = e[:, 0], e[:, 1]
    diff = vertices[i] - vertices[j]
    lv = torch.zeros_like(vertices).index_add(0, i, diff).index_add(0, j, -diff)
    used = torch.zeros(vertices.shape[0], dtype=torch.bool, device=vertices.device)
    used[e.reshape(-1)] = True
    return torch.linalg.vector_norm(lv[used], dim=-1).mean()
