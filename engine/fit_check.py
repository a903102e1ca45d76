"""Fit check: will this job fit this device, and how long will it take — said before it starts.

Why: a VSD run that runs out of memory an hour in wastes the hour. The memory model is the one
behind `vsdream bench memory` (engine/bench/memory.py: the real modules under FakeTensorMode, SD-2.1's
architecture in fp16), run once per configuration and cached in a small JSON file, since it takes
tens of seconds on a CPU. The time is steps × a per-iteration cost calibrated once per device and
cached: on CUDA a real stage-1 step (bench step); on a CPU or MPS a real step would itself take
minutes, so the cost there is the step's counted FLOPs over this device's measured matmul rate — a
lower bound, said as such. Priors without Stable Diffusion weights (the analytic prior) have no GPU
memory model: the check says so and costs nothing.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .spec import JobSpec
from .stage_table import stages_for

GIB = 2 ** 30
# the CUDA context and cuBLAS/cuDNN workspaces live outside PyTorch's count (bench/memory.py's
# docstring: ~0.3–0.6 GB): kept free on top of the estimate
CUDA_RESERVE_GB = 0.6
CACHE_VERSION = 1
# the occupancy probe's render side, as `vsdream bench memory` defaults it
PROBE_RESOLUTION = 64


@dataclass
class DeviceInfo:
    """The device a job would run on; memory in GB. On a CPU (and on Apple's MPS, whose GPU shares the
    system memory) `total_gb`/`free_gb` are system RAM: that is where the job's tensors live."""

    kind: str  # "cuda" | "mps" | "cpu"
    name: str
    total_gb: float | None
    free_gb: float | None
    memory: str  # what total/free measure


@dataclass
class Suggestion:
    """A setting that fits, verified with the same estimator: `preset` (when not None) rebuilt with the
    job's prompt, seed, particles and prior, then `overrides` applied (what a one-click fix sends);
    `cli` the same as `vsdream run` arguments."""

    label: str
    overrides: dict[str, Any]
    cli: str
    peak_gb: float
    preset: str | None = None


@dataclass
class FitCheck:
    device: DeviceInfo
    memory_model: str  # what the estimate accounts, or why there is none
    peak_gb: float | None  # estimated peak of the job on this device (None: no model)
    stage_peaks_gb: dict[str, float] = field(default_factory=dict)
    fits: bool | None = None  # None: not checked (no model, or free memory unknown)
    seconds: float | None = None  # estimated wall-clock of all stages (None: no model)
    seconds_are_lower_bound: bool = False
    time_note: str = ""
    suggestions: list[Suggestion] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[str]:
        """What `vsdream run` prints before starting."""
        d = self.device
        mem = f"{d.free_gb:.1f} GB free of {d.total_gb:.1f} GB {d.memory}" if d.free_gb is not None else \
            f"free memory unknown ({d.memory})"
        out = [f"device: {d.name} ({d.kind}), {mem}"]
        if self.peak_gb is None:
            out.append(f"memory: {self.memory_model}")
        else:
            verdict = {True: "fits", False: "does NOT fit", None: "not checked"}[self.fits]
            per = ", ".join(f"{k} {v:.1f}" for k, v in self.stage_peaks_gb.items())
            out.append(f"memory: estimated peak {self.peak_gb:.1f} GB ({per}) — {verdict}; {self.memory_model}")
        if self.seconds is not None:
            out.append(f"time: {'at least ' if self.seconds_are_lower_bound else 'about '}"
                       f"{format_duration(self.seconds)}; {self.time_note}")
        elif self.time_note:
            out.append(f"time: {self.time_note}")
        for s in self.suggestions:
            out.append(f"  fits: {s.label} (peak {s.peak_gb:.1f} GB): {s.cli}")
        return out


def format_duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:.1f} hours"
    return f"{seconds / 86400:.1f} days"


