"""What a user's own UVs will do to the bake, said before it runs.

A re-texture job bakes into the mesh's own UVs so the add-on can swap the material in place. Two
layouts bake wrongly without any error: islands that overlap (mirrored halves, stacked copies: every
overlapping texel gets one colour for all the surfaces on it) and UVs outside [0, 1] (those parts
wrap onto the tile and share its texels too). Both are legitimate for hand-painted or tiling
textures, so they are reported, not refused, with the fix.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .bake import uv_raster
from .raster import make_rasterizer
from .uv import UVLayout

CHECK_SIZE = 256
WORTH_SAYING = 0.02  # below 2 % of the UV area (seams, rounding) nothing is said


@dataclass
class UVReport:
    outside: float  # fraction of the UV area (of all triangles) that lies outside [0, 1]²
    overlap: float  # fraction of the in-tile UV area that another triangle's UVs also cover

    def warnings(self) -> list[str]:
        out = []
        if self.overlap > WORTH_SAYING:
            out.append(f"{100 * self.overlap:.0f}% of its UV area overlaps other islands (mirrored or stacked): "
                       "those surfaces will share one texture colour; unwrap it without overlaps in Blender "
                       "(UV > Smart UV Project) to paint each part its own")
        if self.outside > WORTH_SAYING:
            out.append(f"{100 * self.outside:.0f}% of its UV area lies outside the 0–1 tile: those parts wrap "
                       "onto the tile and share its texels; pack the islands into the tile (UV > Pack Islands)")
        return out


def _areas(uv: np.ndarray, faces: np.ndarray) -> np.ndarray:
    a, b, c = uv[faces[:, 0]], uv[faces[:, 1]], uv[faces[:, 2]]
    return 0.5 * np.abs((b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0]))


def check_uvs(uvs: np.ndarray, faces: np.ndarray, size: int = CHECK_SIZE) -> UVReport:
    """Overlap = 1 − (area the in-tile triangles cover together) / (sum of their areas), the union
    measured by rasterising the layout as the bake does; outside = area of triangles with a corner
    off the tile over all UV area."""
    uvs, faces = np.asarray(uvs, np.float64), np.asarray(faces, np.int64)
    areas = _areas(uvs, faces)
    total = float(areas.sum())
    if not total > 0:
        return UVReport(0.0, 0.0)
    tri = uvs[faces]
    inside = ((tri >= -1e-4) & (tri <= 1 + 1e-4)).all(axis=(1, 2))
    outside = float(areas[~inside].sum()) / total
    in_area = float(areas[inside].sum())
    if not in_area * size * size >= 4:  # under a few texels: nothing to measure
        return UVReport(outside, 0.0)
    layout = UVLayout(np.arange(len(uvs)), faces[inside], uvs.astype(np.float32), "input")
    covered = float((uv_raster(layout, size, make_rasterizer("cpu", prefer="torch"))[..., 3] > 0).float().mean())
    return UVReport(outside, max(0.0, 1.0 - covered / in_area))
