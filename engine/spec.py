"""Job specification: every knob of a VSDream job as plain dataclasses.

A JobSpec is the one thing the CLI, the server and the Blender add-on exchange. It round-trips
through JSON, and `validate()` reports *every* bad field at once so a user can fix them in one go.
Types come from the annotations and ranges from each field's rule (engine/spec_types.py), so a new
field is checked by declaring it; only checks that tie fields together are written out below.
"""
from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any, Literal, get_origin

from .spec_problems import FieldProblem, SpecError
from .spec_types import (
    Rule,
    among,
    described,
    field_problems,
    field_types,
    is_section,
    max_length,
    ordered,
    spec_field,
    within,
)
from .stage_table import STAGES, stage, stages_for

__all__ = ["CameraSpec", "ExportSpec", "FieldProblem", "FieldSpec", "JobSpec", "SpecError", "StageSpec"]

Method = Literal["vsd", "sds"]
TSchedule = Literal["two_stage", "sqrt"]
SpecValue = Any


def _schedule_ok(sched: list[list[int]]) -> bool:
    if not sched or any(len(e) != 2 for e in sched):
        return False
    steps = [e[0] for e in sched]
    return steps[0] == 0 and steps == sorted(steps) and all(16 <= e[1] <= 1024 for e in sched)


_SCHEDULE = described(_schedule_ok, "[[0, res], [step, res], ...] with increasing steps and 16 ≤ res ≤ 1024")
# only CUDA has device indices; 'cpu:999' names nothing (engine/devices.py checks that the device exists)
_DEVICE = described(lambda v: re.fullmatch(r"auto|cpu|mps|cuda(:\d{1,4})?", v) is not None,
                    "'auto', 'cpu', 'mps', 'cuda' or 'cuda:N'")
MAX_PATH_CHARS = 4096  # PATH_MAX on Linux; longer values cannot name a file anywhere


def _path_ok(v: Any) -> bool:
    """A path as it will be checked and opened: one spelling, so nothing downstream strips it."""
    from .priors.registry import trimmed  # here: engine.priors imports this module
    return v is None or (bool(trimmed(v)) and v == trimmed(v) and len(v) <= MAX_PATH_CHARS and "\x00" not in v)


def _path_rule(what: str) -> Rule:
    return Rule(_path_ok, lambda words: f"{words}: {what} of at most {MAX_PATH_CHARS} characters, with no "
                                        "white space or invisible characters before or after it")


_MODEL = _path_rule("a model id or folder path")
# nothing reads a spec's output_dir: the run folder is `vsdream run --out` or the server's <runs-dir>/<job id>
_OUTPUT_DIR = Rule(lambda v: v is None, lambda words: f"{words}; only null is used: the run folder is chosen where "
                   "the job runs (vsdream run --out DIR, or the server's <runs-dir>/<job id>)")
_ANALYTIC_TOKEN = re.compile(r"[A-Za-z0-9_-]+|s=\S+|mesh=\S.*")
_LR = within(0.0, 1.0)
_LAMBDA = within(0.0, 1e8)


@dataclass
class CameraSpec:
    """Camera ranges (degrees / metres), DESIGN.md §2 conventions: azimuth 0 = camera on −Y."""

    elevation_deg: tuple[float, float] = spec_field((-10.0, 45.0), ordered(-89.9, 89.9))
    azimuth_deg: tuple[float, float] = spec_field((-180.0, 180.0), ordered(-360.0, 360.0, max_span=360.0))
    distance: tuple[float, float] = spec_field((1.0, 1.5), ordered(0.05, 100.0))
    fov_deg: tuple[float, float] = spec_field((40.0, 70.0), ordered(5.0, 150.0))
    # held-out orbit used for previews and evaluation
    eval_elevation_deg: float = spec_field(15.0, within(-89.9, 89.9))
    eval_distance: float = spec_field(1.5, within(0.05, 100.0))
    eval_fov_deg: float = spec_field(70.0, within(5.0, 150.0))
    eval_views: int = spec_field(8, within(1, 360))
    # scenes: also this many views of a level 360° pan from the centre, looking out (0: none)
    eval_centre_pan: int = spec_field(0, within(0, 360))
    # view-dependent prompt thresholds (degrees)
    front_threshold_deg: float = spec_field(30.0, within(0.0, 180.0))
    back_threshold_deg: float = spec_field(30.0, within(0.0, 180.0))
    overhead_threshold_deg: float = spec_field(60.0, within(-90.0, 90.0))
    view_dependent_prompts: bool = True  # append "front/side/back/overhead view" (off for scenes)


