"""Pick a rasteriser: nvdiffrast's CUDA context when importable on a GPU, else the torch one."""
from __future__ import annotations

import torch

from .base import Rasterizer
from .torch_raster import TorchRasterizer


def make_rasterizer(device: torch.device | str = "cpu", prefer: str = "auto") -> Rasterizer:
    """`prefer`: 'auto' | 'torch' | 'nvdiffrast' (the last raises when nvdiffrast cannot run)."""
    device = torch.device(device)
    if prefer == "torch":
        return TorchRasterizer()
    if device.type == "cuda":
        try:
            from .nvdiffrast_raster import NvdiffrastRasterizer
            return NvdiffrastRasterizer(device)
        except ImportError:
            if prefer == "nvdiffrast":
                raise
    elif prefer == "nvdiffrast":
        raise RuntimeError("the nvdiffrast rasteriser needs a CUDA device")
    return TorchRasterizer()


__all__ = ["Rasterizer", "TorchRasterizer", "make_rasterizer"]
