"""The hash-grid radiance field as a Representation: field + background network + occupancy grid.

Its module names (`field`, `background`, `occupancy`) are the checkpoint keys stage 1 has always
written (`particles.<i>.field.*`), so runs saved before this seam existed still resume and export.
"""
from __future__ import annotations

import copy
from typing import Any

import torch

from ..cameras import Cameras
from ..field import Background, OccupancyGrid, RadianceField
from ..field.radiance import backend_for
from ..render import RenderOutput, render_volume
from ..spec import JobSpec, StageSpec


class RadianceRepresentation(torch.nn.Module):
    """Density σ(x) and albedo a(x) from one hash grid, volume-rendered with empty-space skipping."""

    def __init__(self, spec: JobSpec, gen: torch.Generator | None = None, device: torch.device | str = "cpu"):
        super().__init__()
        self.field = RadianceField(spec.field, gen=gen, backend=backend_for(device))
        self.background = Background(gen=gen)
        self.occupancy = OccupancyGrid(radius=spec.field.radius)
        self.importance_samples = spec.nerf.importance_samples  # stage 1's, the only volume-rendering stage

    def render(self, cams: Cameras, backdrop: torch.Tensor, samples: int, gen: torch.Generator | None,
               normals: bool = False) -> RenderOutput:
        return render_volume(self.field, cams, backdrop, samples, self.field.radius, gen=gen,
                             occupancy=self.occupancy, want_normals=normals,
                             importance_samples=self.importance_samples)

    def update(self, step: int) -> None:
        self.occupancy.update(self.field, step)

    def density(self, x: torch.Tensor) -> torch.Tensor:
        return self.field.density(x)

    def albedo(self, x: torch.Tensor) -> torch.Tensor:
        return self.field.albedo(x)

    def param_groups(self, stage: StageSpec) -> list[dict[str, Any]]:
        return self.field.param_groups(stage) + [
            {"params": list(self.background.parameters()), "lr": stage.lr_background}]

    def color_field(self) -> RadianceField:
        """A copy of the whole field: stage 3 fine-tunes its albedo head and the grid it shares."""
        return copy.deepcopy(self.field)

    @staticmethod
    def new_color_field(spec: JobSpec, gen: torch.Generator | None = None,
                        device: torch.device | str = "cpu") -> RadianceField:
        """A fresh colour field (re-texture mode; reloading a texture checkpoint)."""
        return RadianceField(spec.field, gen=gen, backend=backend_for(device))
