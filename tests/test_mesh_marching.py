"""Tet grid, marching tetrahedra, DMTet and density extraction on analytic shapes."""
import math

import pytest
import torch
import trimesh

from engine.mesh.dmtet import DMTet
from engine.mesh.extract import dmtet_from_density, fit_bbox
from engine.mesh.marching_tets import marching_tets
from engine.mesh.metrics import chamfer_to_surface
from engine.mesh.tetgrid import TetGrid

RADIUS = 0.6


def sphere_sdf(p: torch.Tensor) -> torch.Tensor:
    return p.norm(dim=-1) - RADIUS


def sphere_points(n: int, gen: torch.Generator) -> torch.Tensor:
    d = torch.randn(n, 3, generator=gen)
    return RADIUS * d / d.norm(dim=-1, keepdim=True)


def test_grid_is_a_conforming_positive_tetrahedralisation():
    grid = TetGrid.cube(3, 1.0)
    p, tets = grid.vertices().double(), grid.all_tets()
    a, b, c, d = (p[tets[:, k]] for k in range(4))
    vol = torch.linalg.det(torch.stack([b - a, c - a, d - a], dim=1)) / 6
    assert (vol > 0).all()
    assert float(vol.sum()) == pytest.approx(8.0)  # fills the [-1, 1]³ cube exactly, no overlap
    # every interior triangle is shared by exactly two tets (conforming), boundary ones by one
    tri = torch.cat([tets[:, [1, 2, 3]], tets[:, [0, 2, 3]], tets[:, [0, 1, 3]], tets[:, [0, 1, 2]]])
    _, counts = torch.unique(torch.sort(tri, dim=1).values, dim=0, return_counts=True)
    assert set(counts.tolist()) == {1, 2}
    assert int((counts == 1).sum()) == 6 * 3 * 3 * 2  # 2 triangles per boundary square


@pytest.mark.parametrize("resolution,bound", [(16, 0.006), (32, 0.002)])  # measured 0.0043 / 0.0011
def test_sphere_is_watertight_outward_and_close(resolution, bound):
    grid = TetGrid.cube(resolution, 1.0)
    p = grid.vertices()
    sdf = sphere_sdf(p)
    v, f = marching_tets(p, sdf, grid.surface_tets(sdf))
    mesh = trimesh.Trimesh(v.numpy(), f.numpy(), process=False)
    assert mesh.is_watertight and mesh.is_winding_consistent
    assert mesh.volume == pytest.approx(4 / 3 * math.pi * RADIUS ** 3, rel=0.03)  # > 0: normals point out
    gen = torch.Generator().manual_seed(0)
    cd = chamfer_to_surface(v, f, sphere_sdf, sphere_points(5000, gen), 5000, gen)
    assert cd < bound, cd


def test_surface_tets_match_all_tets():
    grid = TetGrid.cube(10, 1.0)
    p = grid.vertices()
    sdf = sphere_sdf(p + torch.tensor([0.1, -0.05, 0.2]))
    v1, f1 = marching_tets(p, sdf, grid.all_tets())
    v2, f2 = marching_tets(p, sdf, grid.surface_tets(sdf))
    assert f1.shape == f2.shape and v1.shape == v2.shape
    key = lambda v: sorted(map(tuple, v.mul(1e5).round().tolist()))  # noqa: E731
    assert key(v1) == key(v2)


def test_dmtet_gradients_reach_sdf_and_offsets_and_offsets_are_bounded():
    grid = TetGrid.cube(12, 1.0)
    net = DMTet.from_sdf_fn(sphere_sdf, grid)
    with torch.no_grad():
        net.deform.fill_(50.0)  # saturates tanh: at most half a cell
    moved = (net.vertices() - net.base_vertices).abs().max()
    assert float(moved.detach()) == pytest.approx(1.0 / 12, rel=1e-3)
    net.deform.data.normal_(0, 0.1)
    v, f = net.extract()
    (v.norm(dim=-1) - 0.3).square().mean().backward()
    assert net.sdf.grad.abs().sum() > 0 and net.deform.grad.abs().sum() > 0
    restored = DMTet.from_state_dict(net.state_dict())
    v2, f2 = restored.extract()
    assert torch.allclose(v, v2) and torch.equal(f, f2)


def test_boundary_layer_keeps_surfaces_closed():
    grid = TetGrid.cube(8, 0.5)  # the sphere of radius 0.6 does not fit: clipped by the box
    net = DMTet.from_sdf_fn(sphere_sdf, grid)
    v, f = net.extract()
    assert trimesh.Trimesh(v.detach().numpy(), f.numpy(), process=False).is_watertight


def test_an_open_dmtet_stays_open_through_its_checkpoint():
    """A scene's DMTet leaves the surface open where the solid meets the box; resuming keeps it so,
    and a checkpoint from before the flag existed loads as the closed object it was."""
    grid = TetGrid.cube(8, 0.5)
    net = DMTet(grid, DMTet.from_sdf_fn(sphere_sdf, grid).sdf.detach(), closed=False)
    v, f = net.extract()
    assert not trimesh.Trimesh(v.detach().numpy(), f.numpy(), process=False).is_watertight
    v2, f2 = DMTet.from_state_dict(net.state_dict()).extract()
    assert torch.allclose(v, v2) and torch.equal(f, f2)
    old = {k: t for k, t in net.state_dict().items() if k != "closed"}
    v3, f3 = DMTet.from_state_dict(old).extract()
    assert trimesh.Trimesh(v3.detach().numpy(), f3.numpy(), process=False).is_watertight


def test_density_extraction_fits_the_box_and_finds_the_surface():
    centre = torch.tensor([0.1, 0.0, -0.2])

    def density(x):  # 50 inside an ellipsoid, 0 outside, smooth across the surface
        q = (x - centre) / torch.tensor([0.3, 0.4, 0.5])
        return 50.0 * torch.sigmoid(-(q.norm(dim=-1) - 1.0) / 0.02)

    lo, hi = fit_bbox(density, threshold=25.0)
    half = torch.tensor([0.3, 0.4, 0.5])
    assert (lo < centre - half).all() and (hi > centre + half).all()
    assert (hi - lo < 2.6 * half).all()  # far tighter than the [-1, 1] box
    net = dmtet_from_density(density, resolution=24, threshold=25.0)
    v, f = net.extract()
    q = (v.detach() - centre) / half
    assert (q.norm(dim=-1) - 1).abs().max() < 0.05


def test_empty_density_gives_a_clear_error():
    from engine.errors import EngineError
    with pytest.raises(EngineError, match="threshold"):
        fit_bbox(lambda x: torch.zeros(x.shape[0]), threshold=25.0)


def test_silhouette_threshold_follows_what_the_field_renders():
    from engine.mesh.extract import silhouette_threshold

    def solid(x):  # a ball of radius 0.5 with σ = 12 inside: opaque (σ·1 ≫ 1), yet below 25 everywhere
        return 12.0 * torch.sigmoid(-(x.norm(dim=-1) - 0.5) / 0.01)

    level, info = silhouette_threshold(solid, wanted=25.0)
    assert 0.5 < level < 12.0 and info["disagreement"] < 0.01 < info["disagreement_at_wanted"]

    def dense(x):  # σ = 200 inside: 25 works as well as any level, so the reference value is kept
        return 200.0 * torch.sigmoid(-(x.norm(dim=-1) - 0.5) / 0.01)

    assert silhouette_threshold(dense, wanted=25.0)[0] == 25.0