# ------------------------------------------------------------------ device
def device_info(device: str = "auto", free_gb: float | None = None) -> DeviceInfo:
    """The device `device` resolves to here, with its memory. `free_gb` replaces the measured free
    memory (a test, or a scheduler that knows better)."""
    import torch

    from .context import mps_available
    from .devices import pick_device
    name = pick_device(device, torch.cuda.is_available(), mps_available(), torch.cuda.device_count())
    kind = name.partition(":")[0]
    if kind == "cuda":
        index = int(name.partition(":")[2] or torch.cuda.current_device())
        free, total = torch.cuda.mem_get_info(index)
        info = DeviceInfo("cuda", torch.cuda.get_device_name(index), total / GIB, free / GIB, "GPU memory")
    else:
        total_b, free_b = _system_memory()
        what = "system RAM (Apple GPUs share it)" if kind == "mps" else "system RAM (a CPU job's tensors live there)"
        label = "Apple GPU (MPS)" if kind == "mps" else _cpu_name()
        info = DeviceInfo(kind, label, None if total_b is None else total_b / GIB,
                          None if free_b is None else free_b / GIB, what)
    if free_gb is not None:
        info.free_gb = float(free_gb)
    return info


def _system_memory() -> tuple[int | None, int | None]:
    try:
        import psutil
    except ImportError:
        return None, None
    vm = psutil.virtual_memory()
    return int(vm.total), int(vm.available)


def _cpu_name() -> str:
    import platform
    return f"CPU {platform.processor() or platform.machine()} ({os.cpu_count() or '?'} threads)".replace("  ", " ")


# ------------------------------------------------------------------ cache
def default_cache_path() -> Path:
    """VSDREAM_CACHE_DIR, else the platform's user cache folder, + fit_check.json."""
    env = os.environ.get("VSDREAM_CACHE_DIR")
    if env:
        base = Path(env)
    elif sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local")) / "vsdream"
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches" / "vsdream"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "vsdream"
    return base / "fit_check.json"


class _Cache:
    """{key: value} in one JSON file; an unreadable file is started afresh (it only holds estimates)."""

    def __init__(self, path: Path | None):
        self.path = path
        self.data: dict[str, Any] = {}
        if path is not None and path.is_file():
            try:
                raw = json.loads(path.read_text(encoding="utf-8"))
                if isinstance(raw, dict) and raw.get("version") == CACHE_VERSION:
                    self.data = raw.get("entries", {})
            except (OSError, ValueError):
                self.data = {}

    def get(self, key: str) -> Any:
        return self.data.get(key)

    def put(self, key: str, value: Any) -> None:
        self.data[key] = value
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"version": CACHE_VERSION, "entries": self.data}), encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError:
            pass  # a read-only cache folder costs speed, not correctness


def _model_version() -> str:
    """The estimator's own source: a changed memory model invalidates every cached estimate."""
    src = Path(__file__).with_name("bench") / "memory.py"
    return hashlib.sha256(src.read_bytes()).hexdigest()[:12]


# ------------------------------------------------------------------ memory
def memory_model(spec: JobSpec) -> str | None:
    """The random-weight architecture the estimator builds for this spec's prior (None: none fits).
    Every 'sd' prior is accounted as SD-2.1 (the prior's default model); tiny-sd as itself."""
    if spec.prior in ("sd21-random", "tiny-sd"):
        return spec.prior
    if spec.prior == "sd" or spec.prior.startswith("sd:"):
        return "sd21-random"
    return None


def _stages(spec: JobSpec) -> list[str]:
    return [e.name for e in stages_for(spec.mode) if getattr(spec, e.name).enabled]


def memory_key(spec: JobSpec, model: str) -> str:
    """What the peak depends on: the architecture, ε_φ's base, particles, the field and cameras (the
    occupancy probe), and per stage its method, largest resolution, batch, samples and CFG."""
    stages = {}
    for name in _stages(spec):
        s = getattr(spec, name)
        stages[name] = [s.method, max(r for _, r in s.resolution_schedule), s.batch_size, s.samples_per_ray,
                        s.importance_samples, s.guidance_scale != 1.0, s.grid_resolution if name == "geometry" else 0]
    key = {"v": _model_version(), "model": model, "phi": spec.phi_model, "particles": spec.particles,
           "field": asdict(spec.field), "stages": stages,
           # the training cameras decide the probe's occupancy; the held-out orbit (eval_*) does not
           "camera": {k: v for k, v in asdict(spec.camera).items() if not k.startswith("eval_")}}
    return "mem:" + hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:24]