@dataclass
class FieldSpec:
    """Radiance field: hash grid + MLPs + blob init (DESIGN.md §3)."""

    # object: cameras outside looking in; scene: cameras inside a room-sized volume (engine/scene_mode.py
    # brings the scene settings as a bundle: radius, blob, cameras, background, regularisers, anneal)
    kind: Literal["object", "scene"] = "object"
    levels: int = spec_field(16, within(1, 32))
    features_per_level: int = spec_field(2, within(1, 8))
    log2_table_size: int = spec_field(19, within(8, 24))
    base_resolution: int = spec_field(16, within(2, 512))
    growth: float = spec_field(1.447, within(1.0, 4.0))
    hidden: int = spec_field(64, within(8, 512))
    blob: Literal["object", "scene"] = "object"
    radius: float = spec_field(1.0, within(0.1, 100.0))
    background: Literal["network", "random_half", "white", "black"] = "random_half"


@dataclass
class StageSpec:
    """One optimisation stage. Resolution schedule = [[start_step, resolution], ...]."""

    enabled: bool = True
    steps: int = spec_field(25000, within(0, 1_000_000))
    method: Method = "vsd"
    resolution_schedule: list[list[int]] = spec_field([[0, 64], [5000, 512]], _SCHEDULE)
    batch_size: int = spec_field(1, within(1, 64))
    samples_per_ray: int = spec_field(96, within(4, 1024))
    # fine samples per ray drawn from a coarse pass's weights on the pure-torch render paths
    # (thu-ml/prolificdreamer: 64 coarse + 32 fine; engine/render/importance.py); 0: uniform bins only
    importance_samples: int = spec_field(0, within(0, 1024))
    guidance_scale: float = spec_field(7.5, within(0.0, 200.0))
    guidance_scale_phi: float = spec_field(1.0, within(0.0, 20.0))
    t_min: float = spec_field(0.02, within(0.0, 1.0))
    t_max: float = spec_field(0.98, within(0.0, 1.0))
    t_max_annealed: float = spec_field(0.5, within(0.0, 1.0))
    anneal_step: int = spec_field(5000, within(0, 10_000_000))
    t_schedule: TSchedule = "two_stage"
    lr_grid: float = spec_field(1e-2, _LR)
    lr_mlp: float = spec_field(1e-3, _LR)
    lr_background: float = spec_field(1e-3, _LR)
    lr_phi: float = spec_field(1e-4, _LR)
    lr_geometry: float = spec_field(5e-3, _LR)
    phi_camera_dropout: float = spec_field(0.1, within(0.0, 1.0))
    lambda_sparsity: float = spec_field(0.0, _LAMBDA)
    lambda_opaque: float = spec_field(0.0, _LAMBDA)
    # [start, end] steps: lambda_opaque is 0 before start and ramps linearly to its full value at end
    # (threestudio's [10000, 0, 1000, 10001] is start 10000, end 10001: switched on at 10k)
    opaque_ramp: tuple[int, int] = spec_field((0, 0), ordered(0, 10_000_000))
    # scenes: Σ w (t − depth)² on rays at least half opaque, so each ray's weight gathers at one surface
    lambda_z_variance: float = spec_field(0.0, _LAMBDA)
    lambda_normal_consistency: float = spec_field(0.0, _LAMBDA)
    lambda_laplacian: float = spec_field(0.0, _LAMBDA)
    preview_every: int = spec_field(200, within(1, 1_000_000))
    # previews by time as well as by steps: the first ~10 s after the stage starts, then at least every
    # this many seconds whatever the step rate (0: by steps only)
    preview_interval_s: float = spec_field(30.0, within(0.0, 86400.0))
    checkpoint_every: int = spec_field(500, within(1, 1_000_000))
    grid_resolution: int = spec_field(128, among(32, 64, 128, 256))  # DMTet resolution for the geometry stage


def _stage_section(name: str) -> Any:
    """A JobSpec field for stage `name`: a StageSpec with the stage table's defaults."""
    return dc_field(default_factory=lambda: StageSpec(**copy.deepcopy(stage(name).defaults)))


