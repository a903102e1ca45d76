"""Invariants every shipped preset keeps, in every mode it runs: text object, text scene, re-texture.

The presets are enumerated from `PRESETS`, so a new preset is checked without anyone remembering to.
The quality tests run `cpu-smoke` on the analytic prior; these check what an artist's first real run
depends on in `paper`, `fast`, `preview` and `low-vram` too: framing, guidance, the prior's native
size, the opacity term, the ray step, the t range of stage 3, the memory budget.
"""
from __future__ import annotations

import dataclasses
import functools
import math

import pytest
import torch
import trimesh

from engine.cameras import CameraSampler, concat_cameras
from engine.presets import ANALYTIC_PRESETS, PRESETS, make_spec
from engine.priors.registry import find_prior
from engine.stage_table import STAGES, stages_for

TEXT_PROMPT = {"prompt": "a ceramic owl"}


@dataclasses.dataclass
class FramingFigures:
    """How a subject sits in a set of views, measured on its rasterised silhouette: independent of
    the projection arithmetic engine/framing.py fits with."""

    touching: float  # fraction of views whose silhouette reaches the image border
    coverage: float  # mean fraction of the frame the silhouette covers
    coverage_min: float
    coverage_max: float

    def as_dict(self) -> dict[str, float]:
        return {k: round(v, 4) for k, v in dataclasses.asdict(self).items()}


def silhouette_figures(vertices: torch.Tensor, faces: torch.Tensor, cams, chunk: int = 32) -> FramingFigures:
    """Touching (the outermost ring of pixels is covered) and coverage with the engine's rasteriser."""
    from engine.mesh.raster import make_rasterizer
    from engine.mesh.render import clip_positions
    raster = make_rasterizer("cpu", prefer="torch")
    touching, coverage = [], []
    for start in range(0, cams.batch, chunk):
        part = cams.index(slice(start, start + chunk))
        rast = raster.rasterize(clip_positions(vertices.float(), part), faces.long(), (part.height, part.width))
        covered = rast[..., 3] > 0
        ring = covered.clone()
        ring[:, 1:-1, 1:-1] = False
        touching.append(ring.flatten(1).any(dim=1))
        coverage.append(covered.flatten(1).float().mean(dim=1))
    t, c = torch.cat(touching).float(), torch.cat(coverage)
    return FramingFigures(float(t.mean()), float(c.mean()), float(c.min()), float(c.max()))
MODES = ("text object", "text scene", "retexture")


def preset_spec(preset: str, mode: str, **over):
    """The preset as an artist runs it in `mode` (its own prior; a re-texture mesh where needed)."""
    o = {**TEXT_PROMPT, **over}
    if mode == "text scene":
        o["field"] = {"kind": "scene"}
    if mode == "retexture":
        o.update(mode="retexture", input_mesh=over.get("input_mesh", "mesh.glb"))
    return make_spec(preset, o)


def stages_run(spec):
    return [e.name for e in stages_for(spec.mode) if getattr(spec, e.name).enabled]


# --------------------------------------------------------------------------- framing
SHAPES = ("sphere", "cube", "capsule", "plate_upright", "plate_flat")


def shape(name: str) -> trimesh.Trimesh:
    if name == "sphere":
        return trimesh.creation.icosphere(2)
    if name == "cube":
        return trimesh.creation.box((1, 1, 1))
    if name == "capsule":  # 1:4 overall, lying along X
        m = trimesh.creation.capsule(height=3.0, radius=0.5, count=[12, 12])
        m.apply_transform(trimesh.transformations.rotation_matrix(math.pi / 2, [0, 1, 0]))
        return m
    if name == "plate_upright":  # a sign facing the front (−Y); Blender frame
        return trimesh.creation.box((1.0, 0.02, 0.7))
    return trimesh.creation.box((1.0, 0.7, 0.02))  # lying flat: edge-on from the horizon


def write_glb(m: trimesh.Trimesh, path) -> str:
    """As Blender's exporter writes it: Y up (the loader turns it back to Z up)."""
    m = m.copy()
    m.apply_transform(trimesh.transformations.rotation_matrix(-math.pi / 2, [1, 0, 0]))
    m.export(path)
    return str(path)


