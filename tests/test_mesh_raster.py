"""Torch rasteriser: coverage, depth test, barycentrics, gradients, antialiasing; nvdiffrast agreement on GPU."""
import math

import pytest
import torch
import trimesh

from engine.cameras import make_cameras
from engine.mesh.raster import TorchRasterizer, make_rasterizer
from engine.mesh.render import clip_positions, render_mesh


def brute_force_ids(pos: torch.Tensor, tri: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Reference visibility: every pixel centre against every triangle, nearest z/w wins (w = 1 only)."""
    ys = (2 * torch.arange(h, dtype=torch.float64) + 1) / h - 1
    xs = (2 * torch.arange(w, dtype=torch.float64) + 1) / w - 1
    py, px = torch.meshgrid(ys, xs, indexing="ij")
    p = pos.double()[tri]  # (F, 3, 4)
    a, b, c = p[:, 0, None, None], p[:, 1, None, None], p[:, 2, None, None]

    def edge(u, v):
        return (v[..., 0] - u[..., 0]) * (py - u[..., 1]) - (v[..., 1] - u[..., 1]) * (px - u[..., 0])

    area = edge(a, b)[:, 0, 0] * 0 + ((b[..., 0] - a[..., 0]) * (c[..., 1] - a[..., 1])
                                      - (b[..., 1] - a[..., 1]) * (c[..., 0] - a[..., 0]))[:, 0, 0]
    l0, l1, l2 = (edge(b, c) / area[:, None, None], edge(c, a) / area[:, None, None], edge(a, b) / area[:, None, None])
    inside = (l0 >= 0) & (l1 >= 0) & (l2 >= 0)
    z = l0 * a[..., 2] + l1 * b[..., 2] + l2 * c[..., 2]
    z = torch.where(inside & (z >= -1) & (z <= 1), z, torch.full_like(z, math.inf))
    best, idx = z.min(dim=0)
    return torch.where(torch.isfinite(best), idx + 1, torch.zeros_like(idx))


def test_single_triangle_covers_exactly_the_expected_pixels():
    # right triangle with legs along the left and bottom edges: pixel centre (j, i) is inside
    # when x + y ≤ 0.02 in NDC, i.e. the lower-left half (rows bottom-up as in nvdiffrast)
    pos = torch.tensor([[[-1.0, -1.0, 0.0, 1.0], [1.02, -1.0, 0.0, 1.0], [-1.0, 1.02, 0.0, 1.0]]])
    tri = torch.tensor([[0, 1, 2]])
    rast = TorchRasterizer().rasterize(pos, tri, (8, 8))
    i, j = torch.meshgrid(torch.arange(8), torch.arange(8), indexing="ij")
    expected = (i + j) <= 7  # centres: x + y = (i + j + 1)/4 − 2
    assert torch.equal(rast[0, ..., 3] > 0, expected)
    # barycentrics reproduce the pixel centre
    xy = TorchRasterizer().interpolate(pos[0, :, :2], rast, tri)[0]
    centres = torch.stack([(2 * j + 1) / 8 - 1, (2 * i + 1) / 8 - 1], dim=-1).float()
    assert torch.allclose(xy[expected], centres[expected], atol=1e-6)


def test_depth_test_keeps_the_nearest_triangle_in_either_order():
    near = [[-1.0, -1.0, -0.5, 1.0], [1.0, -1.0, -0.5, 1.0], [0.0, 1.0, -0.5, 1.0]]
    far = [[-1.0, 1.0, 0.5, 1.0], [1.0, 1.0, 0.5, 1.0], [0.0, -1.0, 0.5, 1.0]]
    for order in ([near, far], [far, near]):
        pos = torch.tensor([order[0] + order[1]])
        tri = torch.tensor([[0, 1, 2], [3, 4, 5]])
        rast = TorchRasterizer().rasterize(pos, tri, (16, 16))
        near_id = 1 if order[0] is near else 2
        both = brute_force_ids(pos[0], tri, 16, 16)
        assert torch.equal(rast[0, ..., 3].long(), both)
        assert (rast[0, ..., 3] == near_id).sum() > (rast[0, ..., 3] == 3 - near_id).sum()
        assert (rast[0, ..., 2][rast[0, ..., 3] == near_id] < 0).all()


def test_random_triangle_soup_matches_brute_force_with_small_chunks():
    gen = torch.Generator().manual_seed(1)
    n = 40
    pos = torch.cat([torch.rand(n * 3, 3, generator=gen) * 2.4 - 1.2, torch.ones(n * 3, 1)], dim=-1)
    tri = torch.arange(n * 3).view(n, 3)
    ids = TorchRasterizer(pairs_per_chunk=257).rasterize(pos[None], tri, (24, 32))[0, ..., 3].long()
    assert torch.equal(ids, brute_force_ids(pos, tri, 24, 32))


def _sphere(subdivisions: int = 3, radius: float = 0.6):
    ico = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    return torch.tensor(ico.vertices, dtype=torch.float32), torch.tensor(ico.faces)


def _cams(w: int = 40, h: int = 32):
    return make_cameras(torch.tensor([0.3, -0.2]), torch.tensor([0.0, 2.0]), torch.tensor([2.5, 2.0]),
                        torch.tensor([0.7, 0.9]), w, h)


def test_perspective_render_matches_ray_cast_sphere():
    v, f = _sphere(4)
    cams = _cams()
    out = render_mesh(TorchRasterizer(), v, f, cams, antialias=False)
    o, d = cams.rays()
    b = (o * d).sum(-1)
    disc = b * b - ((o * o).sum(-1) - 0.6 ** 2)
    # pixels whose ray clearly hits / misses the sphere agree (the icosphere is inscribed: near the
    # silhouette it may miss by up to the chord sagitta)
    sure_hit, sure_miss = disc > 0.02, disc < 0
    covered = out.triangle > 0
    assert covered[sure_hit].all() and not covered[sure_miss].any()
    t = -b - disc.clamp(min=0).sqrt()
    hit_point = o + t.unsqueeze(-1) * d
    err = (out.points - hit_point).norm(dim=-1)[sure_hit]
    assert err.max() < 0.01  # the facets sit within the sagitta of the true sphere
    n = out.image * 2 - 1
    assert ((n - hit_point / 0.6).norm(dim=-1)[sure_hit]).mean() < 0.05


def test_gradients_reach_positions_and_texture():
    v, f = _sphere(2)
    v = v.clone().requires_grad_(True)
    texture = torch.full((1, 3, 8, 8), 0.5, requires_grad=True)

    def albedo(points):  # a texture looked up by the surface point's (x, z)
        grid = points[:, [0, 2]].view(1, -1, 1, 2) / 0.6
        return torch.nn.functional.grid_sample(texture, grid, align_corners=False)[0, :, :, 0].T

    out = render_mesh(TorchRasterizer(), v, f, _cams(), shade=albedo,
                      background=torch.ones(2, 32, 40, 3))
    out.image.sum().backward()
    assert texture.grad is not None and texture.grad.abs().sum() > 0
    assert v.grad is not None and torch.isfinite(v.grad).all() and v.grad.abs().sum() > 0


def test_antialiased_coverage_moves_with_the_silhouette():
    """A big quad over a black background: AA coverage equals the covered area, and its gradient
    with respect to the edge position is the edge length in pixels."""
    w = h = 16
    x_edge = torch.tensor(0.3, requires_grad=True)  # NDC position of the quad's right edge
    zero, one = torch.zeros(()), torch.ones(())
    corners = [(-0.9, -0.9), (x_edge, -0.9), (x_edge, 0.9), (-0.9, 0.9)]
    pos = torch.stack([torch.stack([torch.as_tensor(x) + zero, torch.as_tensor(y) + zero, zero, one])
                       for x, y in corners]).unsqueeze(0)
    tri = torch.tensor([[0, 1, 2], [0, 2, 3]])
    r = TorchRasterizer()
    rast = r.rasterize(pos, tri, (h, w))
    mask = (rast[..., 3:4] > 0).float()
    aa = r.antialias(mask, rast, pos, tri)
    area_px = (0.3 + 0.9) / 2 * w * (1.8 / 2 * h)
    binary = float(mask.sum())
    # corners (diagonal neighbours) and pixels whose own triangle has no silhouette edge between
    # the two centres are not blended (as in nvdiffrast); the rest is
    assert abs(binary - area_px) > 10.0
    assert abs(float(aa.detach().sum()) - area_px) < 1.0
    aa.sum().backward()
    assert float(x_edge.grad) == pytest.approx(1.8 / 2 * h * w / 2, rel=0.15)


def test_make_rasterizer_falls_back_to_torch_on_cpu():
    assert make_rasterizer("cpu").name == "torch"
    with pytest.raises(RuntimeError):
        make_rasterizer("cpu", prefer="nvdiffrast")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (CPU twin: the brute-force tests above)")
def test_torch_rasterizer_agrees_with_nvdiffrast():
    pytest.importorskip("nvdiffrast.torch")
    from engine.mesh.raster.nvdiffrast_raster import NvdiffrastRasterizer
    v, f = _sphere(3)
    cams = _cams(64, 48).to("cuda")
    pos = clip_positions(v.cuda(), cams)
    nv, tr = NvdiffrastRasterizer("cuda"), TorchRasterizer()
    ra, rb = nv.rasterize(pos, f.cuda(), (48, 64)), tr.rasterize(pos, f.cuda(), (48, 64))
    same = ra[..., 3] == rb[..., 3]
    assert same.float().mean() > 0.995  # ties on shared edges may go either way
    both = same & (ra[..., 3] > 0)
    assert torch.allclose(ra[..., :3][both], rb[..., :3][both], atol=1e-4)
    attr = v.cuda()
    assert torch.allclose(nv.interpolate(attr, ra, f.cuda())[both], tr.interpolate(attr, rb, f.cuda())[both], atol=1e-4)
