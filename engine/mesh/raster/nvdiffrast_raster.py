"""nvdiffrast with its CUDA context (never the OpenGL one: headless machines lack EGL)."""
from __future__ import annotations

import nvdiffrast.torch as dr  # ImportError here makes make_rasterizer fall back to torch
import torch

from .base import Rasterizer


class NvdiffrastRasterizer(Rasterizer):
    name = "nvdiffrast"

    def __init__(self, device: torch.device | str = "cuda"):
        self.ctx = dr.RasterizeCudaContext(device=torch.device(device))

    def rasterize(self, pos: torch.Tensor, tri: torch.Tensor, resolution: tuple[int, int]) -> torch.Tensor:
        rast, _ = dr.rasterize(self.ctx, pos.float().contiguous(), tri.int().contiguous(), tuple(resolution))
        return rast

    def interpolate(self, attr: torch.Tensor, rast: torch.Tensor, tri: torch.Tensor) -> torch.Tensor:
        attr = attr[None] if attr.dim() == 2 else attr  # instanced mode wants (B or 1, V, C)
        out, _ = dr.interpolate(attr.float().contiguous(), rast, tri.int().contiguous())
        return out

    def antialias(self, color: torch.Tensor, rast: torch.Tensor, pos: torch.Tensor,
                  tri: torch.Tensor) -> torch.Tensor:
        return dr.antialias(color.contiguous(), rast, pos.float().contiguous(), tri.int().contiguous())
