"""Equirectangular panoramas from the centre of a scene, in Blender's World mapping.

Blender's Environment Texture maps a direction d to u = 0.5 − atan2(d.y, d.x)/2π and
v = 1 − acos(d.z)/π with v = 1 at the image's top row (Cycles' direction_to_equirectangular), so
the image centre faces +X, −Y sits at three quarters of the width and the top row looks straight
up. A panorama written here and set as the World shows each direction where Blender looks for it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch


def equirect_directions(width: int, height: int, rows: slice | None = None,
                        device: torch.device | str = "cpu") -> torch.Tensor:
    """(H', W, 3) unit directions of the pixel centres (top row first) for `rows` of the image."""
    r = torch.arange(height, dtype=torch.float64, device=device)[rows or slice(None)]
    c = torch.arange(width, dtype=torch.float64, device=device)
    theta = math.pi * (r + 0.5) / height  # polar angle from +Z: v = 1 − θ/π, top row v ≈ 1
    phi = math.pi - 2.0 * math.pi * (c + 0.5) / width  # u = 0.5 − φ/2π
    st = torch.sin(theta)[:, None]
    d = torch.stack([st * torch.cos(phi)[None], st * torch.sin(phi)[None],
                     torch.cos(theta)[:, None].expand(-1, width)], dim=-1)
    return d.float()


@dataclass
class PanoramaTile:
    """Rows `rows` of a width × width/2 panorama seen from `centre`, shaped like one camera of
    `height` = its row count for the renderers (they only ask for batch, height, width and rays)."""

    width: int
    rows: slice
    centre: tuple[float, float, float] = (0.0, 0.0, 0.0)
    device: torch.device | str = "cpu"

    batch = 1

    @property
    def height(self) -> int:
        return self.rows.stop - self.rows.start

    def rays(self) -> tuple[torch.Tensor, torch.Tensor]:
        d = equirect_directions(self.width, self.width // 2, self.rows, self.device)[None]
        o = torch.tensor(self.centre, dtype=d.dtype, device=d.device).expand_as(d)
        return o.contiguous(), d.contiguous()


def render_panorama(render, width: int, samples: int, rows_per_tile: int = 32,
                    centre: tuple[float, float, float] = (0.0, 0.0, 0.0),
                    device: torch.device | str = "cpu") -> np.ndarray:
    """(width/2, width, 3) uint8 panorama; `render(tile, samples)` → RenderOutput (a
    Representation's render over its own far field). Rendered in row tiles so memory stays flat."""
    height = width // 2
    tiles = []
    with torch.no_grad():
        for start in range(0, height, rows_per_tile):
            tile = PanoramaTile(width, slice(start, min(start + rows_per_tile, height)), centre, device)
            tiles.append(render(tile, samples).rgb[0])
    img = torch.cat(tiles).clamp(0, 1)
    return (img.cpu().numpy() * 255.0 + 0.5).astype(np.uint8)
