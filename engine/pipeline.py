"""run_job: a validated JobSpec in, a run folder with results out, typed events along the way.

The stages come from engine/stage_table.py in order (text: nerf → geometry → texture; retexture:
texture), then export. Each stage resumes from its newest checkpoint, so calling run_job again
on the same folder continues an interrupted job, and a finished stage is not redone.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import torch

from . import accel
from .context import JobContext, resolve_device
from .events import Artifact, Done, EventSink
from .run_dir import RunDir
from .spec import JobSpec
from .stage_loop import Stage, run_stage
from .stage_table import stages_for


class JobStage(Protocol):
    """What the pipeline needs of a stage class named in the stage table, besides the Stage loop API."""

    @classmethod
    def for_job(cls, ctx: JobContext, earlier: dict[str, Stage]) -> Stage:
        """Build the stage from the stages that ran before it in this job (by name)."""

    def results(self) -> dict[str, Any]:
        """Its entries of the job result (evaluation figures, contact sheets)."""


def run_job(spec: JobSpec, run_dir: Path | str, emit: EventSink,
            should_stop: Callable[[], bool] = lambda: False) -> dict[str, Any]:
    spec.validate()
    run = RunDir(Path(run_dir)).create()
    if not run.spec_path.exists():
        run.write_spec(spec)
    ctx = JobContext(spec, run, emit, should_stop, resolve_device(spec.device))
    if spec.nerf.enabled and any(e.name == "nerf" for e in stages_for(spec.mode)):
        accel.load_nerfacc(ctx.device.type, ctx.log)  # a first-use kernel build is announced, not silent
    torch.manual_seed(spec.seed)
    started = time.perf_counter()
    result: dict[str, Any] = {"run_dir": str(run.root), "prior": spec.prior, "device": str(ctx.device)}
    result.update(run_stages(ctx))
    result["seconds"] = time.perf_counter() - started
    metrics_path = run.write_json("result/metrics.json", result)
    emit(Artifact(metrics_path.name, str(metrics_path), metrics_path.stat().st_size, role="metrics"))
    emit(Done(result))
    return result


def run_stages(ctx: JobContext, earlier: dict[str, Stage] | None = None) -> dict[str, Any]:
    """Build, run (when enabled) and report every stage of the job's mode, then export the last.

    `earlier` holds stages already built by the caller (they are neither rebuilt nor reported).
    The first stage is always built (its evaluation is the job's result); the rest only when some
    later stage or the export is enabled, since each later stage starts from the one before."""
    from .stages.export import export_texture_stage  # imports the mesh tool chain
    spec = ctx.spec
    built: dict[str, Stage] = dict(earlier or {})
    entries = stages_for(spec.mode)
    goes_on = spec.export.enabled or any(getattr(spec, e.name).enabled for e in entries[1:])
    out: dict[str, Any] = {}
    for i, entry in enumerate(entries):
        if entry.name in built:
            continue
        if i > 0 and not goes_on:
            return out
        cls: type[JobStage] = entry.load_class()
        stage = cls.for_job(ctx, {n: built[n] for n in entry.needs if n in built})
        if getattr(spec, entry.name).enabled:
            run_stage(ctx, stage)
        out.update(stage.results())
        built[entry.name] = stage
    if spec.export.enabled:
        out["export"] = export_texture_stage(ctx, built[entries[-1].name])
    return out