def stage_peaks(spec: JobSpec, model: str, cache: _Cache) -> dict[str, float]:
    """Peak GB per stage (stage 1: the larger of its step and its preview), fp16 weights; cached."""
    key = memory_key(spec, model)
    hit = cache.get(key)
    if hit is not None:
        return hit
    from .bench.memory import estimate
    r = estimate(spec, [spec.particles], model, PROBE_RESOLUTION, _stages(spec))
    peaks = {s["stage"]: round(max(s["peak_gb"], s.get("preview_peak_gb", 0.0)), 3) for s in r["stages"]}
    cache.put(key, peaks)
    return peaks


def _fp32_factor(spec: JobSpec, kind: str) -> float:
    """The estimate counts the frozen models in fp16; where they run in fp32 (every CPU, precision
    fp32) twice the estimate bounds the peak from above (the field and LoRA are fp32 either way)."""
    from .devices import precision_for
    try:
        return 2.0 if precision_for(kind, spec.precision) == "fp32" else 1.0
    except ValueError:
        return 1.0


# ------------------------------------------------------------------ time
def _matmul_flops_per_s(kind: str, device: str) -> float:
    """This device's measured dense matmul rate (FLOP/s) in the dtype the frozen models use there."""
    import torch
    dtype = torch.float32 if kind == "cpu" else torch.float16
    n = 1024 if kind == "cpu" else 4096
    a = torch.randn(n, n, dtype=dtype, device=device)
    b = torch.randn(n, n, dtype=dtype, device=device)

    def sync() -> None:
        if kind == "mps":
            torch.mps.synchronize()

    a @ b
    sync()
    reps, t0 = 3, time.perf_counter()
    for _ in range(reps):
        a @ b
    sync()
    return 2 * n ** 3 * reps / max(time.perf_counter() - t0, 1e-9)


def seconds_per_step(spec: JobSpec, model: str, info: DeviceInfo, device: str, cache: _Cache) -> tuple[float, bool, str]:
    """(seconds per iteration, lower bound?, how it was found); calibrated once per device, cached."""
    key = f"time:{info.kind}:{info.name}:{model}:{spec.phi_model}"
    hit = cache.get(key)
    if hit is not None:
        return hit["s"], hit["lower"], hit["how"]
    if info.kind == "cuda":
        import torch

        from .bench.step import run_bench
        r = run_bench("tiny" if model == "tiny-sd" else "sd21-random", 64, torch.device(device), iters=3, warmup=1,
                      phi_model=spec.phi_model)
        value = {"s": r["ms_per_iter"] / 1000, "lower": False,
                 "how": f"a real stage-1 step measured on this GPU ({r['ms_per_iter']:.0f} ms at 64²; larger "
                        "renders add the field's share)"}
    else:
        from .bench.step import diffusion_flops
        tflop = diffusion_flops("tiny" if model == "tiny-sd" else "sd21", 64)["tflop"]["total"]
        rate = _matmul_flops_per_s(info.kind, device)
        value = {"s": tflop * 1e12 / rate, "lower": True,
                 "how": f"each step runs the UNet four times (CFG pair, ε_φ, its training) and the VAE encoder with "
                        f"its backward at the model's native size: {tflop:.3g} TFLOP, and this {info.kind.upper()} "
                        f"multiplies at {rate / 1e9:.0f} GFLOP/s"}
    cache.put(key, value)
    return value["s"], value["lower"], value["how"]


