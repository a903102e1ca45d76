"""What the stages, exporters and benchmarks may ask of a 3D representation, and nothing more.

Stage 1 optimises a `Representation` per particle: it renders cameras over a backdrop, keeps
its own acceleration state up to date (`update`), answers density queries for surface
extraction and albedo queries for baking, and hands the mesh stages a `ColorField` to fine-tune.
Nothing outside engine/representation/ and engine/field/ touches the hash grid, the MLPs or the
occupancy grid, so a new representation is added without editing the stages.

A 3D-Gaussian representation (DreamGaussian/GaussianDreamer-style splats) would add:
  engine/representation/gaussians.py  the Representation: splat parameters, densify/prune in `update`,
                                      `density` as the summed Gaussian opacities (for extraction),
                                      `albedo` as the opacity-weighted colour of nearby splats, and a
                                      `color_field()` that stage 3 fine-tunes (e.g. a hash-grid colour field
                                      distilled from the splats, or a per-vertex colour table);
  engine/render/splat.py              its differentiable rasteriser (tile sort + alpha compositing);
  one spec variant                    a `GaussianSpec` section + `representation: "gaussians"` in JobSpec,
                                      and one row in REPRESENTATIONS (registry.py).
The stages, the export fallback, the benchmarks and the server need no change.
"""
from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch

from ..cameras import Cameras
from ..field.background import Background
from ..render import RenderOutput
from ..spec import StageSpec


@runtime_checkable
class ColorField(Protocol):
    """A colour function over space that an optimiser can fine-tune (stage 3, baking, export)."""

    def albedo(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3) points → (N, 3) colour in [0, 1]."""

    def param_groups(self, stage: StageSpec) -> list[dict[str, Any]]:
        """Optimiser groups at the stage's learning rates."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> Any: ...


@runtime_checkable
class Representation(Protocol):
    """One particle of stage 1: everything the stages and exporters use of it."""

    background: Background | None  # the far-field colour network behind it (None: backdrops only)

    def render(self, cams: Cameras, backdrop: torch.Tensor, samples: int, gen: torch.Generator | None,
               normals: bool = False) -> RenderOutput:
        """Differentiable (B, H, W) render over `backdrop`; `gen` jitters samples (None: deterministic)."""

    def update(self, step: int) -> None:
        """Housekeeping before each optimisation step (occupancy refresh, densification)."""

    def density(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3) → (N,) density ≥ 0, for surface extraction (the geometry stage, export)."""

    def albedo(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3) → (N, 3) colour in [0, 1], for baking."""

    def param_groups(self, stage: StageSpec) -> list[dict[str, Any]]:
        """Optimiser groups at the stage's learning rates (background network included)."""

    def color_field(self) -> ColorField:
        """An independent copy of the colour part, for the texture stage to fine-tune."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> Any: ...
