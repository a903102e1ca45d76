"""run_job: a validated JobSpec in, a run folder with results out, typed events along the way.

Stages run in order (text: nerf → geometry → texture → export; retexture: texture → export). Each
stage resumes from its newest checkpoint, so calling run_job again on the same folder continues
an interrupted job, and a finished stage is not redone.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import torch

from .context import JobContext, resolve_device
from .events import Artifact, Done, EventSink
from .report import write_contact_sheet
from .run_dir import RunDir
from .spec import JobSpec
from .stage_loop import run_stage
from .stages.mesh_pipeline import run_mesh_stages, run_retexture
from .stages.nerf import NerfStage, resolution_at


def run_job(spec: JobSpec, run_dir: Path | str, emit: EventSink,
            should_stop: Callable[[], bool] = lambda: False) -> dict[str, Any]:
    spec.validate()
    run = RunDir(Path(run_dir)).create()
    if not run.spec_path.exists():
        run.write_spec(spec)
    ctx = JobContext(spec, run, emit, should_stop, resolve_device(spec.device))
    torch.manual_seed(spec.seed)
    started = time.perf_counter()
    result: dict[str, Any] = {"run_dir": str(run.root), "prior": spec.prior, "device": str(ctx.device)}
    if spec.mode == "text":
        nerf = NerfStage(ctx)
        if spec.nerf.enabled:
            run_stage(ctx, nerf)
        result["nerf"] = report_nerf(ctx, nerf)
        if spec.geometry.enabled or spec.texture.enabled or spec.export.enabled:
            result.update(run_mesh_stages(ctx, nerf))
    else:
        result.update(run_retexture(ctx))
    result["seconds"] = time.perf_counter() - started
    metrics_path = run.write_json("result/metrics.json", result)
    emit(Artifact(metrics_path.name, str(metrics_path), metrics_path.stat().st_size, role="metrics"))
    emit(Done(result))
    return result


def report_nerf(ctx: JobContext, nerf: NerfStage) -> dict[str, Any]:
    """Held-out evaluation of stage 1 and its contact sheet (one row per particle)."""
    res = resolution_at(nerf.cfg, max(nerf.total - 1, 0))
    metrics = nerf.evaluate(res)
    metrics["contact_sheet"] = write_contact_sheet(ctx, metrics.pop("images"), "contact_sheet.png")
    return metrics