# ------------------------------------------------------------------ check
def fit_check(spec: JobSpec, free_gb: float | None = None, cache_path: Path | None = None,
              suggest: bool = True, time_estimate: bool = True) -> FitCheck:
    """The device, the estimated peak and time of `spec` on it, and — when it does not fit — settings
    that do (each verified with the same estimator). `free_gb` overrides the measured free memory."""
    import torch

    from .context import mps_available
    from .devices import pick_device
    device = pick_device(spec.device, torch.cuda.is_available(), mps_available(), torch.cuda.device_count())
    info = device_info(spec.device, free_gb)
    model = memory_model(spec)
    if model is None:
        return FitCheck(info, f"no GPU model to estimate (prior {spec.prior!r} has no Stable Diffusion weights)",
                        None, time_note="not estimated: no per-step model for this prior")
    cache = _Cache(default_cache_path() if cache_path is None else cache_path)
    factor = _fp32_factor(spec, info.kind)
    reserve = CUDA_RESERVE_GB if info.kind == "cuda" else 0.0
    peaks = {k: round(v * factor + reserve, 2) for k, v in stage_peaks(spec, model, cache).items()}
    peak = max(peaks.values(), default=0.0)
    arch = "SD-2.1's architecture" if model == "sd21-random" else model
    how = f"{arch}, frozen models in fp16" + (" ×2 (they run in fp32 here)" if factor > 1 else "") + \
          (f", + {CUDA_RESERVE_GB} GB CUDA context" if reserve else "")
    result = FitCheck(info, how, peak, peaks, None if info.free_gb is None else peak <= info.free_gb)
    if time_estimate:
        per, lower, how_t = seconds_per_step(spec, model, info, device, cache)
        steps = sum(getattr(spec, name).steps for name in _stages(spec))
        result.seconds, result.seconds_are_lower_bound = per * steps, lower
        note = f"{steps} steps × {per:.3g} s ({how_t})"
        if info.kind == "cpu" and result.seconds >= 3600:
            note = f"on a CPU this takes hours: {note}; a CUDA GPU does the same step in well under a second"
        result.time_note = note
    if result.fits is False and suggest:
        result.suggestions = suggestions(spec, info.free_gb, factor, reserve, model, cache)
    return result


def _fits(spec: JobSpec, free: float, factor: float, reserve: float, model: str, cache: _Cache) -> float | None:
    peak = max(v * factor + reserve for v in stage_peaks(spec, model, cache).values())
    return round(peak, 2) if peak <= free else None


def apply_suggestion(spec: JobSpec, suggestion: Suggestion) -> JobSpec:
    """The job as the suggestion changes it (the one-click fix)."""
    return _with(_with(spec, {}, suggestion.preset) if suggestion.preset else spec, suggestion.overrides)


def _with(spec: JobSpec, overrides: dict[str, Any], preset: str | None = None) -> JobSpec:
    from .presets import _deep_merge, make_spec
    if preset is None:
        return JobSpec.from_dict(_deep_merge(spec.to_dict(), json.loads(json.dumps(overrides)))).validate()
    keep = {k: getattr(spec, k) for k in ("prompt", "negative_prompt", "seed", "mode", "particles", "prior",
                                          "model", "device", "input_mesh", "precision")}
    return make_spec(preset, keep)


def suggestions(spec: JobSpec, free: float, factor: float, reserve: float, model: str,
                cache: _Cache) -> list[Suggestion]:
    """Settings that fit `free` GB: the low-vram preset, fewer particles, a lower final resolution —
    each alone, in that order, each verified with the same estimator (their estimates are cached too)."""
    from .presets import text_presets
    out: list[Suggestion] = []
    if spec.preset in text_presets() and spec.preset != "low-vram":  # low-vram is paper made small
        low = _with(spec, {}, "low-vram")
        peak = _fits(low, free, factor, reserve, model, cache)
        if peak is not None:
            out.append(Suggestion("the low-vram preset", {}, "--preset low-vram", peak, preset="low-vram"))
    for n in range(spec.particles - 1, 0, -1):
        peak = _fits(_with(spec, {"particles": n}), free, factor, reserve, model, cache)
        if peak is not None:
            out.append(Suggestion(f"{n} particle{'s' if n > 1 else ''}", {"particles": n}, f"--particles {n}", peak))
            break
    names = _stages(spec)
    final = max(max(r for _, r in getattr(spec, n).resolution_schedule) for n in names) if names else 0
    res = final // 2
    while res >= 64:
        over: dict[str, Any] = {}
        for n in names:
            sched = [[step, min(r, res)] for step, r in getattr(spec, n).resolution_schedule]
            if sched != getattr(spec, n).resolution_schedule:
                over[n] = {"resolution_schedule": sched}
        peak = _fits(_with(spec, over), free, factor, reserve, model, cache) if over else None
        if peak is not None:
            cli = " ".join(f"--set {n}.resolution_schedule={json.dumps(v['resolution_schedule'], separators=(',', ':'))}"
                           for n, v in over.items())
            out.append(Suggestion(f"final resolution {res}²", over, cli, peak))
            break
        res //= 2
    return out
