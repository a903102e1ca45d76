"""Is the texture a stage learned nearly flat? A short re-texture can finish "successfully" with one
grey colour everywhere; the user should hear why instead of a plain success.

The spread is the colour standard deviation over the mesh's vertices (mean of the RGB channels), taken
from the stage's colour fields, so it needs no baked texture and costs one field evaluation.
"""
from __future__ import annotations

from typing import Any

import torch

FLAT_STD = 0.02  # below this the texture reads as one colour (an untrained field is ~0.01)


def flat_texture_warning(std: float, steps: int, particle: int = 0) -> str | None:
    """The user-facing warning for a spread of `std` after `steps` texture steps, or None."""
    if std >= FLAT_STD:
        return None
    who = f"particle {particle}: " if particle else ""
    return (f"{who}the texture is nearly flat (colour spread {std:.3f} < {FLAT_STD}): most likely too few "
            f"texture steps ({steps}); raise texture.steps or pick a longer preset")


def albedo_spread(albedo_fn: Any, vertices: torch.Tensor, limit: int = 20000) -> float:
    """Mean per-channel standard deviation of the colour at (up to `limit` of) the vertices."""
    v = vertices[:: max(1, len(vertices) // limit)]
    with torch.no_grad():
        rgb = albedo_fn(v).float().reshape(-1, 3)
    return float(rgb.std(dim=0).mean()) if len(rgb) > 1 else 0.0


def check_texture(stage: Any) -> dict[str, Any]:
    """{'albedo_std': [...], 'warnings': [...]} for a texture stage (meshes, albedo_fn, cfg, ctx);
    each warning is also logged at level 'warning', which the add-on shows with the result."""
    stds, warnings = [], []
    for i, (v, _f) in enumerate(stage.meshes):
        std = albedo_spread(stage.albedo_fn(i), v)
        stds.append(round(std, 4))
        warning = flat_texture_warning(std, stage.total, i)
        if warning:
            warnings.append(warning)
            stage.ctx.log(warning, "warning")
    return {"albedo_std": stds, "warnings": warnings}
