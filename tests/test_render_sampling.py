"""Ray sampling: one jitter offset per ray from a device generator, and importance resampling."""
from __future__ import annotations

import math

import pytest
import torch

from engine.cameras import Cameras, make_cameras
from engine.field import OccupancyGrid, RadianceField
from engine.presets import cpu_smoke
from engine.render import render_volume, sphere_intersect
from engine.render.jitter import device_generator
from engine.render.packed import render_samples
from engine.render.speed import weighted_step


class HardBall:
    """σ = 500 inside |x| < r (a surface), albedo varying with position."""

    def __init__(self, r: float = 0.5, sigma: float = 500.0):
        self.r, self.sigma = r, sigma

    def density(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(x.norm(dim=-1) < self.r, torch.full_like(x[:, 0], self.sigma), torch.zeros_like(x[:, 0]))

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.density(x), (x * 0.4 + 0.5).clamp(0, 1)


def looking_down(xy: list[tuple[float, float]]) -> Cameras:
    n = len(xy)
    c2w = torch.eye(4).repeat(n, 1, 1)
    c2w[:, 0, 3] = torch.tensor([p[0] for p in xy])
    c2w[:, 1, 3] = torch.tensor([p[1] for p in xy])
    c2w[:, 2, 3] = 3.0
    z = torch.zeros(n)
    return Cameras(c2w, torch.full((n,), math.radians(40.0)), z, z, torch.full((n,), 3.0), 1, 1)


def white(cams: Cameras) -> torch.Tensor:
    return torch.ones(cams.batch, cams.height, cams.width, 3)


def _blob_scene(res: int = 20):
    field = RadianceField(cpu_smoke().field, gen=torch.Generator().manual_seed(0), backend="torch")
    grid = OccupancyGrid(1.0, resolution=32)
    grid.update(field, 0)
    cams = make_cameras(torch.tensor([0.3, -0.2]), torch.tensor([0.7, 2.0]), torch.tensor([2.4, 2.2]),
                        torch.tensor([0.8, 0.7]), res, res)
    return field, grid, cams


def test_a_render_takes_one_draw_from_the_stage_generator_and_none_from_the_global_one():
    field, grid, cams = _blob_scene(12)
    gen, twin = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    state = torch.random.get_rng_state()
    with torch.no_grad():
        render_volume(field, cams, white(cams), 32, 1.0, gen=gen, occupancy=grid, importance_samples=16)
    device_generator(twin, "cpu")  # exactly one scalar draw, whatever the number of rays and samples
    assert torch.equal(gen.get_state(), twin.get_state())
    assert torch.equal(state, torch.random.get_rng_state())


def test_each_ray_shifts_all_its_samples_by_one_offset():
    field, _, cams = _blob_scene(8)
    o, d = (a.reshape(-1, 3) for a in cams.rays())
    t0, t1, hit = sphere_intersect(o, d, 1.0)
    o, d, t0, t1 = o[hit], d[hit], t0[hit], t1[hit]
    dgen = device_generator(torch.Generator().manual_seed(1), "cpu")
    s = render_samples(field, o, d, t0, t1, 24, dgen, None, 0.0)
    frac = ((s.t_mid - s.t_start) / (s.t_end - s.t_start)).view(-1, 24)  # every bin of every ray, no occupancy
    assert torch.allclose(frac, frac[:, :1].expand_as(frac), atol=1e-4)
    assert float(frac[:, 0].std()) > 0.2  # the offsets differ between rays (uniform: std ≈ 0.29)


def _grads(method: str, fine: int, normals: bool = False, eps: float = 0.0):
    field, grid, cams = _blob_scene()
    out = render_volume(field, cams, white(cams) * 0.3, 32, 1.0, gen=torch.Generator().manual_seed(7), occupancy=grid,
                        want_normals=normals, early_stop_eps=eps, method=method, importance_samples=fine)
    (out.rgb.square().sum() + out.depth.sum() + out.depth_variance.sum()).backward()
    return out, {n: p.grad.clone() for n, p in field.named_parameters()}


def test_importance_resampling_packed_matches_batched_values_and_gradients():
    ref, ref_grads = _grads("batched", 24, normals=True)
    out, grads = _grads("packed", 24, normals=True)
    plain, _ = _grads("packed", 0)
    assert 0.05 < float(ref.opacity.detach().mean()) < 0.95
    for key in ("rgb", "opacity", "depth", "normal", "depth_variance"):
        assert torch.allclose(getattr(out, key), getattr(ref, key), atol=1e-5, rtol=0), key
    for name, g in ref_grads.items():
        assert g.abs().sum() > 0 and torch.allclose(grads[name], g, atol=1e-5, rtol=1e-4), name
    assert not torch.allclose(plain.depth, out.depth, atol=1e-5)  # the fine samples are used


def test_importance_samples_find_a_hard_surface_far_closer_than_the_bins():
    """Camera at z = 3 over a hard ball of radius 0.5: each ray's depth is its entry into the ball."""
    xy = [(0.0, 0.0), (0.1, 0.2), (-0.3, 0.05), (0.25, -0.3)]
    cams = looking_down(xy)
    true = torch.tensor([3.0 - math.sqrt(0.25 - x * x - y * y) for x, y in xy])
    errs = {}
    for fine in (0, 32):
        e = [render_volume(HardBall(), cams, white(cams), 32, 1.0, gen=torch.Generator().manual_seed(s),
                           importance_samples=fine).depth.view(-1) - true for s in range(6)]
        errs[fine] = float(torch.stack(e).abs().mean())
    assert errs[0] > 0.01  # 32 bins over the unit sphere's chord: 0.0625 apart
    assert errs[32] < 0.15 * errs[0], errs


def test_weighted_step_size_shrinks_with_importance_samples():
    cams = make_cameras(torch.tensor([0.3]), torch.tensor([0.5]), torch.tensor([2.5]), torch.tensor([0.8]), 16, 16)
    coarse = weighted_step(HardBall(), cams, 64, 1.0, None, 0)
    fine = weighted_step(HardBall(), cams, 64, 1.0, None, 64)
    assert abs(coarse - 2.0 / 64) < 0.004  # uniform bins: the bin where the weight is
    assert fine < coarse / 8, (coarse, fine)


def test_importance_with_early_stop_skips_occluded_samples():
    field, grid, cams = _blob_scene()
    with torch.no_grad():
        field.density_net[-1].bias += 30.0  # σ ≥ 20 everywhere: rays saturate early
    counts, outs = {}, {}
    for eps in (0.0, 1e-4):
        seen = []

        class Counting:
            def density(self, x):
                return field.density(x)

            def __call__(self, x, seen=seen):
                seen.append(x.shape[0])
                return field(x)

        outs[eps] = render_volume(Counting(), cams, white(cams), 32, 1.0, occupancy=None, early_stop_eps=eps,
                                  importance_samples=16)
        counts[eps] = sum(seen)
    assert counts[1e-4] < 0.6 * counts[0.0]
    assert torch.allclose(outs[0.0].rgb, outs[1e-4].rgb, atol=2e-3)


def test_seeded_importance_render_repeats_per_seed():
    field, grid, cams = _blob_scene(10)
    with torch.no_grad():
        a, b, c = (render_volume(field, cams, white(cams), 16, 1.0, gen=torch.Generator().manual_seed(s),
                                 occupancy=grid, importance_samples=8) for s in (1, 1, 2))
    assert torch.equal(a.rgb, b.rgb) and not torch.equal(a.rgb, c.rgb)


def test_negative_importance_samples_are_explained():
    cams = looking_down([(0.0, 0.0)])
    with pytest.raises(ValueError, match="importance_samples"):
        render_volume(HardBall(), cams, white(cams), 8, 1.0, importance_samples=-1)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA; CPU twin: the tests above")
def test_cuda_jitter_is_drawn_on_the_device_and_repeats_per_seed():
    field, grid, cams = _blob_scene(16)
    field, grid, cams = field.cuda(), grid.cuda(), cams.to("cuda")
    bg = white(cams).cuda()
    global_state = torch.cuda.get_rng_state()
    with torch.no_grad():
        a, b, c = (render_volume(field, cams, bg, 32, 1.0, gen=torch.Generator().manual_seed(s), occupancy=grid,
                                 method="packed", importance_samples=16) for s in (4, 4, 5))
    assert torch.equal(global_state, torch.cuda.get_rng_state())
    assert torch.equal(a.rgb, b.rgb) and not torch.equal(a.rgb, c.rgb)
    cpu = render_volume(field.cpu(), cams.to("cpu"), bg.cpu(), 32, 1.0, occupancy=grid.cpu(), importance_samples=16)
    gpu = render_volume(field.cuda(), cams, bg, 32, 1.0, occupancy=grid.cuda(), method="packed", importance_samples=16)
    assert torch.allclose(cpu.rgb, gpu.rgb.cpu(), atol=1e-3)
