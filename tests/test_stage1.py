"""Stage 1 on the analytic prior: it learns the reference scene, and resume continues exactly."""
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from engine.context import JobContext
from engine.errors import JobCancelled
from engine.events import Done, Preview, Progress, StageStarted
from engine.pipeline import run_job
from engine.presets import make_spec
from engine.run_dir import RunDir
from engine.stage_loop import run_stage
from engine.stages.nerf import NerfStage

NO_MESH = {"geometry": {"enabled": False}, "texture": {"enabled": False}, "export": {"enabled": False}}

# A short VSD run (150 of the preset's 400 steps) must beat every trivial answer, not only the
# untrained grey blob (14.8 dB): the perfect mirror image of the reference world and the perfect
# wrong-colour variant score 22.4 and 23.1 dB at cpu-smoke (the test recomputes both). Measured
# 25.0 dB for the short run on this 2-core machine.
SHORT_RUN_PSNR_DB = 24.0


def tiny_spec(steps: int, **extra):
    over = {"nerf": {"steps": steps, "resolution_schedule": [[0, 32]], "samples_per_ray": 32,
                     "preview_every": 4, "checkpoint_every": 1000}, **NO_MESH}
    over.update(extra)
    return make_spec("cpu-smoke", over)


def _trivial_scores(stage: NerfStage, res: int) -> dict[str, float]:
    """Held-out PSNR of answers a wrong run could give: the reference world mirrored in x (its render
    from azimuth a is the reference's render from −a, flipped left-right) and a wrong body colour."""
    from engine.cameras import make_cameras
    from engine.preview import psnr
    from engine.priors.analytic import AnalyticPrior
    cams = stage.sampler.held_out_orbit(res)
    white = torch.ones(cams.batch, res, res, 3)
    ref = stage.prior.reference_render(cams, white)
    mirror_cams = make_cameras(cams.elevation, -cams.azimuth, cams.distance, cams.fov_y, res, res)
    mirrored = stage.prior.reference_render(mirror_cams, white).flip(2)
    scores = {"mirror": psnr(mirrored, ref)}
    for variant in ("marker-red", "marker-green", "marker-blue"):
        scores[variant] = psnr(AnalyticPrior.from_name(variant).reference_render(cams, white), ref)
    return scores


def _colour_mask(rgb: torch.Tensor, colour, tol: float = 0.2) -> torch.Tensor:
    return (rgb - torch.tensor(colour)).abs().amax(-1) < tol


def _assert_marker_front_and_arm_plus_x(stage: NerfStage) -> None:
    """The field's own renders from cameras placed by hand (not by the azimuth convention under
    test): the magenta disc faces −Y, the cyan arm sits on +X."""
    from engine.cameras import Cameras, look_at
    from engine.priors.scenes import ARM_COLOR, MARKER_COLOR
    eyes = torch.tensor([[0.0, -2.4, 0.6], [0.0, 2.4, 0.6]])  # in front (−Y), behind (+Y)
    n, res = eyes.shape[0], 48
    cams = Cameras(look_at(eyes), torch.full((n,), math.radians(45.0)), torch.zeros(n), torch.zeros(n),
                   eyes.norm(dim=-1), res, res)
    with torch.no_grad():
        rgb = stage.render_views(cams).rgb
    marker, arm = _colour_mask(rgb, MARKER_COLOR), _colour_mask(rgb, ARM_COLOR)
    front, back = int(marker[0].sum()), int(marker[1].sum())
    # one jitter offset per ray (threestudio's and nerfacc's stratified sampling) shifted the random
    # stream: the 150-step run shows 23 marker pixels from the front and 0 from behind (was > 25); a
    # mirrored field shows them from behind and fails the ratio, a field without the marker the count
    assert front > 20 and front > 4 * back, f"front marker pixels: {front} seen from −Y, {back} from +Y"
    cols = torch.arange(res, dtype=torch.float32)
    arm_x = [float((arm[i] * cols).sum() / arm[i].sum().clamp_min(1)) for i in range(n)]
    assert arm[0].sum() > 10 and arm_x[0] > res * 0.6, f"arm at column {arm_x[0]:.1f} of {res} from the front"
    assert arm[1].sum() > 10 and arm_x[1] < res * 0.4, f"arm at column {arm_x[1]:.1f} of {res} from behind"


