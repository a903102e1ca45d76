"""A user's UVs that overlap or leave the tile are reported before the bake, with the fix."""
import numpy as np
import pytest
import torch
import trimesh

from engine.mesh.uv_check import check_uvs

QUAD = np.array([[0, 1, 2], [0, 2, 3]])


def _two_quads(uv_right_offset: float):
    """Two unit quads; the left one's UVs fill [0, 0.5] × [0, 1], the right one's the same width
    shifted by `uv_right_offset` (0: stacked on the left, 0.5: beside it, 1.0: off the tile)."""
    left = np.array([[0, 0], [0.5, 0], [0.5, 1], [0, 1]], float)
    right = left + [uv_right_offset, 0]
    return np.concatenate([left, right]), np.concatenate([QUAD, QUAD + 4])


def test_a_clean_layout_says_nothing():
    uvs, faces = _two_quads(0.5)
    report = check_uvs(uvs, faces)
    assert report.overlap < 0.02 and report.outside == 0.0 and report.warnings() == []


def test_stacked_islands_are_measured_and_named_with_the_fix():
    uvs, faces = _two_quads(0.0)
    report = check_uvs(uvs, faces)
    assert report.overlap == pytest.approx(0.5, abs=0.03)
    (warning,) = report.warnings()
    assert "overlaps" in warning and "Smart UV Project" in warning


def test_islands_off_the_tile_are_measured():
    uvs, faces = _two_quads(1.0)
    report = check_uvs(uvs, faces)
    assert report.outside == pytest.approx(0.5) and report.overlap < 0.02
    assert any("outside the 0–1 tile" in w for w in report.warnings())


def test_the_texture_stage_reports_the_users_overlapping_uvs(tmp_path):
    from engine.context import JobContext
    from engine.events import Log
    from engine.presets import make_spec
    from engine.run_dir import RunDir
    from engine.stages.texture import TextureStage
    box = trimesh.creation.box((1, 1, 1))
    uv = np.zeros((len(box.vertices), 2))
    uv[:, 0], uv[:, 1] = (box.vertices[:, 0] + 0.5) * 0.9, (box.vertices[:, 2] + 0.5) * 0.9  # front and back stack
    box.visual = trimesh.visual.TextureVisuals(uv=uv)
    path = tmp_path / "box.glb"
    box.export(path)
    spec = make_spec("cpu-smoke", {"mode": "retexture", "input_mesh": str(path), "prompt": "a crate"})
    events = []
    ctx = JobContext(spec, RunDir(tmp_path / "run").create(), events.append, device=torch.device("cpu"))
    stage = TextureStage.for_job(ctx, {})
    assert stage.uv_report is not None and stage.uv_report.overlap > 0.3
    assert any(isinstance(e, Log) and e.level == "warning" and "overlaps" in e.message for e in events)
