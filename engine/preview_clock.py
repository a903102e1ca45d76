"""When a stage shows a preview: by time as well as by steps, so a slow machine is never silent.

On a CPU a step can take seconds, so "every 50 steps" meant minutes before the first picture. The
clock makes the first preview come `first_s` after the stage starts (or resumes), then at least every
`every_s` seconds; the step cadence (`every_steps`) still applies, and the last step always shows one.
"""
from __future__ import annotations

from dataclasses import dataclass, field

FIRST_PREVIEW_S = 10.0


@dataclass
class PreviewClock:
    every_steps: int
    every_s: float  # 0: by steps only
    first_s: float = FIRST_PREVIEW_S
    started: float = 0.0  # the stage's start, on the caller's clock (time.perf_counter)
    _last: float | None = field(default=None, init=False)

    def due(self, done: int, total: int, now: float) -> bool:
        """Whether step `done` (1-based count of finished steps) should end with a preview."""
        if done == total or (self.every_steps > 0 and done % self.every_steps == 0):
            return True
        if self.every_s <= 0:
            return False
        if self._last is None:
            return now - self.started >= min(self.first_s, self.every_s)
        return now - self._last >= self.every_s

    def shown(self, now: float) -> None:
        """A preview was just emitted: the time cadence restarts from here."""
        self._last = now
