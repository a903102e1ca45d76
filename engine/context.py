"""What every stage of a job shares: spec, run folder, device, event sink, stop flag, the prior."""
from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .devices import pick_device, pin_cuda_device
from .events import EventSink, Log
from .priors.base import Prior
from .run_dir import RunDir
from .spec import JobSpec


def mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(name: str) -> torch.device:
    """auto: CUDA, then Apple's MPS, then the CPU (engine/devices.py has the rules); a 'cuda:N' becomes
    the process's current CUDA device before anything is built on it (devices.pin_cuda_device)."""
    device = pick_device(name, torch.cuda.is_available(), mps_available(), torch.cuda.device_count())
    pin_cuda_device(device)
    return torch.device(device)


@dataclass
class JobContext:
    spec: JobSpec
    run: RunDir
    emit: EventSink
    should_stop: Callable[[], bool] = lambda: False
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    _prior: Prior | None = None

    def prior(self) -> Prior:
        """The diffusion prior, loaded once on first use (weights are expensive)."""
        if self._prior is None:
            from .priors.registry import load_prior
            self._prior = load_prior(self.spec, self.device)
        return self._prior

    def generator(self, stage: str) -> torch.Generator:
        """A CPU generator seeded from the job seed and the stage name: same spec + seed, same run."""
        g = torch.Generator()
        g.manual_seed((self.spec.seed * 1_000_003 + zlib.crc32(stage.encode())) % (2**63))
        return g

    def log(self, message: str, level: str = "info") -> None:
        self.emit(Log(level, message))
