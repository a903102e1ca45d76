"""Build a prior from the spec's `prior` string: 'analytic:<scene>[,<scene>…]', 'sd', 'tiny-sd', 'sd21-random'."""
from __future__ import annotations

import torch

from ..spec import JobSpec
from .base import Prior


def load_prior(spec: JobSpec, device: torch.device) -> Prior:
    name = spec.prior
    if name.startswith("analytic:"):
        from .analytic import AnalyticPrior
        return AnalyticPrior.from_name(name.split(":", 1)[1], device=device)
    if name in ("sd", "tiny-sd", "sd21-random") or name.startswith("sd:"):
        from .sd import StableDiffusionPrior
        return StableDiffusionPrior.from_spec(spec, device=device)
    raise ValueError(f"unknown prior {name!r}")