def test_short_vsd_run_learns_the_reference_scene(tmp_path):
    spec = make_spec("cpu-smoke", {"nerf": {"steps": 150}, **NO_MESH})
    events = []
    result = run_job(spec, tmp_path / "run", events.append)
    psnr = result["nerf"]["psnr"]
    ctx = JobContext(spec, RunDir(tmp_path / "run"), lambda e: None)
    stage = NerfStage(ctx)
    run_stage(ctx, stage)  # loads the final checkpoint: the field the job ended with
    trivial = _trivial_scores(stage, result["nerf"]["resolution"])
    assert SHORT_RUN_PSNR_DB > max(trivial.values()) + 0.5, f"threshold too close to trivial answers: {trivial}"
    assert psnr >= SHORT_RUN_PSNR_DB, f"held-out PSNR {psnr:.2f} dB; trivial answers score {trivial}"
    _assert_marker_front_and_arm_plus_x(stage)
    kinds = [type(e) for e in events]
    assert kinds[0] is StageStarted and kinds[-1] is Done
    assert any(k is Progress for k in kinds)
    previews = [e for e in events if isinstance(e, Preview)]
    assert previews and len(previews[0].rgb) == previews[0].width * previews[0].height * 3
    assert previews[0].normal is not None and Path(previews[0].path).is_file()
    metrics = json.loads((tmp_path / "run/result/metrics.json").read_text())
    assert metrics["nerf"]["psnr"] == pytest.approx(psnr)
    assert (tmp_path / "run/result/contact_sheet.png").is_file()


def _losses(spec, run_dir, stop_after=None):
    seen = {}
    ctx = JobContext(spec, RunDir(run_dir).create(), lambda e: None,
                     should_stop=(lambda: stop_after is not None and len(seen) >= stop_after))
    stage = NerfStage(ctx)
    try:
        run_stage(ctx, stage, on_step=lambda step, losses: seen.__setitem__(step, losses))
    except JobCancelled as exc:
        assert exc.step == stop_after and Path(exc.checkpoint).is_file()
    return seen


@pytest.mark.parametrize("method", ["vsd", "sds"])
def test_resume_continues_exactly(tmp_path, method):
    spec = tiny_spec(10, nerf={"steps": 10, "method": method, "resolution_schedule": [[0, 32]],
                               "samples_per_ray": 32, "checkpoint_every": 1000})
    straight = _losses(spec, tmp_path / "a")
    first = _losses(spec, tmp_path / "b", stop_after=4)
    assert sorted(first) == [0, 1, 2, 3]
    rest = _losses(spec, tmp_path / "b")
    assert sorted(rest) == list(range(4, 10))
    for step in range(10):
        got = (first | rest)[step]
        assert got == straight[step], f"step {step}: {got} != {straight[step]}"


def test_corrupt_newest_checkpoint_resumes_from_previous(tmp_path):
    spec = tiny_spec(6, nerf={"steps": 6, "checkpoint_every": 2, "resolution_schedule": [[0, 32]],
                              "samples_per_ray": 32})
    straight = _losses(spec, tmp_path / "a")
    run = tmp_path / "b"
    _losses(spec, run, stop_after=5)  # checkpoints at 2, 4 and the cancel at 5
    newest = sorted((run / "ckpt").glob("nerf-*.pt"))[-1]
    newest.write_bytes(b"garbage")
    logs = []
    ctx = JobContext(spec, RunDir(run), lambda e: logs.append(e), should_stop=lambda: False)
    seen = {}
    run_stage(ctx, NerfStage(ctx), on_step=lambda s, l: seen.__setitem__(s, l))
    assert sorted(seen) == [4, 5], "resumed from step 4, the previous checkpoint"
    assert seen[5] == straight[5]
    assert any("unreadable" in getattr(e, "message", "") for e in logs)


def test_cli_run_and_bad_spec(tmp_path):
    out = tmp_path / "cli"
    cmd = [sys.executable, "-m", "engine.cli", "run", "--prior", "analytic:marker", "--preset", "cpu-smoke",
           "--out", str(out), "--set", "nerf.steps=4", "--set", "nerf.resolution_schedule=[[0,32]]",
           "--set", "geometry.enabled=false", "--set", "texture.enabled=false", "--set", "export.enabled=false"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "held-out PSNR" in proc.stdout
    assert (out / "result/contact_sheet.png").is_file() and (out / "result/metrics.json").is_file()
    bad = subprocess.run([sys.executable, "-m", "engine.cli", "run", "--out", str(tmp_path / "bad"),
                          "--set", "nerf.steps=-3", "--set", "camera.fov_deg=[90,20]"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    assert "nerf.steps = -3" in bad.stderr and "camera.fov_deg" in bad.stderr
    assert "Traceback" not in bad.stderr
