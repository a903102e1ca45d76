"""Radiance field parts: hash grid against a slow reference, blob init, normals, background."""
from __future__ import annotations

import math

import pytest
import torch

from engine.field import Background, HashGridEncoding, RadianceField, choose_background, reference_hash_encode
from engine.presets import cpu_smoke
from engine.spec import FieldSpec


def _grid() -> HashGridEncoding:
    # levels 0-2 dense ((r+1)^3 ≤ 4096), 3-5 hashed: both indexings are exercised
    enc = HashGridEncoding(6, 2, 12, 4, 1.9, bound=1.5, gen=torch.Generator().manual_seed(0), backend="torch")
    enc = enc.double()
    with torch.no_grad():
        enc.table.copy_(torch.randn(enc.table.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64))
    return enc


def _points(n: int, bound: float, dtype=torch.float64) -> torch.Tensor:
    x = (torch.rand(n, 3, generator=torch.Generator().manual_seed(2), dtype=dtype) * 2 - 1) * bound
    x[0], x[1], x[2] = bound, -bound, torch.tensor([bound, -bound, 0.0], dtype=dtype)  # cube faces and corners
    return x


def test_hash_grid_uses_dense_and_hashed_levels():
    enc = _grid()
    assert enc._dense.tolist() == [True, True, True, False, False, False]


def test_fast_hash_grid_matches_slow_reference():
    enc = _grid()
    x = _points(64, 1.5)
    fast = enc(x)
    slow = reference_hash_encode(x, enc.table.detach(), enc.resolutions, enc.table_size, bound=1.5)
    assert fast.shape == (64, 12)
    assert torch.allclose(fast, slow, atol=1e-9, rtol=0)
    enc32 = _grid().float()  # float32 positions put frac off by ~res·1e-7
    assert torch.allclose(enc32(x.float()), slow.float(), atol=1e-4, rtol=0)