@dataclass
class ExportSpec:
    enabled: bool = True
    texture_size: int = spec_field(1024, among(256, 512, 1024, 2048, 4096))
    face_target: int = spec_field(100_000, within(100, 5_000_000))
    formats: list[str] = spec_field(["glb"], among("glb", "obj"))
    unwrap_timeout_s: float = spec_field(120.0, within(1.0, 86400.0))
    panorama_width: int = spec_field(2048, within(64, 16384))  # scene mode: equirectangular, height = width / 2


@dataclass
class JobSpec:
    prompt: str = spec_field("", max_length(1000))
    negative_prompt: str = spec_field("", max_length(1000))
    seed: int = spec_field(0, within(0, 2**63 - 1))
    mode: Literal["text", "retexture"] = "text"
    particles: int = spec_field(1, within(1, 16))
    prior: str = "analytic:marker"
    model: str | None = spec_field(None, _MODEL)
    # ε_φ base for the sd priors: None = the prior's default (SD-2.1, v-prediction, for 'sd'),
    # 'shared' = a LoRA on the pretrained UNet itself (one UNet in memory), or a model path / id
    phi_model: str | None = spec_field(None, _MODEL)
    device: str = spec_field("auto", _DEVICE)
    preset: str = spec_field("custom", max_length(100))
    input_mesh: str | None = spec_field(None, _path_rule("a mesh path (GLB/glTF/OBJ/PLY)"))
    input_mesh_decimate: bool = False  # re-texture: decimate a mesh over the face limit instead of refusing it
    output_dir: str | None = spec_field(None, _OUTPUT_DIR)
    # frozen Stable Diffusion UNets/VAE on CUDA: auto = fp16 (what the references run; bf16's
    # shorter mantissa is amplified by CFG); LoRA and camera-MLP masters stay fp32 whatever this says
    precision: Literal["auto", "fp16", "bf16", "fp32"] = "auto"
    camera: CameraSpec = dc_field(default_factory=CameraSpec)
    field: FieldSpec = dc_field(default_factory=FieldSpec)
    # the 3D representation each particle is (engine/representation/registry.py)
    representation: Literal["radiance"] = "radiance"
    # one section per stage, in the stage table's order, with its paper defaults (engine/stage_table.py)
    nerf: StageSpec = _stage_section("nerf")
    geometry: StageSpec = _stage_section("geometry")
    texture: StageSpec = _stage_section("texture")
    export: ExportSpec = dc_field(default_factory=ExportSpec)

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        return _to_plain(self)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobSpec:
        """Build a spec; unknown keys or non-object sections raise SpecError listing every problem."""
        problems: list[FieldProblem] = []
        spec = _build(cls, data, "", problems)
        if problems:  # report structural, type and value problems together, in one error
            seen = {p.field for p in problems}
            problems.extend(p for p in spec.problems() if p.field not in seen)
            raise SpecError(problems)
        return spec

    @classmethod
    def from_json(cls, text: str) -> JobSpec:
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:  # JSONDecodeError, huge integers, deep nesting
            why = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)[:100]
            raise SpecError([FieldProblem("<json>", text[:80], f"valid JSON ({why})")]) from None
        if not isinstance(data, dict):
            raise SpecError([FieldProblem("<json>", type(data).__name__, "a JSON object")])
        return cls.from_dict(data)

    # ------------------------------------------------------------ validation
    def validate(self) -> JobSpec:
        """Raise SpecError naming every bad field, its value and what is allowed; nothing else raises."""
        problems = self.problems()
        if problems:
            raise SpecError(problems)
        return self

    def problems(self) -> list[FieldProblem]:
        """Every problem of this spec: each field's type and range, then the checks across fields."""
        problems = field_problems(self)
        bad = {p.field for p in problems}

        def fine(*paths: str) -> bool:  # well-typed and in range, section included
            return not any(p in bad or p.split(".")[0] in bad for p in paths)

        chk = _Checker(problems)
        if fine("prior"):
            chk.prior("prior", self.prior)
        if fine("mode", "input_mesh") and self.mode == "retexture" and not self.input_mesh:
            problems.append(FieldProblem("input_mesh", self.input_mesh,
                                         "a mesh path (GLB/OBJ/PLY) when mode is 'retexture'"))
        from .priors.registry import find_prior  # here: engine.priors imports this module
        entry = find_prior(self.prior) if fine("prior") else None
        if entry is not None and entry.needs_prompt and fine("prompt") and not self.prompt.strip():
            problems.append(FieldProblem("prompt", self.prompt, f"a non-empty text prompt for the {entry.name} prior"))
        if entry is not None and entry.needs_prompt and fine("preset"):
            from .presets import ANALYTIC_PRESETS, text_presets  # here: engine.presets imports this module
            if self.preset in ANALYTIC_PRESETS:
                problems.append(FieldProblem("preset", self.preset, f"one of {', '.join(map(repr, text_presets()))} "
                                             f"for the {entry.name} prior ({self.preset} is made for the analytic "
                                             "prior: guidance 1, distant cameras, a tiny field)"))
        for entry in STAGES:
            s = getattr(self, entry.name)
            if fine(f"{entry.name}.t_min", f"{entry.name}.t_max") and s.t_min >= s.t_max:
                problems.append(FieldProblem(f"{entry.name}.t_max", s.t_max, f"greater than t_min ({s.t_min})"))
        if fine("mode"):  # a stage that runs trains: zero steps would hand on an untrained field as "done"
            for entry in stages_for(self.mode):
                s = getattr(self, entry.name)
                if fine(f"{entry.name}.steps", f"{entry.name}.enabled") and s.enabled and s.steps == 0:
                    problems.append(FieldProblem(f"{entry.name}.steps", 0,
                                                 f"at least 1 while {entry.name}.enabled is true (set "
                                                 f"{entry.name}.enabled = false to skip the stage)"))
        return problems


