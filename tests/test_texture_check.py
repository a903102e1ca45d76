"""A texture that learned nothing comes back with a warning naming the likely cause."""
import torch

from engine.context import JobContext
from engine.events import Log
from engine.presets import make_spec
from engine.run_dir import RunDir
from engine.texture_check import FLAT_STD, albedo_spread, check_texture, flat_texture_warning


def test_warning_names_the_spread_and_the_steps():
    assert flat_texture_warning(FLAT_STD, 15) is None
    msg = flat_texture_warning(0.01, 15)
    assert "nearly flat" in msg and "0.010" in msg and "too few texture steps (15)" in msg
    assert flat_texture_warning(0.0, 3, particle=1).startswith("particle 1: ")


def test_spread_of_a_flat_and_a_varied_colour_field():
    v = torch.rand(500, 3)
    assert albedo_spread(lambda x: torch.full_like(x, 0.5), v) < 1e-6
    assert albedo_spread(lambda x: x, v) > 0.2


def test_untrained_retexture_stage_is_flagged(tmp_path):
    """The real texture stage on a real mesh file, with no steps: its fresh colour field is flat."""
    import trimesh

    from engine.stages.texture import TextureStage
    path = tmp_path / "box.glb"
    trimesh.creation.box().export(path)
    spec = make_spec("cpu-smoke", {"mode": "retexture", "input_mesh": str(path), "texture": {"steps": 0, "enabled": False}})
    events = []
    ctx = JobContext(spec, RunDir(tmp_path / "run").create(), events.append)
    stage = TextureStage.for_job(ctx, {})
    report = check_texture(stage)
    assert report["albedo_std"][0] < FLAT_STD and "too few texture steps (0)" in report["warnings"][0]
    assert any(isinstance(e, Log) and e.level == "warning" and "nearly flat" in e.message for e in events)
