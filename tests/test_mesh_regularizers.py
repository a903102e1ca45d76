"""Geometry-stage regularisers and mesh adjacency."""
import pytest
import torch
import trimesh

from engine.mesh.regularizers import laplacian_smoothing, normal_consistency
from engine.mesh.topology import face_neighbors, unique_edges


def _mesh(m: trimesh.Trimesh):
    return torch.tensor(m.vertices, dtype=torch.float64), torch.tensor(m.faces)


def test_cube_normal_consistency_is_exact():
    v, f = _mesh(trimesh.creation.box())
    # 18 edges: 12 cube edges at 90° (1 − cos = 1) and 6 flat face diagonals (0)
    assert len(unique_edges(f)) == 18
    assert float(normal_consistency(v, f)) == pytest.approx(12 / 18)


def test_face_neighbors_are_symmetric_and_closed():
    v, f = _mesh(trimesh.creation.icosphere(1))
    nb = face_neighbors(f)
    assert (nb >= 0).all()  # closed: every edge has two faces
    rows = torch.arange(len(f)).unsqueeze(1).expand(-1, 3)
    assert all(int(r) in nb[int(n)].tolist() for r, n in zip(rows.reshape(-1), nb.reshape(-1)))
    open_f = f[1:]  # drop a face: its three neighbours get a boundary edge
    assert int((face_neighbors(open_f) < 0).sum()) == 3


def _sheet(n: int = 8):
    i, j = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    xy = torch.stack([i, j], -1).reshape(-1, 2).double() / (n - 1)
    k = (i[:-1, :-1] * n + j[:-1, :-1]).reshape(-1)
    f = torch.cat([torch.stack([k, k + n, k + 1], 1), torch.stack([k + 1, k + n, k + n + 1], 1)])
    return xy, f


def test_regularisers_vanish_on_a_flat_sheet_and_their_gradients_smooth_noise():
    xy, f = _sheet()
    flat = torch.cat([xy, torch.zeros(len(xy), 1, dtype=torch.float64)], 1)
    assert float(normal_consistency(flat, f)) == pytest.approx(0.0, abs=1e-12)
    z = (0.02 * torch.randn(len(xy), generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    z.requires_grad_(True)

    def losses():
        v = torch.cat([xy, z.unsqueeze(1)], 1)
        return normal_consistency(v, f), laplacian_smoothing(v, f)

    nc0, lap0 = (float(x.detach()) for x in losses())
    opt = torch.optim.Adam([z], lr=2e-3)
    for _ in range(100):
        opt.zero_grad()
        nc, lap = losses()
        (nc + 10 * lap).backward()
        opt.step()
    nc1, lap1 = (float(x.detach()) for x in losses())
    assert nc1 < 0.5 * nc0 and lap1 < lap0


def test_components_and_hidden_bubbles():
    from engine.mesh.raster import TorchRasterizer
    from engine.mesh.visibility import connected_components, drop_hidden_components
    outer = trimesh.creation.icosphere(2, radius=0.8)
    inner = trimesh.creation.icosphere(1, radius=0.3)  # a closed bubble inside: never visible
    side = trimesh.creation.icosphere(1, radius=0.1)
    side.apply_translation((0.0, -0.95, 0.0))  # a small visible blob in front
    mesh = trimesh.util.concatenate([outer, inner, side])
    v, f = torch.tensor(mesh.vertices, dtype=torch.float32), torch.tensor(mesh.faces)
    labels = connected_components(f, len(v))
    assert len(torch.unique(labels)) == 3
    kept = drop_hidden_components(v, f, TorchRasterizer(), radius=1.0, resolution=64)
    assert len(kept) == len(outer.faces) + len(side.faces)
    assert set(torch.unique(kept).tolist()).isdisjoint(range(len(outer.vertices), len(outer.vertices) + len(inner.vertices)))
