"""Ray geometry shared by the render paths."""
from __future__ import annotations

import torch


def sphere_intersect(o: torch.Tensor, d: torch.Tensor, radius: float) -> tuple[torch.Tensor, ...]:
    """Entry/exit distances (clamped to ≥ 0, so a camera inside sees from 0) and a hit mask."""
    b = (o * d).sum(-1)
    c = (o * o).sum(-1) - radius * radius
    disc = b * b - c
    root = disc.clamp_min(0).sqrt()
    t0 = (-b - root).clamp_min(0.0)
    t1 = -b + root
    return t0, t1, (disc > 0) & (t1 > t0)
