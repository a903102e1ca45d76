"""Previews after the 512² switch: no RGB graph kept, normals in bounded chunks, and `bench memory`
reporting the preview's peak beside the step's."""
from __future__ import annotations

import torch

from engine.bench.live_memory import LiveMemory
from engine.bench.memory import estimate_preview
from engine.context import JobContext
from engine.field import RadianceField
from engine.presets import cpu_smoke, make_spec
from engine.render.packed import sample_normals
from engine.run_dir import RunDir
from engine.stages.nerf import NerfStage


def test_stage_preview_renders_its_rgb_without_autograd_and_still_gets_normals(tmp_path):
    spec = make_spec("cpu-smoke", {"nerf": {"steps": 2, "resolution_schedule": [[0, 24]], "samples_per_ray": 24},
                                   "geometry": {"enabled": False}, "texture": {"enabled": False},
                                   "export": {"enabled": False}})
    stage = NerfStage(JobContext(spec, RunDir(tmp_path / "run").create(), lambda e: None))
    field = stage.particles[0].field
    grad_on_in_rgb_pass: list[bool] = []
    hook = field.register_forward_pre_hook(lambda m, a: grad_on_in_rgb_pass.append(torch.is_grad_enabled()))
    try:
        images = stage.preview(1)
    finally:
        hook.remove()
    assert grad_on_in_rgb_pass and not any(grad_on_in_rgb_pass), "the preview's RGB pass recorded a graph"
    normal = images.normal.astype(float) / 255 * 2 - 1
    assert images.rgb.shape == images.normal.shape == (24, 24, 3)
    assert (abs(normal).sum(-1) > 0.3).mean() > 0.1  # the blob's normals are there (not all neutral grey)


def _peak(fn) -> int:
    with LiveMemory() as lm:
        out = fn()
        del out
    return lm.peak


def test_normal_pass_peak_is_bounded_by_its_chunk_not_the_sample_count():
    field = RadianceField(cpu_smoke().field, gen=torch.Generator().manual_seed(0), backend="torch")
    pts = torch.rand(16384, 3, generator=torch.Generator().manual_seed(1)) - 0.5
    whole = _peak(lambda: sample_normals(field, pts, chunk=1 << 20))
    chunked = _peak(lambda: sample_normals(field, pts, chunk=1024))
    half = _peak(lambda: sample_normals(field, pts[:8192], chunk=1024))
    assert chunked < 0.25 * whole, (chunked, whole)
    assert abs(chunked - half) < 0.1 * chunked  # twice the samples, the same peak
    assert torch.allclose(sample_normals(field, pts, chunk=1024), sample_normals(field, pts, chunk=1 << 20), atol=1e-5)


def test_bench_memory_preview_estimate_drops_the_rgb_graph_and_bounds_the_normal_pass():
    spec = make_spec("cpu-smoke")  # 64²: 40 samples per pixel = 164k samples, several normal chunks
    now = estimate_preview(spec, 40.0, resident_gb=1.0)
    before = estimate_preview(spec, 40.0, resident_gb=1.0, reference=True)
    assert now["samples"] == before["samples"] == 40 * 64 * 64
    assert before["rgb_kept_gb"] > 10 * max(now["rgb_kept_gb"], 1e-4)
    assert now["normals_peak_gb"] < 0.6 * before["normals_peak_gb"]
    assert 1.0 < now["peak_gb"] < before["peak_gb"]
    double = estimate_preview(spec, 80.0, resident_gb=1.0)
    assert abs(double["normals_peak_gb"] - now["normals_peak_gb"]) < 0.2 * now["normals_peak_gb"]
