"""Background colour behind the field: a tiny network on the ray direction, or a solid colour.

Replacing the learned background by a random solid colour half the time (DESIGN.md §3) stops the
optimiser from painting the object into the background: only geometry that is really there keeps
its colour under every backdrop.
"""
from __future__ import annotations

import torch
from torch import nn

from ..spec import StageSpec
from .radiance import mlp

MODES = ("network", "random_half", "white", "black")


def sh2_basis(dirs: torch.Tensor) -> torch.Tensor:
    """Real spherical harmonics up to degree 2 of unit dirs (9 values; normalisation constants dropped)."""
    x, y, z = dirs.unbind(-1)
    return torch.stack([torch.ones_like(x), y, z, x, x * y, y * z, 3 * z * z - 1, x * z, x * x - y * y], dim=-1)


class Background(nn.Module):
    """Direction (..., 3) → RGB (..., 3) in [0, 1]: degree-2 SH → 2×16 hidden → sigmoid."""

    def __init__(self, hidden: int = 16, gen: torch.Generator | None = None):
        super().__init__()
        self.net = mlp([9, hidden, hidden, 3], gen)

    def forward(self, dirs: torch.Tensor) -> torch.Tensor:
        dirs = dirs / dirs.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return torch.sigmoid(self.net(sh2_basis(dirs)))

    def param_groups(self, stage: StageSpec) -> list[dict]:
        return [{"name": "background", "params": list(self.parameters()), "lr": stage.lr_background}]


def choose_background(mode: str, dirs: torch.Tensor, net: Background | None,
                      gen: torch.Generator | None) -> torch.Tensor:
    """Background image (B, H, W, 3) for ray directions `dirs` (B, H, W, 3).

    "random_half": per batch element, a uniform random solid colour with probability 0.5, else the
    network. It always draws 4·B numbers from `gen` so the stream stays aligned across steps;
    with gen=None (evaluation, previews) it is the network.
    """
    if mode not in MODES:
        raise ValueError(f"field.background = {mode!r}: use one of {', '.join(MODES)}")
    if mode in ("white", "black"):
        return torch.full_like(dirs, 1.0 if mode == "white" else 0.0)
    if net is None:
        raise ValueError(f"background mode {mode!r} needs a Background network (got net=None)")
    if mode == "network" or gen is None:
        return net(dirs)
    b = dirs.shape[0]
    draws = torch.rand(b, 4, generator=gen, device=gen.device).to(dirs.device, dirs.dtype)
    solid = draws[:, None, None, :3].expand_as(dirs)
    use_solid = draws[:, 3] < 0.5
    if bool(use_solid.all()):
        return solid.contiguous()
    return torch.where(use_solid.view(b, 1, 1, 1), solid, net(dirs))
