"""Volume renderer (CPU batched nerfacc path) and occupancy grid against analytic answers."""
from __future__ import annotations

import math

import pytest
import torch

from engine.cameras import Cameras, make_cameras
from engine.field import OccupancyGrid, RadianceField
from engine.presets import cpu_smoke
from engine.render import render_volume, sphere_intersect


class Slab:
    """Constant density σ where |z| < h, zero elsewhere; albedo depends on position."""

    def __init__(self, sigma: float, h: float):
        self.sigma, self.h = sigma, h

    def density(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(x[:, 2].abs() < self.h, torch.full_like(x[:, 0], self.sigma), torch.zeros_like(x[:, 0]))

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.density(x), (x * 0.3 + 0.5).clamp(0, 1)


def looking_down(xy: list[tuple[float, float]], size: int = 1, fov_deg: float = 40.0) -> Cameras:
    """Cameras at (x, y, 3) looking along −Z; with size 1 the single ray is exactly vertical."""
    n = len(xy)
    c2w = torch.eye(4).repeat(n, 1, 1)
    c2w[:, 0, 3] = torch.tensor([p[0] for p in xy])
    c2w[:, 1, 3] = torch.tensor([p[1] for p in xy])
    c2w[:, 2, 3] = 3.0
    z = torch.zeros(n)
    return Cameras(c2w, torch.full((n,), math.radians(fov_deg)), z, z, torch.full((n,), 3.0), size, size)


def white(cams: Cameras) -> torch.Tensor:
    return torch.ones(cams.batch, cams.height, cams.width, 3)


@pytest.mark.parametrize("seeded", [False, True])
def test_slab_spanning_the_chord_gives_exact_transmittance(seeded):
    sigma, radius = 3.0, 1.0
    offsets = [(0.0, 0.0), (0.3, 0.1), (-0.5, 0.6), (0.9, 0.0)]
    cams = looking_down(offsets)
    gen = torch.Generator().manual_seed(0) if seeded else None
    out = render_volume(Slab(sigma, h=2.0), cams, white(cams), 16, radius, gen=gen)
    chord = torch.tensor([2 * math.sqrt(radius**2 - x * x - y * y) for x, y in offsets])
    expected = 1 - torch.exp(-sigma * chord)
    assert torch.allclose(out.opacity.view(-1), expected, atol=1e-4, rtol=0)
    # depth of a homogeneous medium: entry + 1/σ − chord·T/(1 − T), T the transmittance
    t = torch.exp(-sigma * chord)
    entry = 3.0 - chord / 2
    depth = entry + 1 / sigma - chord * t / (1 - t)
    if seeded:  # one jitter offset per ray shifts all of its samples: within half a bin, right on average
        assert ((out.depth.view(-1) - depth).abs() <= chord / 32 + 0.02).all()
        mean = torch.stack([render_volume(Slab(sigma, h=2.0), cams, white(cams), 16, radius,
                                          gen=torch.Generator().manual_seed(s)).depth.view(-1) for s in range(32)])
        assert torch.allclose(mean.mean(0), depth, atol=0.02)
    else:
        assert torch.allclose(out.depth.view(-1), depth, atol=0.02)
    # and its spread: the variance of an exponential truncated at the chord, 1/σ² − L²T/(1 − T)²
    variance = 1 / sigma**2 - chord**2 * t / (1 - t) ** 2
    assert torch.allclose(out.depth_variance.view(-1), variance, atol=0.01)


@pytest.mark.parametrize("seeded", [False, True])
def test_thin_slab_aligned_with_bins_gives_exp_minus_sigma_d(seeded):
    # central ray: chord [−1, 1] in 64 bins of 1/32; the slab |z| < 0.25 covers 16 whole bins
    cams = looking_down([(0.0, 0.0)])
    gen = torch.Generator().manual_seed(1) if seeded else None
    out = render_volume(Slab(5.0, h=0.25), cams, white(cams), 64, 1.0, gen=gen)
    assert abs(float(out.opacity) - (1 - math.exp(-5.0 * 0.5))) < 1e-4


def test_pixels_across_an_image_match_the_analytic_ball():
    """A slab thicker than the sphere is a homogeneous ball: every pixel's opacity is 1 − e^{−σ·chord}."""
    cams = looking_down([(0.0, 0.0)], size=8, fov_deg=50.0)
    out = render_volume(Slab(2.0, h=5.0), cams, white(cams), 32, 1.0)
    o, d = cams.rays()
    t0, t1, hit = sphere_intersect(o.reshape(-1, 3), d.reshape(-1, 3), 1.0)
    expected = torch.where(hit, 1 - torch.exp(-2.0 * (t1 - t0)), torch.zeros_like(t0))
    assert hit.any() and (~hit).any()
    assert torch.allclose(out.opacity.view(-1), expected, atol=1e-4, rtol=0)


def test_empty_field_returns_the_background_exactly():
    cams = make_cameras(torch.tensor([0.2, -0.1]), torch.tensor([0.0, 2.0]), torch.tensor([2.4, 1.5]),
                        torch.tensor([0.8, 0.8]), 6, 5)
    bg = torch.rand(2, 5, 6, 3, generator=torch.Generator().manual_seed(0))
    out = render_volume(Slab(0.0, h=5.0), cams, bg, 16, 1.0)
    assert torch.equal(out.rgb, bg)
    assert torch.equal(out.opacity, torch.zeros(2, 5, 6, 1)) and torch.equal(out.depth, torch.zeros(2, 5, 6, 1))
    out = render_volume(Slab(0.0, h=5.0), cams, white(cams), 16, 1.0)
    assert torch.equal(out.rgb, torch.ones(2, 5, 6, 3))


def test_rays_missing_the_sphere_show_background():
    cams = looking_down([(1.5, 0.0)], size=4, fov_deg=10.0)  # sphere entirely off to the side
    out = render_volume(Slab(10.0, h=5.0), cams, white(cams) * 0.25, 16, 1.0)
    assert torch.equal(out.opacity, torch.zeros_like(out.opacity)) and torch.allclose(out.rgb, white(cams) * 0.25)


def _blob() -> RadianceField:
    return RadianceField(cpu_smoke().field, gen=torch.Generator().manual_seed(0), backend="torch")


def test_blob_normal_map_points_outward_and_gradients_flow():
    field = _blob()
    cams = make_cameras(torch.tensor([0.3]), torch.tensor([0.7]), torch.tensor([2.0]), torch.tensor([0.6]), 12, 12)
    out = render_volume(field, cams, white(cams), 32, 1.0, gen=torch.Generator().manual_seed(0), want_normals=True)
    o, d = cams.rays()
    surface = o + out.depth * d
    solid = out.opacity[..., 0] > 0.5
    assert solid.sum() > 10
    n = torch.nn.functional.normalize(out.normal[solid], dim=-1)
    outward = torch.nn.functional.normalize(surface[solid], dim=-1)
    assert (n * outward).sum(-1).min() > 0.9
    assert out.normal.norm(dim=-1).max() <= out.opacity[..., 0].max() + 1e-5  # Σ wᵢ nᵢ, not renormalised
    (out.rgb.sum()).backward()
    assert field.encoding.table.grad.abs().sum() > 0 and field.albedo_net[0].weight.grad.abs().sum() > 0
    assert field.density_net[0].weight.grad.abs().sum() > 0


def test_evaluation_render_is_deterministic():
    field = _blob()
    cams = looking_down([(0.1, 0.0)], size=6)
    with torch.no_grad():
        a = render_volume(field, cams, white(cams), 24, 1.0)
        b = render_volume(field, cams, white(cams), 24, 1.0)
    assert torch.equal(a.rgb, b.rgb) and a.opacity.max() > 0.5


class CellField:
    """Density constant on whole occupancy cells (zero outside them), so pruning must change nothing."""

    def __init__(self, grid: OccupancyGrid, cells: torch.Tensor):
        self.grid, self.cells = grid, cells

    def density(self, x: torch.Tensor) -> torch.Tensor:
        r = self.grid.resolution
        idx = torch.floor((x + self.grid.radius) / self.grid.cell_size).long().clamp(0, r - 1)
        on = self.cells[idx[:, 0], idx[:, 1], idx[:, 2]]
        return torch.where(on, 4.0 + x[:, 0], torch.zeros_like(x[:, 0]))

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.density(x), torch.sigmoid(x * 3)


def test_occupancy_pruning_changes_nothing_where_density_is_zero():
    grid = OccupancyGrid(1.0, resolution=16, update_every=4)
    centres = grid.cell_centres().view(16, 16, 16, 3)
    cells = (centres - torch.tensor([0.2, -0.1, 0.0])).norm(dim=-1) < 0.45
    field = CellField(grid, cells)
    assert grid.update(field, 0)
    assert torch.equal(grid.mask, cells)
    assert 0.02 < grid.occupied_fraction() < 0.2
    cams = make_cameras(torch.tensor([0.4, 0.0]), torch.tensor([0.3, 2.5]), torch.tensor([2.2, 2.2]),
                        torch.tensor([0.9, 0.9]), 16, 16)
    gen_a, gen_b = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    full = render_volume(field, cams, white(cams), 48, 1.0, gen=gen_a)
    pruned = render_volume(field, cams, white(cams), 48, 1.0, gen=gen_b, occupancy=grid)
    assert full.opacity.max() > 0.9
    assert torch.allclose(full.rgb, pruned.rgb, atol=1e-6) and torch.allclose(full.depth, pruned.depth, atol=1e-5)


def test_occupancy_schedule_warmup_and_state():
    field = _blob()
    grid = OccupancyGrid(1.0, resolution=16, update_every=4, warmup_steps=4)
    assert not grid.update(field, 3)  # not a refresh step
    assert grid.update(field, 0) and torch.equal(grid.mask, grid.inside)  # warmup: everything occupied
    assert grid.update(field, 4)
    frac = grid.occupied_fraction()
    assert 0.01 < frac < 0.5  # the blob, not the whole sphere
    centre, corner = torch.tensor([[0.0, 0.0, 0.0]]), torch.tensor([[0.9, 0.9, 0.9]])
    assert grid.lookup(centre).item() and not grid.lookup(corner).item()
    assert not grid.lookup(torch.tensor([[1.5, 0.0, 0.0]])).item()
    copy = OccupancyGrid(1.0, resolution=16, update_every=4, warmup_steps=4)
    copy.load_state_dict(grid.state_dict())
    assert torch.equal(copy.mask, grid.mask) and torch.equal(copy.ema, grid.ema)
    dilated = OccupancyGrid(1.0, resolution=16, dilate=1)
    dilated.update(field, 0)
    assert dilated.occupied_fraction() > frac


class Counting:
    """Wraps a field and counts the points that get the full (σ, albedo) pass."""

    def __init__(self, field):
        self.field, self.points = field, 0

    def density(self, x):
        return self.field.density(x)

    def __call__(self, x):
        self.points += x.shape[0]
        return self.field(x)


def test_early_stop_skips_occluded_samples_and_changes_the_image_by_at_most_eps():
    field = _blob()
    with torch.no_grad():
        field.density_net[-1].bias += 30.0  # σ ≥ 20 everywhere: rays saturate early
    cams = looking_down([(0.0, 0.0)], size=8, fov_deg=40.0)
    every, early = Counting(field), Counting(field)
    a = render_volume(every, cams, white(cams), 32, 1.0, early_stop_eps=0.0)
    b = render_volume(early, cams, white(cams), 32, 1.0, early_stop_eps=1e-4)
    assert early.points < 0.6 * every.points
    assert torch.allclose(a.rgb, b.rgb, atol=2e-4) and a.opacity.max() > 0.999


def test_bad_background_shape_is_explained():
    cams = looking_down([(0.0, 0.0)], size=4)
    with pytest.raises(ValueError, match="background"):
        render_volume(Slab(1.0, 1.0), cams, torch.ones(4, 4, 3), 8, 1.0)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA; CPU twin: the tests above")
def test_cuda_render_agrees_with_cpu():
    cams = looking_down([(0.0, 0.0), (0.3, -0.2)], size=8)
    cpu = render_volume(Slab(2.0, h=5.0), cams, white(cams), 128, 1.0)
    gpu = render_volume(Slab(2.0, h=5.0), cams.to("cuda"), white(cams).cuda(), 128, 1.0)
    assert torch.allclose(cpu.opacity, gpu.opacity.cpu(), atol=2e-2)


def test_march_jitter_comes_from_the_job_generator_only():
    from engine.render.volume import march_start_jitter
    state = torch.random.get_rng_state()
    a = march_start_jitter(1000, 0.05, torch.Generator().manual_seed(3), "cpu")
    b = march_start_jitter(1000, 0.05, torch.Generator().manual_seed(3), "cpu")
    c = march_start_jitter(1000, 0.05, torch.Generator().manual_seed(4), "cpu")
    assert torch.equal(state, torch.random.get_rng_state()), "the jitter drew from torch's global RNG"
    assert torch.equal(a, b), "same generator state, different jitter"
    assert not torch.equal(a, c)
    assert float(a.min()) >= 0.0 and float(a.max()) < 0.05 and abs(float(a.mean()) - 0.025) < 0.003
    assert torch.equal(march_start_jitter(4, 0.05, None, "cpu"), torch.zeros(4))


def test_seeded_render_repeats_per_generator_state_and_spares_the_global_rng():
    field = _blob()
    cams = looking_down([(0.1, 0.0), (-0.2, 0.3)], size=6)
    state = torch.random.get_rng_state()
    with torch.no_grad():
        a, b, c = (render_volume(field, cams, white(cams), 16, 1.0, gen=torch.Generator().manual_seed(s))
                   for s in (1, 1, 2))
    assert torch.equal(state, torch.random.get_rng_state())
    assert torch.equal(a.rgb, b.rgb) and not torch.equal(a.rgb, c.rgb)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA; CPU twin: the two tests above")
def test_cuda_march_jitter_follows_the_job_generator_not_the_global_one():
    from engine.render import volume
    if not volume._nerfacc_kernels():
        pytest.skip("nerfacc's CUDA kernels do not load here")
    field = Slab(2.0, h=0.3)
    cams = looking_down([(0.0, 0.0), (0.3, -0.2)], size=8).to("cuda")
    bg = white(cams).cuda()
    global_state = torch.cuda.get_rng_state()
    with torch.no_grad():
        a, b, c = (render_volume(field, cams, bg, 32, 1.0, gen=torch.Generator().manual_seed(s)) for s in (1, 1, 2))
        assert torch.equal(global_state, torch.cuda.get_rng_state()), "the CUDA path drew from the global RNG"
        torch.cuda.manual_seed(1234)  # a different global CUDA generator must change nothing
        d = render_volume(field, cams, bg, 32, 1.0, gen=torch.Generator().manual_seed(1))
    torch.cuda.set_rng_state(global_state)
    assert torch.equal(a.depth, b.depth) and torch.equal(a.depth, d.depth)
    assert not torch.equal(a.depth, c.depth)


def _blob_scene(res: int = 24) -> tuple[RadianceField, OccupancyGrid, Cameras]:
    field = _blob()
    grid = OccupancyGrid(1.0, resolution=32)
    grid.update(field, 0)
    cams = make_cameras(torch.tensor([0.3, -0.2]), torch.tensor([0.7, 2.0]), torch.tensor([2.4, 2.2]),
                        torch.tensor([0.8, 0.7]), res, res)
    return field, grid, cams


def _render_and_grads(method: str, chunk: int = 1 << 18, eps: float = 0.0, normals: bool = False):
    field, grid, cams = _blob_scene()
    out = render_volume(field, cams, white(cams) * 0.3, 40, 1.0, gen=torch.Generator().manual_seed(7), occupancy=grid,
                        want_normals=normals, early_stop_eps=eps, method=method, chunk=chunk)
    (out.rgb.square().sum() + out.depth.sum() + out.depth_variance.sum()).backward()
    return out, {n: p.grad.clone() for n, p in field.named_parameters()}


def test_packed_render_matches_nerfacc_batched_functions_values_and_gradients():
    ref, ref_grads = _render_and_grads("batched", normals=True)
    out, grads = _render_and_grads("packed", normals=True)
    assert 0.05 < float(ref.opacity.detach().mean()) < 0.95  # the blob covers part of the image
    for key in ("rgb", "opacity", "depth", "normal", "depth_variance"):
        assert torch.allclose(getattr(out, key), getattr(ref, key), atol=1e-5, rtol=0), key
    for name, g in ref_grads.items():
        assert g.abs().sum() > 0 and torch.allclose(grads[name], g, atol=1e-5, rtol=1e-4), name


def test_packed_render_in_checkpointed_chunks_gives_the_same_gradients():
    whole, whole_grads = _render_and_grads("packed")
    chunked, chunked_grads = _render_and_grads("packed", chunk=1000)  # several chunks → checkpointed
    assert torch.allclose(whole.rgb, chunked.rgb, atol=1e-6)
    for name, g in whole_grads.items():
        assert torch.allclose(chunked_grads[name], g, atol=1e-6, rtol=1e-5), name


def test_packed_early_stop_matches_the_batched_early_stop():
    field = _blob()
    with torch.no_grad():
        field.density_net[-1].bias += 30.0  # σ ≥ 20 everywhere: rays saturate early
    cams = looking_down([(0.0, 0.0), (0.2, 0.1)], size=8, fov_deg=40.0)
    counts = {}
    outs = {}
    for method, eps in (("batched", 1e-4), ("packed", 1e-4), ("packed", 0.0)):
        counting = Counting(field)
        outs[method, eps] = render_volume(counting, cams, white(cams), 32, 1.0, early_stop_eps=eps, method=method)
        counts[method, eps] = counting.points
    assert counts["packed", 1e-4] == counts["batched", 1e-4] < 0.6 * counts["packed", 0.0]
    assert torch.allclose(outs["packed", 1e-4].rgb, outs["batched", 1e-4].rgb, atol=1e-6)
    assert torch.allclose(outs["packed", 1e-4].rgb, outs["packed", 0.0].rgb, atol=2e-4)


def test_packed_weights_match_nerfacc_batched_weights_for_random_densities():
    import nerfacc

    from engine.render.packed import PackedSamples, transmittance_weights
    gen = torch.Generator().manual_seed(0)
    rays, bins = 5, 12
    t = torch.sort(torch.rand(rays, bins + 1, generator=gen) * 3, dim=1).values
    sigma = torch.rand(rays, bins, generator=gen) * 4 * (torch.rand(rays, bins, generator=gen) > 0.4)
    keep = sigma > 0  # the packed list holds only non-empty samples; ray 4 may hold none
    sigma[4] = 0.0
    keep[4] = False
    r, b = keep.nonzero(as_tuple=True)
    s = PackedSamples(r, b, t[:, :-1][r, b], t[:, 1:][r, b], t[:, :-1][r, b], torch.zeros(r.shape[0], 3), rays, bins)
    dense = sigma.clone().requires_grad_(True)
    packed = sigma[r, b].clone().requires_grad_(True)
    ref, _, _ = nerfacc.render_weight_from_density(t[:, :-1], t[:, 1:], dense)
    w, trans = transmittance_weights(packed, s)
    assert torch.allclose(w, ref[r, b], atol=1e-6, rtol=0) and float(ref[~keep].detach().abs().max()) == 0.0
    g = torch.randn(rays, bins, generator=gen)
    (ref * g).sum().backward()
    (w * g[r, b]).sum().backward()
    assert torch.allclose(packed.grad, dense.grad[r, b], atol=1e-6, rtol=0)


def test_packed_render_keeps_little_per_occupied_sample_for_backward():
    from engine.bench.saved_tensors import saved_bytes
    field, grid, cams = _blob_scene(32)
    per_sample = {}
    for method, chunk in (("packed", 2048), ("batched", 1 << 18)):
        counting = Counting(field)

        def render(counting=counting, method=method, chunk=chunk):
            return render_volume(counting, cams, white(cams), 48, 1.0, occupancy=grid, method=method, chunk=chunk)

        _, nbytes = saved_bytes(render, exclude=list(field.parameters()))
        per_sample[method] = nbytes / counting.points
    assert per_sample["packed"] <= 100, per_sample  # points, σ, albedo and compositing only
    assert per_sample["batched"] > 5 * per_sample["packed"], per_sample


def test_bad_render_method_and_chunk_are_explained():
    cams = looking_down([(0.0, 0.0)], size=4)
    with pytest.raises(ValueError, match="method.*'packed'"):
        render_volume(Slab(1.0, 1.0), cams, white(cams), 8, 1.0, method="fast")
    with pytest.raises(ValueError, match="chunk"):
        render_volume(Slab(1.0, 1.0), cams, white(cams), 8, 1.0, chunk=0)
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="method='nerfacc' needs CUDA"):
            render_volume(Slab(1.0, 1.0), cams, white(cams), 8, 1.0, method="nerfacc")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA; CPU twin: the batched comparison above")
def test_cuda_packed_weights_match_nerfacc_packed_functions():
    import nerfacc

    from engine.render import volume
    from engine.render.packed import sample_packed, transmittance_weights
    if not volume._nerfacc_kernels():
        pytest.skip("nerfacc's CUDA kernels do not load here")
    field, grid, cams = _blob_scene()
    o, d = (a.reshape(-1, 3).cuda() for a in cams.rays())
    t0, t1, hit = sphere_intersect(o, d, 1.0)
    o, d, t0, t1 = o[hit], d[hit], t0[hit], t1[hit]
    s = sample_packed(o, d, t0, t1, 40, None, grid.cuda())
    sigma = field.cuda().density(s.points).detach()
    ours, _ = transmittance_weights(sigma, s)
    theirs, _, _ = nerfacc.render_weight_from_density(s.t_start, s.t_end, sigma, ray_indices=s.ray, n_rays=s.n_rays)
    assert torch.allclose(ours, theirs, atol=1e-5)
