"""Marching tetrahedra in torch, differentiable in vertex positions and SDF values.

Inside means sdf < 0. Each crossed tet edge gets exactly one surface vertex (edges are keyed by
their sorted global vertex pair), so a conforming tet mesh yields a watertight surface. The case
table is generated, not typed in: triangles are oriented on a reference tet so that their normals
point from the inside corner(s) to the outside ones, which carries over to every positively
oriented tet (affine maps with positive determinant keep orientation).
"""
from __future__ import annotations

import torch

TET_EDGES = torch.tensor([[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3]], dtype=torch.long)


def _edge_id(a: int, b: int) -> int:
    return [tuple(e) for e in TET_EDGES.tolist()].index((min(a, b), max(a, b)))


def _build_tables() -> tuple[torch.Tensor, torch.Tensor]:
    """(16, 2, 3) local edge ids per case (−1 = no triangle) and (16,) triangle counts."""
    ref = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=torch.float64)
    table = torch.full((16, 2, 3), -1, dtype=torch.long)
    counts = torch.zeros(16, dtype=torch.long)
    for code in range(16):
        inside = [v for v in range(4) if code >> v & 1]
        outside = [v for v in range(4) if not code >> v & 1]
        if len(inside) in (1, 3):
            lone, rest = (inside[0], outside) if len(inside) == 1 else (outside[0], inside)
            loops = [[_edge_id(lone, r) for r in rest]]
        elif len(inside) == 2:
            (a, b), (c, d) = inside, outside
            quad = [_edge_id(a, c), _edge_id(a, d), _edge_id(b, d), _edge_id(b, c)]
            loops = [[quad[0], quad[1], quad[2]], [quad[0], quad[2], quad[3]]]
        else:
            continue
        out_dir = ref[outside].mean(0) - ref[inside].mean(0)
        for k, tri in enumerate(loops):
            mids = torch.stack([ref[TET_EDGES[e]].mean(0) for e in tri])
            normal = torch.linalg.cross(mids[1] - mids[0], mids[2] - mids[0])
            if torch.dot(normal, out_dir) < 0:
                tri = [tri[0], tri[2], tri[1]]
            table[code, k] = torch.tensor(tri)
        counts[code] = len(loops)
    return table, counts


TRI_TABLE, TRI_COUNT = _build_tables()


def marching_tets(positions: torch.Tensor, sdf: torch.Tensor,
                  tets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Surface of {sdf < 0}: vertices (M, 3) with gradient, faces (K, 3) long, CCW seen from outside.

    positions (N, 3) and sdf (N,) live on the tet vertices; tets (T, 4) index them and must be
    positively oriented (TetGrid's are).
    """
    device = positions.device
    if tets.numel() == 0:
        return positions.new_zeros(0, 3), torch.zeros(0, 3, dtype=torch.long, device=device)
    with torch.no_grad():
        inside = sdf[tets] < 0  # (T, 4)
        n_in = inside.sum(1)
        keep = (n_in > 0) & (n_in < 4)
        tets = tets[keep]
        inside = inside[keep]
        if tets.shape[0] == 0:
            return positions.new_zeros(0, 3), torch.zeros(0, 3, dtype=torch.long, device=device)
        edges = tets[:, TET_EDGES.to(device)]  # (T, 6, 2) global vertex ids
        crossed = inside[:, TET_EDGES[:, 0]] != inside[:, TET_EDGES[:, 1]]
        edges = torch.sort(edges, dim=-1).values
        keys = edges[..., 0] * positions.shape[0] + edges[..., 1]  # (T, 6)
        uniq, inverse = torch.unique(keys[crossed], return_inverse=True)
        local_to_vertex = torch.full_like(keys, -1)
        local_to_vertex[crossed] = inverse
        a, b = uniq // positions.shape[0], uniq % positions.shape[0]
        code = (inside.long() * (2 ** torch.arange(4, device=device))).sum(1)
        table, counts = TRI_TABLE.to(device)[code], TRI_COUNT.to(device)[code]  # (T, 2, 3), (T,)
        tri_mask = torch.arange(2, device=device)[None, :] < counts[:, None]  # (T, 2)
        local = table[tri_mask]  # (K, 3) local edge ids
        owner = torch.arange(tets.shape[0], device=device)[:, None].expand(-1, 2)[tri_mask]
        faces = local_to_vertex[owner[:, None], local]
    sa, sb = sdf[a], sdf[b]
    w = (sa / (sa - sb)).unsqueeze(-1)  # crossing parameter from a to b, in [0, 1]
    verts = positions[a] + w * (positions[b] - positions[a])
    return verts, faces
