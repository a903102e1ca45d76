"""The one loop every optimisation stage runs in: resume, step, report, preview, checkpoint, stop.

A stage only knows how to take one step, draw a preview and (de)serialise its state; this loop
owns the cadence, timing, events, atomic checkpoints and cooperative cancel, so every stage
behaves the same to the CLI, the server and the Blender add-on.
"""
from __future__ import annotations

import abc
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .checkpoint import CheckpointStore
from .context import JobContext
from .errors import JobCancelled
from .events import Preview, Progress, StageStarted
from .preview import save_png
from .preview_clock import PreviewClock

PROGRESS_INTERVAL_S = 0.25  # coalesce progress events; the last step is always reported


@dataclass
class PreviewImages:
    rgb: np.ndarray  # (H, W, 3) uint8, top row first
    normal: np.ndarray | None = None


class Stage(abc.ABC):
    """One optimisation stage: `total` steps of `step()`, with state that fully determines the rest."""

    name: str = "stage"
    total: int = 0
    preview_every: int = 100
    preview_interval_s: float = 0.0  # seconds; a stage with a StageSpec `cfg` takes cfg's value
    checkpoint_every: int = 500

    @abc.abstractmethod
    def step(self, step: int) -> dict[str, float]:
        """Run optimisation step `step` (0-based); return named losses."""

    @abc.abstractmethod
    def preview(self, step: int) -> PreviewImages:
        """Render a preview of the current state (cheap; no effect on the optimisation)."""

    @abc.abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: parameters, optimiser states, RNG states."""

    @abc.abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None:
        ...


def _gpu_mem_mb() -> float | None:
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return None


def run_stage(ctx: JobContext, stage: Stage,
              on_step: Callable[[int, dict[str, float]], None] | None = None) -> int:
    """Run `stage` to completion (or resume it); returns the step it resumed from.

    `on_step(step, losses)` sees every step's losses (progress events are coalesced)."""
    store = CheckpointStore(ctx.run.ckpt)
    start = 0
    ckpt = store.latest(stage.name, log=lambda m: ctx.log(m, "warning"))
    if ckpt is not None:
        stage.load_state_dict(ckpt.state)
        start = ckpt.step
        ctx.log(f"{stage.name}: resuming from {ckpt.path.name} (step {start}/{stage.total})")
    ctx.emit(StageStarted(stage.name, stage.total, resumed_from=start))
    t0 = time.perf_counter()
    last_report = 0.0
    clock = PreviewClock(stage.preview_every, preview_interval(stage), started=t0)
    for step in range(start, stage.total):
        if ctx.should_stop():
            path = store.save(stage.name, step, stage.state_dict())
            raise JobCancelled(stage.name, step, str(path))
        losses = stage.step(step)
        if on_step is not None:
            on_step(step, losses)
        done = step + 1
        now = time.perf_counter()
        rate = (done - start) / max(now - t0, 1e-9)
        if now - last_report >= PROGRESS_INTERVAL_S or done == stage.total:
            last_report = now
            ctx.emit(Progress(stage.name, done, stage.total, {k: float(v) for k, v in losses.items()},
                              it_per_s=rate, eta_s=(stage.total - done) / rate, gpu_mem_mb=_gpu_mem_mb()))
        if clock.due(done, stage.total, now):
            emit_preview(ctx, stage, done)
            clock.shown(time.perf_counter())
        if done % stage.checkpoint_every == 0 or done == stage.total:
            store.save(stage.name, done, stage.state_dict())
    if start >= stage.total and stage.total > 0:
        ctx.log(f"{stage.name}: already complete, skipping")
    return start


def preview_interval(stage: Stage) -> float:
    """Seconds between time-driven previews: the stage's spec section when it has one."""
    return float(getattr(getattr(stage, "cfg", None), "preview_interval_s", stage.preview_interval_s))


def emit_preview(ctx: JobContext, stage: Stage, step: int) -> None:
    with torch.no_grad():
        images = stage.preview(step)
    h, w = images.rgb.shape[:2]
    path = save_png(ctx.run.previews / f"{stage.name}-{step:08d}.png", images.rgb)
    normal = images.normal.tobytes() if images.normal is not None else None
    ctx.emit(Preview(stage.name, step, w, h, images.rgb.tobytes(), normal, str(path)))
