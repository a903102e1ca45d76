"""Bake a colour field into a texture: rasterise the mesh in UV space, query the field at the
surface point of every covered texel, then dilate into the empty texels so seams and mipmaps do
not pull in black."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .raster import make_rasterizer
from .raster.base import Rasterizer
from .uv import UVLayout

ColorFn = Callable[[torch.Tensor], torch.Tensor]


def uv_raster(layout: UVLayout, size: int, raster: Rasterizer, device: torch.device | str = "cpu") -> torch.Tensor:
    """rast (1, size, size, 4) of the UV layout; texel row i holds v ≈ (i + 0.5) / size (glTF)."""
    uv = torch.as_tensor(layout.uvs, dtype=torch.float32, device=device)
    pos = torch.cat([uv * 2 - 1, torch.zeros_like(uv[:, :1]), torch.ones_like(uv[:, :1])], dim=-1)
    faces = torch.as_tensor(layout.faces, dtype=torch.long, device=device)
    return raster.rasterize(pos.unsqueeze(0), faces, (size, size))


def dilate(image: torch.Tensor, mask: torch.Tensor, iterations: int = 16) -> torch.Tensor:
    """Grow (H, W, C) colours from `mask` (H, W) by 3×3 averages; whatever is still empty gets the mean."""
    img = (image * mask.unsqueeze(-1)).permute(2, 0, 1).unsqueeze(0)
    m = mask.float().view(1, 1, *mask.shape)
    kernel = torch.ones(1, 1, 3, 3, dtype=img.dtype, device=img.device)
    for _ in range(iterations):
        if bool(m.min() > 0):
            break
        total = F.conv2d(img, kernel.expand(img.shape[1], 1, 3, 3), padding=1, groups=img.shape[1])
        count = F.conv2d(m, kernel, padding=1)
        grow = (m == 0) & (count > 0)
        img = torch.where(grow, total / count.clamp(min=1), img)
        m = torch.where(grow, torch.ones_like(m), m)
    out = img[0].permute(1, 2, 0)
    filled = m[0, 0] > 0
    if not bool(filled.all()):
        mean = out[filled].mean(0) if bool(filled.any()) else torch.full_like(out[0, 0], 0.5)
        out = torch.where(filled.unsqueeze(-1), out, mean)
    return out


@torch.no_grad()
def bake_texture(vertices: np.ndarray | torch.Tensor, layout: UVLayout, color_fn: ColorFn, size: int = 1024,
                 raster: Rasterizer | None = None, device: torch.device | str = "cpu",
                 chunk: int = 1 << 16, dilate_iterations: int = 16) -> np.ndarray:
    """(size, size, 3) float32 texture in [0, 1], top row first, for the mesh's UV layout."""
    raster = raster or make_rasterizer(device)
    rast = uv_raster(layout, size, raster, device)
    verts = torch.as_tensor(np.asarray(vertices)[layout.vmapping], dtype=torch.float32, device=device)
    points = raster.interpolate(verts, rast, torch.as_tensor(layout.faces, device=device))[0]
    covered = rast[0, ..., 3] > 0
    flat = points[covered]
    colours = torch.cat([color_fn(flat[i:i + chunk]).float() for i in range(0, flat.shape[0], chunk)]) \
        if flat.shape[0] else flat.new_zeros(0, 3)
    image = torch.zeros(size, size, 3, device=device).index_put((covered,), colours.clamp(0, 1))
    return dilate(image, covered, dilate_iterations).cpu().numpy().astype(np.float32)
