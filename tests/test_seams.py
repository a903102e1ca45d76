"""The seams a new idea plugs into: the stage table and the Representation protocol.

A second representation, written here against the protocol only (dense voxel grids), runs through
stage 1, geometry, texture and export without any change to the stages, the pipeline or export.
"""
import copy
import sys
from dataclasses import fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import engine.stages.nerf as nerf_module
from engine.context import JobContext
from engine.events import StageStarted
from engine.field import Background
from engine.pipeline import run_stages
from engine.presets import make_spec
from engine.render import render_volume
from engine.representation import ColorField, Representation, make_representation
from engine.run_dir import RunDir
from engine.spec import JobSpec, StageSpec
from engine.stage_table import STAGE_NAMES, STAGES, describe_stages, stages_for

ROOT = Path(__file__).resolve().parent.parent


def _sample(grid: torch.Tensor, x: torch.Tensor, radius: float) -> torch.Tensor:
    """Trilinear lookup of a (1, C, R, R, R) grid at (N, 3) points in the radius-sized cube → (N, C)."""
    g = (x / radius).clamp(-1, 1).view(1, -1, 1, 1, 3).to(grid.dtype)
    return F.grid_sample(grid, g, align_corners=True).view(grid.shape[1], -1).t()


class VoxelColors(nn.Module):
    def __init__(self, res: int, radius: float):
        super().__init__()
        self.radius = radius
        self.logits = nn.Parameter(torch.zeros(1, 3, res, res, res))

    def albedo(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(_sample(self.logits, x, self.radius))

    def param_groups(self, stage: StageSpec) -> list[dict]:
        return [{"params": [self.logits], "lr": stage.lr_grid}]


class VoxelRepresentation(nn.Module):
    """Density and colour on dense 24³ grids, a ball at start: nothing shared with the hash-grid field."""

    def __init__(self, spec: JobSpec, gen=None, device="cpu", res: int = 24):
        super().__init__()
        self.radius = spec.field.radius
        axis = torch.linspace(-self.radius, self.radius, res)
        zz, yy, xx = torch.meshgrid(axis, axis, axis, indexing="ij")
        r = torch.sqrt(xx ** 2 + yy ** 2 + zz ** 2)
        self.sigma_logits = nn.Parameter((40.0 * (1.0 - r / 0.5))[None, None].contiguous())
        self.colors = VoxelColors(res, self.radius)
        self.background = Background(gen=gen)
        self.updates = 0

    def density(self, x: torch.Tensor) -> torch.Tensor:
        return F.softplus(_sample(self.sigma_logits, x, self.radius)[:, 0])

    def albedo(self, x: torch.Tensor) -> torch.Tensor:
        return self.colors.albedo(x)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.density(x), self.albedo(x)

    def density_and_normal(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            sigma = self.density(xg)
            (grad,) = torch.autograd.grad(sigma.sum(), xg)
        return sigma.detach(), -grad / grad.norm(dim=-1, keepdim=True).clamp_min(1e-12)

    def render(self, cams, backdrop, samples, gen, normals=False):
        return render_volume(self, cams, backdrop, samples, self.radius, gen=gen, want_normals=normals)

    def update(self, step: int) -> None:
        self.updates += 1

    def param_groups(self, stage: StageSpec) -> list[dict]:
        return [{"params": [self.sigma_logits], "lr": stage.lr_grid}, *self.colors.param_groups(stage),
                {"params": list(self.background.parameters()), "lr": stage.lr_background}]

    def color_field(self) -> VoxelColors:
        return copy.deepcopy(self.colors)


def test_the_spec_has_one_section_per_stage_in_table_order_with_the_table_defaults():
    sections = [f.name for f in fields(JobSpec) if f.type in (StageSpec, "StageSpec")]
    assert sections == list(STAGE_NAMES) == ["nerf", "geometry", "texture"]
    spec = JobSpec()
    for entry in STAGES:
        assert getattr(spec, entry.name) == StageSpec(**entry.defaults), entry.name
        assert entry.load_class().name == entry.name  # checkpoint prefix and event name
    assert spec.geometry.method == "sds" and spec.geometry.guidance_scale == 100.0  # the paper's stage 2
    assert [e.name for e in stages_for("text")] == ["nerf", "geometry", "texture"]
    assert [e.name for e in stages_for("retexture")] == ["texture"]
    spec.texture.t_min, spec.texture.t_max = 0.6, 0.5  # the cross-field check walks the table's sections
    assert [p.field for p in spec.problems()] == ["texture.t_max"]


def test_the_radiance_field_satisfies_the_protocol():
    rep = make_representation(make_spec("cpu-smoke"), torch.Generator().manual_seed(0))
    assert isinstance(rep, Representation) and isinstance(rep.color_field(), ColorField)
    x = torch.rand(50, 3) - 0.5
    assert torch.equal(rep.density(x), rep.field.density(x))
    color = rep.color_field()
    with torch.no_grad():  # an independent copy: fine-tuning stage 3 leaves stage 1 as it was
        for p in color.parameters():
            p.add_(1.0)
    assert not torch.allclose(color.albedo(x), rep.albedo(x))


def test_a_new_representation_runs_through_every_stage_and_export(tmp_path, monkeypatch):
    made: list[VoxelRepresentation] = []

    def make(spec, gen=None, device="cpu"):
        made.append(VoxelRepresentation(spec, gen, device))
        return made[-1]

    monkeypatch.setattr(nerf_module, "make_representation", make)
    spec = make_spec("cpu-smoke", {
        "nerf": {"steps": 3, "resolution_schedule": [[0, 24]], "samples_per_ray": 24},
        "geometry": {"steps": 2, "grid_resolution": 32, "resolution_schedule": [[0, 32]]},
        "texture": {"steps": 2, "resolution_schedule": [[0, 32]]},
        "camera": {"eval_views": 1}, "export": {"texture_size": 256}})
    run = RunDir(tmp_path / "run").create()
    events: list = []
    out = run_stages(JobContext(spec, run, events.append))
    assert len(made) == 1 and isinstance(made[0], Representation) and made[0].updates == 3
    assert [e.stage for e in events if isinstance(e, StageStarted)] == [*STAGE_NAMES, "export"]  # protocol.md
    assert set(STAGE_NAMES) <= set(out) and out["geometry"]["faces"][0] > 100, out["geometry"]
    assert (run.result / "mesh.glb").stat().st_size > 1000 and out["export"]["particles"][0]["faces"] > 100


def test_the_addon_bundles_the_engine_stage_table_and_the_check_reports_it():
    sys.path.insert(0, str(ROOT / "blender_addon"))
    try:
        import engine_check  # stdlib only: the add-on's module, run against this Python
        import job_spec
    finally:
        sys.path.pop(0)
    assert list(job_spec.STAGE_NAMES) == list(STAGE_NAMES)
    info = engine_check.run_check(sys.executable, str(ROOT), timeout_s=300)
    assert info["stages"] == describe_stages()
    assert job_spec.stage_names(info) == list(STAGE_NAMES)
    newer = {"stages": describe_stages() + [{"name": "relight", "title": "Relight", "modes": ["text"], "needs": []}]}
    assert job_spec.stage_names(newer) == [*STAGE_NAMES, "relight"]  # an engine stage the add-on does not know yet
    assert job_spec.stage_names({}) == list(STAGE_NAMES)  # no check yet: the bundled list


def test_the_addon_request_follows_the_checked_engine_stages():
    from types import SimpleNamespace
    sys.path.insert(0, str(ROOT / "blender_addon"))
    try:
        import job_spec
    finally:
        sys.path.pop(0)
    s = SimpleNamespace(stages={"nerf", "texture"}, prompt="a mug", negative_prompt="", seed=0, particles=1,
                        prior="analytic:marker", elevation_min=0.0, elevation_max=0.5, azimuth_min=-3.0, azimuth_max=3.0,
                        distance_min=1.0, distance_max=1.5, fov_min=0.7, fov_max=1.2, scene_mode="object",
                        texture_size="256", preset="cpu-smoke")
    newer = {"stages": describe_stages() + [{"name": "relight", "title": "Relight", "modes": ["text"], "needs": []}]}
    over = job_spec.build_request(s, engine_info=newer)["overrides"]
    assert [k for k in over if k in (*STAGE_NAMES, "relight")] == list(STAGE_NAMES)
    assert (over["nerf"]["enabled"], over["geometry"]["enabled"], over["texture"]["enabled"]) == (True, False, True)
    older = {"stages": [e for e in describe_stages() if e["name"] != "geometry"]}
    req = job_spec.build_request(s, engine_info=older)
    assert "geometry" not in req["overrides"]  # never send a section the checked engine does not have
    assert make_spec(req["preset"], req["overrides"]).geometry.enabled  # the engine's default applies


def test_the_addon_offers_every_engine_preset():
    from blender_addon import properties
    from engine.presets import PRESETS
    assert sorted(name for name, _, _ in properties.PRESETS) == sorted(PRESETS)