@dataclass
class _Checker:
    """Checks that need more than a field's type and range (the prior names known priors)."""

    problems: list[FieldProblem]

    def prior(self, name: str, value: Any) -> None:
        from .priors.registry import analytic_tokens, canonical_prior, find_prior, prior_syntax
        canonical = canonical_prior(value)
        if canonical != value and find_prior(canonical) is not None:  # refused, not stripped: see canonical_prior
            self.problems.append(FieldProblem(name, value, f"the prior without white space or invisible characters "
                                                           f"around it or its parts: "
                                                           f"{canonical[:200]!r}"))
        elif find_prior(value) is None or len(value) > MAX_PATH_CHARS + 100:
            self.problems.append(FieldProblem(name, value, f"{prior_syntax()} (e.g. analytic:marker; a path of at "
                                                           f"most {MAX_PATH_CHARS} characters)"))
        elif value.startswith("analytic:"):
            odd = [t for t in analytic_tokens(value[len("analytic:"):]) if not _ANALYTIC_TOKEN.fullmatch(t)]
            if odd:
                self.problems.append(FieldProblem(name, value, f"scene names, 's=<noise>' or 'mesh=<path>' after "
                                                               f"'analytic:' (not {odd[0][:80]!r})"))


# ----------------------------------------------------------------- helpers
def _to_plain(obj: Any) -> Any:
    """Dataclasses → dicts and tuples → lists, for JSON."""
    if is_section(type(obj)):
        return {name: _to_plain(getattr(obj, name)) for name in field_types(type(obj))}
    if isinstance(obj, dict):
        return {k: _to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_plain(v) for v in obj]
    return obj


def _build(cls: type, data: Any, prefix: str, problems: list[FieldProblem]) -> Any:
    """Build dataclass `cls` from a dict, recording unknown keys and non-object sections.

    Sections and tuples are recognised from the field annotations; values are taken as they are
    and checked afterwards by `problems()`."""
    if not isinstance(data, dict):
        problems.append(FieldProblem(prefix.rstrip(".") or "<root>", data, "a JSON object"))
        return cls()
    types_ = field_types(cls)
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        tp = types_.get(key) if isinstance(key, str) else None
        if tp is None:
            problems.append(FieldProblem(f"{prefix}{key}", value, "not a known field (check spelling)"))
        elif is_section(tp):
            kwargs[key] = _build(tp, value, prefix + key + ".", problems)
        elif get_origin(tp) is tuple and isinstance(value, list):
            kwargs[key] = tuple(value)
        else:
            kwargs[key] = value
    return cls(**kwargs)
