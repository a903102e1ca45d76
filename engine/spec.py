"""Job specification: every knob of a VSDream job as plain dataclasses.

A JobSpec is the one thing the CLI, the server and the Blender add-on exchange. It round-trips
through JSON, and `validate()` reports *every* bad field at once so a user can fix them in one go.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any, Literal

Method = Literal["vsd", "sds"]
TSchedule = Literal["two_stage", "sqrt"]
SpecValue = Any


class SpecError(ValueError):
    """Raised by `JobSpec.validate` with one entry per bad field."""

    def __init__(self, problems: list["FieldProblem"]):
        self.problems = problems
        lines = [f"{p.field} = {p.value!r}: {p.allowed}" for p in problems]
        super().__init__("invalid job spec:\n  " + "\n  ".join(lines))

    def to_list(self) -> list[dict[str, Any]]:
        return [dataclasses.asdict(p) for p in self.problems]


@dataclass
class FieldProblem:
    field: str
    value: Any
    allowed: str


@dataclass
class CameraSpec:
    """Camera ranges (degrees / metres), DESIGN.md §2 conventions: azimuth 0 = camera on −Y."""

    elevation_deg: tuple[float, float] = (-10.0, 45.0)
    azimuth_deg: tuple[float, float] = (-180.0, 180.0)
    distance: tuple[float, float] = (1.0, 1.5)
    fov_deg: tuple[float, float] = (40.0, 70.0)
    # held-out orbit used for previews and evaluation
    eval_elevation_deg: float = 15.0
    eval_distance: float = 1.5
    eval_fov_deg: float = 70.0
    eval_views: int = 8
    # view-dependent prompt thresholds (degrees)
    front_threshold_deg: float = 30.0
    back_threshold_deg: float = 30.0
    overhead_threshold_deg: float = 60.0


@dataclass
class FieldSpec:
    """Radiance field: hash grid + MLPs + blob init (DESIGN.md §3)."""

    levels: int = 16
    features_per_level: int = 2
    log2_table_size: int = 19
    base_resolution: int = 16
    growth: float = 1.447
    hidden: int = 64
    blob: Literal["object", "scene"] = "object"
    radius: float = 1.0
    background: Literal["network", "random_half", "white", "black"] = "random_half"


@dataclass
class StageSpec:
    """One optimisation stage. Resolution schedule = [[start_step, resolution], ...]."""

    enabled: bool = True
    steps: int = 25000
    method: Method = "vsd"
    resolution_schedule: list[list[int]] = dc_field(default_factory=lambda: [[0, 64], [5000, 512]])
    batch_size: int = 1
    samples_per_ray: int = 96
    guidance_scale: float = 7.5
    guidance_scale_phi: float = 1.0
    t_min: float = 0.02
    t_max: float = 0.98
    t_max_annealed: float = 0.5
    anneal_step: int = 5000
    t_schedule: TSchedule = "two_stage"
    lr_grid: float = 1e-2
    lr_mlp: float = 1e-3
    lr_background: float = 1e-3
    lr_phi: float = 1e-4
    lr_geometry: float = 5e-3
    phi_camera_dropout: float = 0.1
    lambda_sparsity: float = 0.0
    lambda_opaque: float = 0.0
    lambda_normal_consistency: float = 0.0
    lambda_laplacian: float = 0.0
    preview_every: int = 200
    checkpoint_every: int = 500
    grid_resolution: int = 128  # DMTet resolution for the geometry stage


@dataclass
class ExportSpec:
    enabled: bool = True
    texture_size: int = 1024
    face_target: int = 100_000
    formats: list[str] = dc_field(default_factory=lambda: ["glb"])
    unwrap_timeout_s: float = 120.0


@dataclass
class JobSpec:
    prompt: str = ""
    negative_prompt: str = ""
    seed: int = 0
    mode: Literal["text", "retexture"] = "text"
    particles: int = 1
    prior: str = "analytic:marker"
    model: str | None = None
    # ε_φ base for the sd priors: None = the prior's default (SD-2.1, v-prediction, for 'sd'),
    # 'shared' = a LoRA on the pretrained UNet itself (one UNet in memory), or a model path / id
    phi_model: str | None = None
    device: str = "auto"
    preset: str = "custom"
    input_mesh: str | None = None
    input_mesh_decimate: bool = False  # re-texture: decimate a mesh over the face limit instead of refusing it
    output_dir: str | None = None
    camera: CameraSpec = dc_field(default_factory=CameraSpec)
    field: FieldSpec = dc_field(default_factory=FieldSpec)
    nerf: StageSpec = dc_field(default_factory=StageSpec)
    geometry: StageSpec = dc_field(default_factory=lambda: StageSpec(
        steps=15000, method="sds", guidance_scale=100.0, t_max=0.5, t_max_annealed=0.5,
        resolution_schedule=[[0, 512]], lambda_normal_consistency=1e4, lambda_laplacian=1e4))
    texture: StageSpec = dc_field(default_factory=lambda: StageSpec(
        steps=30000, method="vsd", resolution_schedule=[[0, 512]]))
    export: ExportSpec = dc_field(default_factory=ExportSpec)

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        return _to_plain(dataclasses.asdict(self))

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "JobSpec":
        problems: list[FieldProblem] = []
        spec = _build(cls, data, "", problems)
        if problems:  # report structural and value problems together, in one error
            try:
                spec.validate()
            except SpecError as exc:
                problems.extend(p for p in exc.problems if p.field not in {q.field for q in problems})
            except Exception:  # values too malformed to range-check; the structural list stands
                pass
            raise SpecError(problems)
        return spec

    @classmethod
    def from_json(cls, text: str) -> "JobSpec":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SpecError([FieldProblem("<json>", text[:80], f"valid JSON ({exc.msg})")]) from exc
        if not isinstance(data, dict):
            raise SpecError([FieldProblem("<json>", type(data).__name__, "a JSON object")])
        return cls.from_dict(data)

    # ------------------------------------------------------------ validation
    def validate(self) -> "JobSpec":
        """Raise SpecError naming every bad field, its value and the allowed range."""
        problems: list[FieldProblem] = []
        chk = _Checker(problems)
        chk.one_of("mode", self.mode, ("text", "retexture"))
        chk.int_range("seed", self.seed, 0, 2**63 - 1)
        chk.int_range("particles", self.particles, 1, 16)
        chk.prior("prior", self.prior)
        for name in ("model", "phi_model"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, str) and value.strip()):
                problems.append(FieldProblem(name, value, "null, or a model id or folder path"))
        chk.one_of("device", self.device.split(":")[0], ("auto", "cpu", "cuda", "mps"))
        if not isinstance(self.input_mesh_decimate, bool):
            problems.append(FieldProblem("input_mesh_decimate", self.input_mesh_decimate, "true or false"))
        if self.mode == "retexture" and not self.input_mesh:
            problems.append(FieldProblem("input_mesh", self.input_mesh,
                                         "a mesh path (GLB/OBJ/PLY) when mode is 'retexture'"))
        if self.prior == "sd" and not self.prompt.strip():
            problems.append(FieldProblem("prompt", self.prompt, "a non-empty text prompt for the sd prior"))
        if len(self.prompt) > 1000:
            problems.append(FieldProblem("prompt", self.prompt[:40] + "…", "at most 1000 characters"))
        c = self.camera
        chk.ordered_range("camera.elevation_deg", c.elevation_deg, -89.9, 89.9)
        chk.ordered_range("camera.azimuth_deg", c.azimuth_deg, -360.0, 360.0)
        if isinstance(c.azimuth_deg, (list, tuple)) and len(c.azimuth_deg) == 2 and \
                _num(c.azimuth_deg[1]) and _num(c.azimuth_deg[0]) and c.azimuth_deg[1] - c.azimuth_deg[0] > 360.0:
            problems.append(FieldProblem("camera.azimuth_deg", list(c.azimuth_deg), "a span of at most 360°"))
        chk.ordered_range("camera.distance", c.distance, 0.05, 100.0)
        chk.ordered_range("camera.fov_deg", c.fov_deg, 5.0, 150.0)
        chk.float_range("camera.eval_elevation_deg", c.eval_elevation_deg, -89.9, 89.9)
        chk.float_range("camera.eval_distance", c.eval_distance, 0.05, 100.0)
        chk.float_range("camera.eval_fov_deg", c.eval_fov_deg, 5.0, 150.0)
        chk.int_range("camera.eval_views", c.eval_views, 1, 360)
        f = self.field
        chk.int_range("field.levels", f.levels, 1, 32)
        chk.int_range("field.features_per_level", f.features_per_level, 1, 8)
        chk.int_range("field.log2_table_size", f.log2_table_size, 8, 24)
        chk.int_range("field.base_resolution", f.base_resolution, 2, 512)
        chk.float_range("field.growth", f.growth, 1.0, 4.0)
        chk.int_range("field.hidden", f.hidden, 8, 512)
        chk.one_of("field.blob", f.blob, ("object", "scene"))
        chk.one_of("field.background", f.background, ("network", "random_half", "white", "black"))
        chk.float_range("field.radius", f.radius, 0.1, 100.0)
        for name in ("nerf", "geometry", "texture"):
            _check_stage(chk, name, getattr(self, name))
        e = self.export
        chk.one_of("export.texture_size", e.texture_size, (256, 512, 1024, 2048, 4096))
        chk.int_range("export.face_target", e.face_target, 100, 5_000_000)
        for fmt in e.formats if isinstance(e.formats, list) else [e.formats]:
            chk.one_of("export.formats", fmt, ("glb", "obj"))
        chk.float_range("export.unwrap_timeout_s", e.unwrap_timeout_s, 1.0, 86400.0)
        if problems:
            raise SpecError(problems)
        return self


def _check_stage(chk: "_Checker", name: str, s: StageSpec) -> None:
    chk.int_range(f"{name}.steps", s.steps, 0, 1_000_000)
    chk.one_of(f"{name}.method", s.method, ("vsd", "sds"))
    chk.int_range(f"{name}.batch_size", s.batch_size, 1, 64)
    chk.int_range(f"{name}.samples_per_ray", s.samples_per_ray, 4, 1024)
    chk.float_range(f"{name}.guidance_scale", s.guidance_scale, 0.0, 200.0)
    chk.float_range(f"{name}.guidance_scale_phi", s.guidance_scale_phi, 0.0, 20.0)
    chk.float_range(f"{name}.t_min", s.t_min, 0.0, 1.0)
    chk.float_range(f"{name}.t_max", s.t_max, 0.0, 1.0)
    chk.float_range(f"{name}.t_max_annealed", s.t_max_annealed, 0.0, 1.0)
    if _num(s.t_min) and _num(s.t_max) and s.t_min >= s.t_max:
        chk.problems.append(FieldProblem(f"{name}.t_max", s.t_max, f"greater than t_min ({s.t_min})"))
    chk.int_range(f"{name}.anneal_step", s.anneal_step, 0, 10_000_000)
    chk.one_of(f"{name}.t_schedule", s.t_schedule, ("two_stage", "sqrt"))
    for lr in ("lr_grid", "lr_mlp", "lr_background", "lr_phi", "lr_geometry"):
        chk.float_range(f"{name}.{lr}", getattr(s, lr), 0.0, 1.0)
    chk.float_range(f"{name}.phi_camera_dropout", s.phi_camera_dropout, 0.0, 1.0)
    chk.int_range(f"{name}.preview_every", s.preview_every, 1, 1_000_000)
    chk.int_range(f"{name}.checkpoint_every", s.checkpoint_every, 1, 1_000_000)
    chk.one_of(f"{name}.grid_resolution", s.grid_resolution, (32, 64, 128, 256))
    sched = s.resolution_schedule
    ok = isinstance(sched, list) and len(sched) > 0 and all(
        isinstance(e, (list, tuple)) and len(e) == 2 and all(isinstance(v, int) and not isinstance(v, bool) for v in e)
        for e in sched)
    if ok:
        steps = [e[0] for e in sched]
        ok = steps[0] == 0 and steps == sorted(steps) and all(16 <= e[1] <= 1024 for e in sched)
    if not ok:
        chk.problems.append(FieldProblem(f"{name}.resolution_schedule", sched,
                                         "[[0, res], [step, res], ...] with increasing steps and 16 ≤ res ≤ 1024"))


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@dataclass
class _Checker:
    problems: list[FieldProblem]

    def one_of(self, name: str, value: Any, allowed: tuple) -> None:
        if value not in allowed:
            self.problems.append(FieldProblem(name, value, "one of " + ", ".join(map(repr, allowed))))

    def int_range(self, name: str, value: Any, lo: int, hi: int) -> None:
        if not (isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi):
            self.problems.append(FieldProblem(name, value, f"an integer in [{lo}, {hi}]"))

    def float_range(self, name: str, value: Any, lo: float, hi: float) -> None:
        if not (_num(value) and lo <= value <= hi):
            self.problems.append(FieldProblem(name, value, f"a number in [{lo}, {hi}]"))

    def ordered_range(self, name: str, value: Any, lo: float, hi: float) -> None:
        if not (isinstance(value, (list, tuple)) and len(value) == 2 and all(_num(v) for v in value)
                and lo <= value[0] <= value[1] <= hi):
            self.problems.append(FieldProblem(name, value, f"[min, max] with {lo} ≤ min ≤ max ≤ {hi}"))

    def prior(self, name: str, value: Any) -> None:
        ok = isinstance(value, str) and (value == "sd" or value.startswith("sd:") or value.startswith("analytic:")
                                         or value == "tiny-sd" or value == "sd21-random")
        if not ok:
            self.problems.append(FieldProblem(
                name, value, "'sd', 'tiny-sd', 'sd21-random' or 'analytic:<scene>[,<scene>...]' (e.g. analytic:marker)"))


# ----------------------------------------------------------------- helpers
def _to_plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_plain(v) for v in obj]
    return obj


def _build(cls: type, data: Any, prefix: str, problems: list[FieldProblem]) -> Any:
    """Build dataclass `cls` from a dict, recording unknown keys and non-dict sections."""
    if not isinstance(data, dict):
        problems.append(FieldProblem(prefix.rstrip(".") or "<root>", data, "a JSON object"))
        return cls()
    known = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in known:
            problems.append(FieldProblem(prefix + key, value, "not a known field (check spelling)"))
            continue
        sub = _SECTION_TYPES.get((cls.__name__, key))
        if sub is not None:
            kwargs[key] = _build(sub, value, prefix + key + ".", problems)
        elif isinstance(value, list) and key.endswith(("_deg", "distance")) and len(value) == 2:
            kwargs[key] = tuple(value)
        else:
            kwargs[key] = value
    return cls(**kwargs)


_SECTION_TYPES: dict[tuple[str, str], type] = {
    ("JobSpec", "camera"): CameraSpec,
    ("JobSpec", "field"): FieldSpec,
    ("JobSpec", "nerf"): StageSpec,
    ("JobSpec", "geometry"): StageSpec,
    ("JobSpec", "texture"): StageSpec,
    ("JobSpec", "export"): ExportSpec,
}