def held_out_sample(sampler: CameraSampler, views: int = 64, resolution: int = 32):
    """Training cameras drawn as a stage draws them, from a seed the framing fit never used."""
    gen = torch.Generator().manual_seed(12345)
    return concat_cameras([sampler.sample(8, resolution, gen) for _ in range(views // 8)])


@functools.cache
def _shape_file(name: str, folder: str) -> str:
    from pathlib import Path
    return write_glb(shape(name).apply_scale(3.7), Path(folder) / f"{name}.glb")  # any size: 3.7 m across


_MEASURED: dict[tuple, tuple] = {}


def _framing(camera, kind: str, name: str, folder: str, radius: float | None = None):
    """Framing figures of a shape as the mesh stages of a spec with this camera see it. Cached by the
    camera's value: presets that share their cameras share the measurement."""
    key = (repr(camera), kind, name, folder, radius)
    if key not in _MEASURED:
        _MEASURED[key] = _measure_framing(camera, kind, name, folder, radius)
    return _MEASURED[key]


def _measure_framing(camera, kind: str, name: str, folder: str, radius: float | None):
    from engine.framing import mesh_stage_factor, scaled_camera
    from engine.mesh.mesh_io import load_mesh
    from engine.spec import JobSpec
    spec = JobSpec(camera=camera)
    spec.field.kind = kind
    loaded = load_mesh(_shape_file(name, folder))  # the re-texture loader: unit radius, Blender frame
    v = torch.from_numpy(loaded.mesh.vertices).float() * (radius or 1.0)
    f = torch.from_numpy(loaded.mesh.faces).long()
    factor = mesh_stage_factor(spec, [(v, f)])
    return silhouette_figures(v, f, held_out_sample(CameraSampler(scaled_camera(camera, factor)))), factor


def framing(spec, name: str, folder, radius: float | None = None):
    return _framing(spec.camera, spec.field.kind, name, str(folder), radius)[0]


@pytest.fixture(scope="module")
def shapes_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("shapes")


@pytest.mark.parametrize("preset", list(PRESETS))
def test_retexture_frames_every_shape_for_the_preset_cameras(preset, shapes_dir):
    """A user's mesh of any size and aspect is seen whole: its silhouette reaches the image border in
    ≤ 10 % of training views and covers 10–80 % of the frame on average (rasterised, on views the
    fit never saw). A plate lying flat is edge-on from the horizon, so its coverage is held to 5 %."""
    spec = preset_spec(preset, "retexture", prior="analytic:marker")
    report = {}
    for name in SHAPES:
        fig = framing(spec, name, shapes_dir)
        report[name] = fig.as_dict()
        assert fig.touching <= 0.10, (preset, name, fig)
        assert (0.05 if name == "plate_flat" else 0.10) <= fig.coverage <= 0.80, (preset, name, fig)
    print(preset, report)


@pytest.mark.parametrize("preset", list(PRESETS))
@pytest.mark.parametrize("radius", [0.25, 0.9])
def test_text_mode_mesh_stages_frame_what_stage_1_grew(preset, radius, shapes_dir):
    """Stage 1 may grow a small or a large object: the mesh stages' cameras frame it either way."""
    spec = preset_spec(preset, "text object", prior="analytic:marker")
    fig = framing(spec, "capsule", shapes_dir, radius)
    assert fig.touching <= 0.10 and 0.10 <= fig.coverage <= 0.80, (preset, radius, fig)


def test_the_texture_stage_trains_and_resumes_with_the_framed_cameras(shapes_dir, tmp_path):
    """The real stage (re-texture, the pipeline's own constructor) samples from the framed cameras,
    keeps the factor in its checkpoint, and a resumed stage takes it from there."""
    from engine.context import JobContext
    from engine.framing import scaled_camera
    from engine.run_dir import RunDir
    from engine.stages.texture import TextureStage
    path = _shape_file("capsule", str(shapes_dir))
    spec = preset_spec("fast", "retexture", input_mesh=path, prior=f"analytic:mesh={path}")
    ctx = JobContext(spec, RunDir(tmp_path / "run").create(), lambda e: None, device=torch.device("cpu"))
    stage = TextureStage.for_job(ctx, {})
    factor = _framing(spec.camera, "object", "capsule", str(shapes_dir))[1]
    assert stage.camera_factor == pytest.approx(factor) and factor > 1.5  # a radius-1 mesh: cameras pulled back
    assert stage.sampler.spec == scaled_camera(spec.camera, factor)
    state = stage.state_dict()
    assert state["camera_factor"] == pytest.approx(factor)  # the checkpoint keeps the cameras it trained with
    state["camera_factor"] = 3.0
    stage.load_state_dict(state)
    assert stage.sampler.spec.distance == pytest.approx((3.0 * spec.camera.distance[0], 3.0 * spec.camera.distance[1]))


_BLOB: dict[str, object] = {}


def blob_figures(camera):
    """A radius-0.5 sphere (the stage-1 blob's size) under these stage-1 cameras (cached by value)."""
    if repr(camera) not in _BLOB:
        s = trimesh.creation.icosphere(2, radius=0.5)
        _BLOB[repr(camera)] = silhouette_figures(torch.tensor(s.vertices, dtype=torch.float32), torch.tensor(s.faces),
                                                 held_out_sample(CameraSampler(camera)))
    return _BLOB[repr(camera)]


@pytest.mark.parametrize("preset", list(PRESETS))
def test_stage_1_frames_the_blob_no_tighter_than_the_references(preset):
    """The references' stage-1 cameras (threestudio and the official code: distance 1.0–1.5, fov
    40–70°, elevation −10…45°) crop the blob in about a third of the views; no preset may crop more."""
    from engine.spec import CameraSpec
    spec = preset_spec(preset, "text object", prior="analytic:marker")
    fig = blob_figures(spec.camera)
    ref = blob_figures(CameraSpec(distance=(1.0, 1.5), fov_deg=(40.0, 70.0), elevation_deg=(-10.0, 45.0)))
    print(preset, "stage 1, radius-0.5 sphere:", fig.as_dict(), "references:", ref.as_dict())
    assert fig.touching <= ref.touching + 0.05 and fig.coverage >= 0.10, (fig, ref)


@pytest.mark.parametrize("preset", list(PRESETS))
def test_scene_cameras_stand_inside_the_scene(preset):
    spec = preset_spec(preset, "text scene", prior="analytic:room")
    assert spec.field.kind == "scene" and spec.camera.distance[1] < spec.field.radius
    assert spec.camera.eval_distance <= spec.camera.distance[1]


# --------------------------------------------------------------------------- the prior's settings
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("preset", list(PRESETS))
def test_text_priors_run_with_guidance_and_at_their_native_size(preset, mode):
    """Every stage a text prior drives has classifier-free guidance above 1 (CFG 1 is no guidance:
    the object never follows the prompt), and the prior resizes every render to its native size."""
    if preset in ANALYTIC_PRESETS:
        spec = preset_spec(preset, mode, prior="analytic:room" if mode == "text scene" else "analytic:marker")
        assert not find_prior(spec.prior).needs_prompt
        with pytest.raises(Exception, match="preset"):
            preset_spec(preset, mode, prior="sd")
        return
    spec = preset_spec(preset, mode)
    entry = find_prior(spec.prior)
    assert entry.needs_prompt and entry.native_size is not None
    for name in stages_run(spec):
        assert getattr(spec, name).guidance_scale > 1.0, (preset, mode, name)


@pytest.mark.parametrize("mode", ["text object", "text scene"])
@pytest.mark.parametrize("preset", list(PRESETS))
def test_stage_1_has_an_opacity_term_that_switches_on(preset, mode):
    """Objects: the opacity term (threestudio's lambda_opaque) is on for at least the last 40 % of
    stage 1; scenes: the z-variance term gathers each ray's weight to one surface (threestudio's scene
    setting, which has no opacity term: a room's rays all hit). cpu-smoke is the analytic prior's test
    preset: its quality tests and benches are tuned without the term, and it is kept off there until
    they are re-measured with it (the closing note of issue 21 says so)."""
    nerf = preset_spec(preset, mode).nerf
    if mode == "text scene":
        assert nerf.lambda_z_variance > 0
        return
    if preset in ANALYTIC_PRESETS:
        assert nerf.lambda_opaque == 0.0
        return
    assert nerf.lambda_opaque > 0 and nerf.opaque_ramp[1] <= 0.6 * nerf.steps, (preset, nerf.opaque_ramp)
    from engine.stages.nerf import opaque_weight
    assert opaque_weight(nerf, nerf.steps - 1) == nerf.lambda_opaque
    assert opaque_weight(nerf, nerf.opaque_ramp[0] - 1) == 0.0  # off while the shape forms


def test_the_opacity_term_follows_its_ramp_in_the_stage_1_loss():
    """0 before the ramp, linear along it, full after; applied as BCE(opacity, opacity) per ray."""
    from engine.render import RenderOutput
    from engine.spec import StageSpec
    from engine.stages.nerf import NerfStage
    cfg = StageSpec(lambda_opaque=100.0, opaque_ramp=(10, 20), lambda_sparsity=0.0)
    half = torch.full((1, 2, 2, 1), 0.5)
    out = RenderOutput(torch.zeros(1, 2, 2, 3), half, torch.zeros_like(half), None, None)
    stage = NerfStage.__new__(NerfStage)  # the loss reads only its stage settings
    stage.cfg = cfg
    got = [float(stage._regularisers(out, step)) for step in (0, 9, 15, 20, 400)]
    assert got == pytest.approx([0.0, 0.0, 50 * math.log(2), 100 * math.log(2), 100 * math.log(2)])


@pytest.mark.parametrize("preset", list(PRESETS))
def test_stage_3_keeps_inherited_colours_and_paints_fresh_ones(preset, tmp_path):
    """Text mode: stage 3 starts from stage 1's colour field, so t ≤ 0.5 from step 0 (the official
    code); re-texture starts a fresh one, so t reaches 0.98 before the annealing step (threestudio)."""
    text = preset_spec(preset, "text object")
    assert max(text.texture.t_max, text.texture.t_max_annealed) <= 0.5
    re = preset_spec(preset, "retexture")
    assert re.texture.t_max >= 0.9 and re.texture.anneal_step > 0
    assert preset_spec(preset, "retexture", texture={"t_max": 0.6}).texture.t_max == 0.6  # the artist's value wins


class _Room:
    """σ = 500 beyond 3 m from the centre: the walls of a room the scene cameras stand in."""

    def density(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(x.norm(dim=-1) > 3.0, torch.full_like(x[:, 0], 500.0), torch.zeros_like(x[:, 0]))

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.density(x), torch.full_like(x, 0.5)


# threestudio's step (1.732 · 2 · radius / 512 samples): 0.0068 for an object, 0.034 for a radius-5 scene
THREESTUDIO_STEP = {"text object": 0.0068, "text scene": 0.034}


@pytest.mark.parametrize("mode", ["text object", "text scene"])
@pytest.mark.parametrize("preset", list(PRESETS))
def test_stage_1_samples_surfaces_as_finely_as_the_references(preset, mode):
    """Where the rendered weight is (Σ w·δ / Σ w on a hard surface: the blob-sized ball for objects,
    a room's walls for scenes), a text preset's stage 1 steps no coarser than threestudio's 512
    samples: its importance samples put the steps there (the uniform bins alone: 0.021 / 0.10)."""
    from engine.render.speed import HardBall, weighted_step
    spec = preset_spec(preset, mode)
    if preset in ANALYTIC_PRESETS:  # the analytic test preset keeps its uniform bins: the CPU tests' speed
        assert spec.nerf.importance_samples == 0
        return
    nerf = spec.nerf
    cams = held_out_sample(CameraSampler(spec.camera), views=8, resolution=12)
    subject = HardBall() if mode == "text object" else _Room()
    step = weighted_step(subject, cams, nerf.samples_per_ray, spec.field.radius, None, nerf.importance_samples,
                         gen=torch.Generator().manual_seed(0))
    print(preset, mode, f"weighted step {step:.5f} (threestudio {THREESTUDIO_STEP[mode]})")
    assert step <= THREESTUDIO_STEP[mode], (preset, mode, step)


def test_every_stage_is_checked_here():
    """The invariants above name the stages they read; a new stage must be added to them."""
    assert [e.name for e in STAGES] == ["nerf", "geometry", "texture"]
