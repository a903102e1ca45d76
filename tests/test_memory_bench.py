"""`vsdream bench memory` in a reduced form (cpu-smoke sizes, tiny-sd), and its live-memory counter."""
from __future__ import annotations

import contextlib
import json

import pytest
import torch

from engine.bench.live_memory import LiveMemory
from engine.bench.memory import estimate_stage, samples_per_pixel
from engine.field import RadianceField
from engine.presets import cpu_smoke, make_spec
from engine.render.packed import PackedSamples, accumulate, run_field, transmittance_weights


def test_live_memory_counts_creation_and_frees_and_keeps_the_peak():
    with LiveMemory() as lm:
        a = torch.zeros(1000)  # 4000 bytes
        b = torch.zeros(500, dtype=torch.float64)  # 4000 bytes
        view = a[10:]  # same storage: not counted again
        assert lm.current == 8000
        del a, view
        assert lm.current == 4000 and lm.peak == 8000
        with lm.phase("grow"):
            c = torch.ones(2000)
            del c
    assert lm.phases["grow"]["peak_gb"] * 2**30 == pytest.approx(12000)
    assert lm.phases["grow"]["end_gb"] * 2**30 == pytest.approx(4000)
    del b


def _field_render_rise(fake: bool, n: int, chunk: int) -> float:
    """Bytes alive after the packed render forward (what backward keeps), real or fake tensors."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    spec = cpu_smoke().field
    with FakeTensorMode() if fake else contextlib.nullcontext():
        field = RadianceField(spec, gen=None if fake else torch.Generator().manual_seed(0), backend="torch")
        lm = LiveMemory()
        lm.track(field)
        with lm:
            pts = torch.rand(n, 3) - 0.5
            ray = torch.arange(n) // 8
            s = PackedSamples(ray, torch.arange(n) % 8, torch.zeros(n), torch.full((n,), 0.01), torch.zeros(n),
                              pts, n // 8, 8)
            with lm.phase("render"):
                sigma, rgb = run_field(field, s.points, chunk)
                w, _ = transmittance_weights(sigma, s)
                out = accumulate(w, rgb, s)
            del out
            return (lm.phases["render"]["end_gb"] - lm.phases["render"]["start_gb"]) * 2**30


def test_fake_estimate_of_the_field_and_renderer_equals_a_real_cpu_run():
    n = 8192
    for chunk in (n, 1024):  # one call, and checkpointed chunks
        real, fake = _field_render_rise(False, n, chunk), _field_render_rise(True, n, chunk)
        assert real > 0 and abs(fake - real) <= 0.05 * real, (chunk, real, fake)
    assert _field_render_rise(True, n, 1024) < 0.5 * _field_render_rise(True, n, n)  # checkpointing keeps less


def test_reduced_stage1_estimate_splits_and_scales_with_samples_and_particles():
    spec = make_spec("cpu-smoke")
    probe = samples_per_pixel(spec, probe_resolution=24, views=2)
    assert 0 < probe["samples_per_pixel"] < spec.nerf.samples_per_ray
    one = estimate_stage(spec, "nerf", 1, model="tiny-sd", spp=probe["samples_per_pixel"])
    split = one["split"]
    assert one["resolution"] == 64 and one["field_samples"] == round(probe["samples_per_pixel"] * 64 * 64)
    assert all(split[k] > 0 for k in ("sd_weights_gb", "vae_encode_activations_gb", "field_renderer_gb",
                                      "phi_backward_gb", "optimiser_states_gb")), split
    assert one["peak_gb"] >= max(one["phase_peak_gb"].values()) - 1e-3
    assert one["peak_gb"] >= split["sd_weights_gb"] + split["trainable_weights_gb"]
    double = estimate_stage(spec, "nerf", 1, model="tiny-sd", spp=2 * probe["samples_per_pixel"])
    ratio = double["split"]["field_renderer_gb"] / split["field_renderer_gb"]
    assert 1.8 < ratio < 2.2, ratio  # memory grows with the occupied samples
    two = estimate_stage(spec, "nerf", 2, model="tiny-sd", spp=probe["samples_per_pixel"])
    assert two["split"]["optimiser_states_gb"] == pytest.approx(2 * split["optimiser_states_gb"], rel=0.05)
    assert two["peak_gb"] > one["peak_gb"]


def test_reference_field_path_needs_far_more_memory():
    spec = make_spec("cpu-smoke")
    light = estimate_stage(spec, "nerf", 1, model="tiny-sd", spp=10.0, chunk=4096)  # 41k samples: checkpointed
    ref = estimate_stage(spec, "nerf", 1, model="tiny-sd", spp=10.0, field_backend="torch-reference", chunk=1 << 40)
    assert ref["split"]["field_renderer_gb"] > 5 * light["split"]["field_renderer_gb"]


def test_bench_memory_cli_prints_json(capsys):
    from engine.cli import main
    assert main(["bench", "memory", "--preset", "cpu-smoke", "--model", "tiny-sd", "--stages", "nerf", "texture",
                 "--particles", "1", "--probe-resolution", "16", "--real", "no", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [(s["stage"], s["particles"]) for s in result["stages"]] == [("nerf", 1), ("texture", 1)]
    assert all(s["peak_gb"] > 0 for s in result["stages"]) and result["occupancy_probe"]["samples_per_pixel"] > 0
    assert main(["bench", "memory", "--particles", "0"]) == 2


def test_low_vram_preset_keeps_one_unet_and_a_smaller_stage1_than_paper():
    low, paper = (make_spec(p, {"prompt": "a ceramic owl"}) for p in ("low-vram", "paper"))
    assert low.phi_model == "shared" and max(r for _, r in low.nerf.resolution_schedule) == 256
    a = estimate_stage(low, "nerf", 1, model="tiny-sd", spp=8.0)
    b = estimate_stage(paper, "nerf", 1, model="tiny-sd", spp=8.0)
    assert a["split"]["sd_weights_gb"] < b["split"]["sd_weights_gb"]  # no second UNet for ε_φ
    assert a["split"]["field_renderer_gb"] < 0.5 * b["split"]["field_renderer_gb"]  # 256² vs 512²
    assert a["peak_gb"] < b["peak_gb"]
