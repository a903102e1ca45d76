"""Per-phase wall-clock accounting for benchmarks (render, prior, ε_φ training, optimiser)."""
from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

import torch


class PhaseTimer:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.steps = 0

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        try:
            yield
        finally:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.seconds[name] += time.perf_counter() - t0

    def per_step_ms(self) -> dict[str, float]:
        n = max(self.steps, 1)
        return {k: 1000.0 * v / n for k, v in self.seconds.items()}
