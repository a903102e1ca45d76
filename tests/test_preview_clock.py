"""Previews by time as well as by steps: a slow machine shows its first picture within seconds."""
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from engine.context import JobContext
from engine.events import Preview
from engine.presets import make_spec
from engine.preview_clock import FIRST_PREVIEW_S, PreviewClock
from engine.run_dir import RunDir
from engine.stage_loop import PreviewImages, Stage, preview_interval, run_stage


def test_clock_first_preview_then_every_interval():
    clock = PreviewClock(every_steps=1000, every_s=30.0, started=100.0)
    assert not clock.due(1, 500, 100.0 + FIRST_PREVIEW_S - 0.1)
    assert clock.due(2, 500, 100.0 + FIRST_PREVIEW_S)  # the first one ~10 s in, whatever the step
    clock.shown(110.0)
    assert not clock.due(3, 500, 139.9)
    assert clock.due(4, 500, 140.0)  # then every 30 s
    assert clock.due(1000, 5000, 111.0)  # the step cadence still applies
    assert clock.due(500, 500, 111.0)  # and the last step always shows one


def test_clock_short_interval_and_steps_only():
    fast = PreviewClock(every_steps=1000, every_s=2.0, started=0.0)
    assert fast.due(1, 10, 2.0)  # an interval under 10 s also brings the first preview forward
    steps_only = PreviewClock(every_steps=50, every_s=0.0, started=0.0)
    assert not steps_only.due(7, 400, 1e6) and steps_only.due(50, 400, 0.0)


class SlowStage(Stage):
    """A stage on a slow machine: 40 ms a step, a state that checkpoints for real."""

    name = "slow"

    def __init__(self, total: int, interval_s: float):
        self.total, self.preview_every, self.checkpoint_every = total, 1_000_000, 1_000_000
        self.preview_interval_s = interval_s
        self.value = 0.0

    def step(self, step: int) -> dict[str, float]:
        time.sleep(0.04)
        self.value += 1.0
        return {"loss": 1.0 / (1.0 + self.value)}

    def preview(self, step: int) -> PreviewImages:
        return PreviewImages(np.full((4, 6, 3), step % 256, np.uint8))

    def state_dict(self) -> dict[str, Any]:
        return {"value": self.value}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.value = state["value"]


def _run(tmp_path, interval_s: float, steps: int = 40):
    events: list = []
    ctx = JobContext(make_spec("cpu-smoke"), RunDir(tmp_path / f"run{interval_s}").create(), events.append)
    t0 = time.perf_counter()
    run_stage(ctx, SlowStage(steps, interval_s))
    return [e for e in events if isinstance(e, Preview)], time.perf_counter() - t0


def test_stage_loop_previews_by_time_not_only_by_steps(tmp_path):
    previews, elapsed = _run(tmp_path, 0.3)
    steps = [p.step for p in previews]
    assert steps[-1] == 40 and len(steps) >= 3, steps  # previews mid-stage though preview_every is 1e6
    assert len(steps) <= elapsed / 0.3 + 2, (steps, elapsed)  # not more often than the interval
    assert all((p.width, p.height) == (6, 4) and Path(p.path).is_file() for p in previews)
    by_steps, _ = _run(tmp_path, 0.0, steps=5)
    assert [p.step for p in by_steps] == [5]  # 0 s: the step cadence alone (only the last step here)


def test_stage_spec_interval_reaches_the_loop():
    spec = make_spec("cpu-smoke", {"texture": {"preview_interval_s": 7.5}})
    assert spec.nerf.preview_interval_s == 30.0 and spec.texture.preview_interval_s == 7.5
    assert preview_interval(SimpleNamespace(cfg=spec.texture, preview_interval_s=0.0)) == 7.5
    assert preview_interval(SlowStage(1, 2.0)) == 2.0  # a stage without a spec section keeps its own


def test_spec_field_is_checked():
    from engine.spec import SpecError
    with pytest.raises(SpecError, match="nerf.preview_interval_s"):
        make_spec("cpu-smoke", {"nerf": {"preview_interval_s": -1.0}})