def test_hash_grid_custom_backward_matches_autograd():
    enc = _grid()
    x = _points(200, 1.5)
    weights = torch.randn(200, 12, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    (enc(x) * weights).sum().backward()  # custom index_add backward
    fast_grad = enc.table.grad.clone()
    enc.table.grad = None
    xg = x.clone().requires_grad_(True)  # plain-autograd path, which also gives d/dx
    (enc(xg) * weights).sum().backward()
    assert torch.allclose(fast_grad, enc.table.grad, atol=1e-10)
    assert fast_grad.abs().sum() > 0 and xg.grad.abs().sum() > 0


def test_hash_grid_init_is_small_and_seeded():
    a = HashGridEncoding(4, 2, 10, 4, 1.5, gen=torch.Generator().manual_seed(7), backend="torch")
    b = HashGridEncoding(4, 2, 10, 4, 1.5, gen=torch.Generator().manual_seed(7), backend="torch")
    assert a.table.abs().max() <= 1e-4 and a.table.abs().max() > 0
    assert torch.equal(a.table, b.table)
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        a(torch.zeros(5, 2))


def _field(blob: str = "object", radius: float = 1.0, seed: int = 0) -> RadianceField:
    spec = cpu_smoke().field
    spec.blob, spec.radius = blob, radius
    return RadianceField(spec, gen=torch.Generator().manual_seed(seed), backend="torch")


def test_field_init_is_deterministic_and_leaves_global_rng_alone():
    state = torch.random.get_rng_state()
    a, b, c = _field(seed=0), _field(seed=0), _field(seed=1)
    assert torch.equal(state, torch.random.get_rng_state())
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name
    assert any(not torch.equal(pa, pc) for pa, pc in zip(a.state_dict().values(), c.state_dict().values(), strict=True))


def test_object_blob_is_a_ball_and_zero_outside_radius():
    field = _field()
    r = torch.tensor([0.0, 0.25, 0.5, 0.75, 0.99, 1.01])
    x = torch.stack([r, torch.zeros_like(r), torch.zeros_like(r)], dim=-1)
    with torch.no_grad():
        sigma, albedo = field(x)
    assert sigma[0] > 9.0  # softplus(≈10)
    assert torch.all(sigma[:-2].diff() < 0)
    assert sigma[-2] < 1e-3 and sigma[-1] == 0.0
    assert albedo.shape == (6, 3) and albedo.min() >= 0 and albedo.max() <= 1
    assert torch.allclose(field.density(x), sigma) and torch.allclose(field.albedo(x), albedo)


def test_scene_blob_is_empty_in_the_middle():
    field = _field("scene", radius=3.0)
    x = torch.tensor([[0.0, 0.0, 0.0], [0.0, 2.4, 0.0]])
    with torch.no_grad():
        sigma = field.density(x)
    assert sigma[0] < 1e-3 and sigma[1] > 0.2


def test_blob_normals_point_outward():
    field = _field()
    dirs = torch.nn.functional.normalize(torch.randn(50, 3, generator=torch.Generator().manual_seed(4)), dim=-1)
    sigma, normal = field.density_and_normal(0.4 * dirs)
    assert not normal.requires_grad and sigma.shape == (50,)
    assert torch.allclose(normal.norm(dim=-1), torch.ones(50), atol=1e-5)
    assert (normal * dirs).sum(-1).min() > 0.95


def test_gradients_reach_table_and_mlps():
    field = _field()
    x = torch.rand(500, 3, generator=torch.Generator().manual_seed(5)) - 0.5
    sigma, albedo = field(x)
    (sigma.sum() + albedo.sum()).backward()
    for name, p in field.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_param_groups_cover_every_parameter_once():
    field = _field()
    stage = cpu_smoke().nerf
    groups = {g["name"]: g for g in field.param_groups(stage)}
    assert groups["grid"]["lr"] == stage.lr_grid and groups["mlp"]["lr"] == stage.lr_mlp
    ids = [id(p) for g in groups.values() for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in field.parameters())
    assert [id(p) for p in groups["grid"]["params"]] == [id(field.encoding.table)]


def test_bad_blob_names_the_field():
    with pytest.raises(ValueError, match="field.blob"):
        RadianceField(FieldSpec(blob="cube"))


def _dirs(b: int = 6) -> torch.Tensor:
    d = torch.randn(b, 4, 5, 3, generator=torch.Generator().manual_seed(6))
    return d / d.norm(dim=-1, keepdim=True)


def test_background_modes():
    net = Background(gen=torch.Generator().manual_seed(0))
    d = _dirs()
    out = net(d)
    assert out.shape == d.shape and out.min() > 0 and out.max() < 1
    assert torch.equal(choose_background("white", d, None, None), torch.ones_like(d))
    assert torch.equal(choose_background("black", d, None, None), torch.zeros_like(d))
    assert torch.allclose(choose_background("network", d, net, torch.Generator()), out)
    assert torch.allclose(choose_background("random_half", d, net, None), out)  # evaluation: the network
    with pytest.raises(ValueError, match="field.background"):
        choose_background("grey", d, net, None)


def test_random_half_mixes_solid_colours_and_network_deterministically():
    net = Background(gen=torch.Generator().manual_seed(0))
    d = _dirs(16)
    a = choose_background("random_half", d, net, torch.Generator().manual_seed(3))
    b = choose_background("random_half", d, net, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    solid = (a - a[:, :1, :1]).abs().amax(dim=(1, 2, 3)) == 0  # one colour over the whole image
    assert 0 < int(solid.sum()) < 16
    assert torch.allclose(a[~solid], net(d)[~solid])


def test_background_gradients_flow():
    net = Background(gen=torch.Generator().manual_seed(0))
    choose_background("network", _dirs(), net, None).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())
    assert math.isclose(net.param_groups(cpu_smoke().nerf)[0]["lr"], cpu_smoke().nerf.lr_background)


def test_particles_from_one_job_generator_start_from_different_hash_tables():
    gen = torch.Generator().manual_seed(0)  # one job generator, particles built in turn (stages/nerf.py)
    a, b = (RadianceField(cpu_smoke().field, gen=gen, backend="torch") for _ in range(2))
    assert not torch.equal(a.encoding.table, b.encoding.table), "particles share their initial hash table"
    again = RadianceField(cpu_smoke().field, gen=torch.Generator().manual_seed(0), backend="torch")
    assert torch.equal(a.encoding.table, again.encoding.table)


def test_tcnn_seed_differs_per_particle_repeats_per_job_and_spares_the_global_rng():
    from engine.field.hashgrid import TCNN_SEED_END, tcnn_seed
    state = torch.random.get_rng_state()
    gen = torch.Generator().manual_seed(5)
    seeds = [tcnn_seed(gen) for _ in range(4)]  # what four particles of one job get
    again = [tcnn_seed(g) for g in [torch.Generator().manual_seed(5)] for _ in range(4)]
    other = [tcnn_seed(g) for g in [torch.Generator().manual_seed(6)] for _ in range(4)]
    assert len(set(seeds)) == 4, f"particles of one job got the same tcnn seed: {seeds}"
    assert seeds == again, "the same job seed must give the same tcnn seeds"
    assert seeds != other
    assert all(isinstance(s, int) and 0 <= s < TCNN_SEED_END and s != 1337 for s in seeds)
    assert torch.equal(state, torch.random.get_rng_state()), "tcnn_seed drew from the global RNG"


def test_tcnn_backend_without_tcnn_or_cuda_says_what_to_do(monkeypatch):
    from engine.field import hashgrid
    from engine.field.hashgrid import tcnn_encoding_config
    assert tcnn_encoding_config(8, 2, 14, 8, 1.5) == {
        "otype": "HashGrid", "n_levels": 8, "n_features_per_level": 2, "log2_hashmap_size": 14,
        "base_resolution": 8, "per_level_scale": 1.5}
    if hashgrid._tcnn_available():
        pytest.skip("tiny-cuda-nn works here: the GPU twin below runs instead")
    with pytest.raises(RuntimeError, match="tiny-cuda-nn importable and a CUDA device.*'torch'"):
        HashGridEncoding(4, 2, 10, 4, 1.5, backend="tcnn")
    monkeypatch.setenv("VSDREAM_ACCEL", "none")
    assert HashGridEncoding(4, 2, 10, 4, 1.5, backend="auto").backend == "torch"


def test_accel_switch_parses_and_names_mistakes():
    from engine.accel import allowed
    assert allowed("tcnn", {}) and allowed("nerfacc", {"VSDREAM_ACCEL": "auto"})
    assert not allowed("tcnn", {"VSDREAM_ACCEL": "none"})
    assert allowed("tcnn", {"VSDREAM_ACCEL": "tcnn"}) and not allowed("nerfacc", {"VSDREAM_ACCEL": "tcnn"})
    with pytest.raises(ValueError, match="VSDREAM_ACCEL.*unknown cuda"):
        allowed("tcnn", {"VSDREAM_ACCEL": "tcnn,cuda"})


def test_tcnn_grid_is_asked_for_fp32():
    """CPU twin of test_cuda_tcnn_grid_computes_in_fp32: the arguments HashGridEncoding gives tiny-cuda-nn."""
    from engine.field.hashgrid import tcnn_encoding_config, tcnn_encoding_kwargs
    kw = tcnn_encoding_kwargs(8, 2, 14, 8, 1.5, seed=7)
    assert kw == {"n_input_dims": 3, "encoding_config": tcnn_encoding_config(8, 2, 14, 8, 1.5), "seed": 7,
                  "dtype": torch.float32}


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA; CPU twin: test_tcnn_grid_is_asked_for_fp32")
def test_cuda_tcnn_grid_computes_in_fp32():
    from engine.field import hashgrid
    if not hashgrid._tcnn_available():
        pytest.skip("tiny-cuda-nn not importable")
    enc = HashGridEncoding(4, 2, 12, 4, 1.5, gen=torch.Generator().manual_seed(0), backend="tcnn")
    assert all(p.dtype == torch.float32 for p in enc.tcnn.parameters())
    x = torch.rand(64, 3, device="cuda")
    assert enc.tcnn(x).dtype == torch.float32  # the raw output, before forward's .float()


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA; CPU twin: test_tcnn_seed_differs_per_particle...")
def test_tcnn_particles_start_from_different_seeded_tables():
    from engine.field import hashgrid
    if not hashgrid._tcnn_available():
        pytest.skip("tiny-cuda-nn not importable")
    gen = torch.Generator().manual_seed(0)
    a, b = (HashGridEncoding(4, 2, 12, 4, 1.5, gen=gen, backend="tcnn") for _ in range(2))
    c = HashGridEncoding(4, 2, 12, 4, 1.5, gen=torch.Generator().manual_seed(0), backend="tcnn")
    assert a.seed != b.seed and a.seed == c.seed
    pa, pb, pc = (next(e.tcnn.parameters()).detach() for e in (a, b, c))
    assert not torch.equal(pa, pb), "tcnn particles start identical"
    assert torch.equal(pa, pc)
    assert float(pa.abs().max()) <= 1e-4 + 1e-7


def test_a_field_for_the_cpu_always_builds_the_torch_grid():
    """A CPU job on a machine with tiny-cuda-nn must not get a grid that only runs on CUDA."""
    from engine.field.radiance import backend_for
    assert backend_for("cpu") == backend_for(torch.device("cpu")) == "torch"
    assert backend_for("cuda:0") == "auto"
    from engine.presets import make_spec
    from engine.representation import make_representation
    particle = make_representation(make_spec("cpu-smoke"), torch.Generator().manual_seed(0), "cpu")
    assert particle.field.encoding.backend == "torch"
