"""Bake a colour field into a texture: rasterise the mesh in UV space, query the field at the
surface point of every covered texel, then dilate into the empty texels so seams and mipmaps do
not pull in black."""
from __future__ import annotations

from collections.abc import Callable

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


def dilate(image: torch.Tensor, mask: torch.Tensor, iterations: int = 4) -> torch.Tensor:
    """Fill the empty texels of (H, W, C) `image`: `iterations` rings of 3×3 averages of covered
    neighbours (seams), then pull-push (masked averages up a 2× pyramid, filled back down) so
    every texel, mip levels included, holds a nearby colour rather than black."""
    img = (image * mask.unsqueeze(-1)).permute(2, 0, 1).unsqueeze(0)
    m = mask.to(img.dtype).view(1, 1, *mask.shape)
    for _ in range(iterations):
        if bool(m.min() > 0):
            break
        total = F.avg_pool2d(img * m, 3, 1, 1, count_include_pad=False)
        count = F.avg_pool2d(m, 3, 1, 1, count_include_pad=False)
        grow = (m == 0) & (count > 0)
        img = torch.where(grow, total / count.clamp(min=1e-12), img)
        m = torch.where(grow, torch.ones_like(m), m)
    return _pull_push(img, m)[0].permute(1, 2, 0)


def _pull_push(img: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    if bool(m.min() > 0) or min(img.shape[-2:]) < 2:
        if bool(m.max() > 0):  # a 1-texel level, or everything covered
            mean = (img * m).sum((-2, -1), keepdim=True) / m.sum((-2, -1), keepdim=True)
            return torch.where(m > 0, img, mean)
        return torch.full_like(img, 0.5)
    h, w = img.shape[-2:]
    pad = (0, w % 2, 0, h % 2)
    total = F.avg_pool2d(F.pad(img * m, pad), 2)
    count = F.avg_pool2d(F.pad(m, pad), 2)
    coarse = _pull_push(total / count.clamp(min=1e-12), (count > 0).to(m.dtype))
    up = F.interpolate(coarse, scale_factor=2.0, mode="nearest")[..., :h, :w]
    return torch.where(m > 0, img, up)


@torch.no_grad()
def bake_texture(vertices: np.ndarray | torch.Tensor, layout: UVLayout, color_fn: ColorFn, size: int = 1024,
                 raster: Rasterizer | None = None, device: torch.device | str = "cpu",
                 chunk: int = 1 << 16, dilate_iterations: int = 4) -> np.ndarray:
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
