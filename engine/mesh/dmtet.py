"""DMTet: a per-vertex SDF and a bounded per-vertex offset on a TetGrid, meshed by marching tets.

Offsets are `tanh(δ) · cell/2`, so a vertex never moves more than half a cell and tets stay
valid; with the [−1, 1] box this is threestudio's `tanh(δ)/res`. Both tensors are parameters of
the geometry stage and go into its checkpoint through `state_dict`.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .marching_tets import marching_tets
from .tetgrid import TetGrid


class DMTet(nn.Module):
    def __init__(self, grid: TetGrid, sdf: torch.Tensor | None = None, closed: bool = True):
        super().__init__()
        self.grid = grid
        self.register_buffer("base_vertices", grid.vertices())
        self.register_buffer("bbox_min", grid.bbox_min.clone())
        self.register_buffer("bbox_max", grid.bbox_max.clone())
        init = torch.zeros(grid.num_vertices) if sdf is None else sdf.detach().float().reshape(-1)
        self.sdf = nn.Parameter(init.clone().to(grid.device))
        self.deform = nn.Parameter(torch.zeros(grid.num_vertices, 3, device=grid.device))
        unit = (self.base_vertices - grid.bbox_min) / (grid.bbox_max - grid.bbox_min)
        # closed: the outermost layer counts as outside, so every extracted surface is closed (an
        # object). A scene's solid reaches the box: closing it would wrap the room in a shell no
        # camera sees, and where rays leave the scene (sky) the mesh should stay open
        self.register_buffer("closed", torch.tensor(bool(closed)))
        on_boundary = ((unit < 1e-6) | (unit > 1 - 1e-6)).any(-1) & self.closed
        self.register_buffer("on_boundary", on_boundary, persistent=False)

    @classmethod
    def from_sdf_fn(cls, sdf_fn: Callable[[torch.Tensor], torch.Tensor], grid: TetGrid,
                    chunk: int = 1 << 18) -> DMTet:
        """Sample `sdf_fn` (N, 3) → (N,) at the grid vertices (no gradient) to initialise the SDF."""
        pts = grid.vertices()
        with torch.no_grad():
            sdf = torch.cat([sdf_fn(pts[i:i + chunk]).reshape(-1).float() for i in range(0, pts.shape[0], chunk)])
        return cls(grid, sdf)

    @property
    def resolution(self) -> int:
        return self.grid.resolution

    def vertices(self) -> torch.Tensor:
        """Deformed grid vertices (N, 3) with gradient to `deform`."""
        half_cell = 0.5 * (self.bbox_max - self.bbox_min) / self.grid.resolution
        return self.base_vertices + torch.tanh(self.deform) * half_cell

    def extract(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Surface (vertices with gradient to sdf and deform, faces long)."""
        sdf = torch.where(self.on_boundary, torch.ones_like(self.sdf), self.sdf)
        return marching_tets(self.vertices(), sdf, self.grid.surface_tets(sdf))

    def param_groups(self, lr: float) -> list[dict]:
        return [{"params": [self.sdf, self.deform], "lr": lr, "name": "dmtet"}]

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor], device: torch.device | str = "cpu") -> DMTet:
        """Rebuild from a checkpoint: resolution and fitted bbox come from the tensors themselves."""
        n = round(state["sdf"].numel() ** (1 / 3))
        grid = TetGrid(n - 1, state["bbox_min"].to(device), state["bbox_max"].to(device))
        state = {"closed": torch.tensor(True), **state}  # checkpoints from before open scene meshes
        net = cls(grid, closed=bool(state["closed"]))
        net.load_state_dict({k: v.to(device) for k, v in state.items()})
        return net
