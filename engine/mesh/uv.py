"""UV unwrapping with a time bound: xatlas in a child process, a per-triangle atlas as the fallback.

UVs use the glTF convention of types.py. The fallback packs two triangles per square cell of a
grid; it always works, wastes some texels and puts a seam on every edge (the bake's dilation
hides them).
"""
from __future__ import annotations

import math
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class UVLayout:
    vmapping: np.ndarray  # (V',) original vertex index of each UV vertex
    faces: np.ndarray  # (F, 3) faces into the UV vertices, same face order as the input
    uvs: np.ndarray  # (V', 2) float32 in [0, 1]
    method: str  # 'xatlas' | 'grid' | 'input'
    seconds: float = 0.0


def spatial_groups(vertices: np.ndarray, faces: np.ndarray, piece_faces: int) -> np.ndarray:
    """(F,) piece index: equal-count slabs of face centroids along the longest axis."""
    n = max(1, math.ceil(len(faces) / piece_faces))
    centroids = np.asarray(vertices, np.float64)[np.asarray(faces)].mean(1)
    axis = int(np.argmax(np.ptp(centroids, axis=0))) if len(faces) else 0
    order = np.argsort(centroids[:, axis], kind="stable")
    groups = np.empty(len(faces), np.int64)
    groups[order] = np.arange(len(faces)) * n // max(len(faces), 1)
    return groups


def unwrap(vertices: np.ndarray, faces: np.ndarray, timeout_s: float = 120.0, resolution: int = 1024,
           padding: int = 2, max_iterations: int = 1, piece_faces: int = 12_500) -> UVLayout:
    """xatlas when it finishes within `timeout_s`; the grid atlas when it fails or runs over.
    Meshes over `piece_faces` are charted in spatial slabs (xatlas's charting time grows faster
    than linearly: a 100k-face mesh took 21 s whole, 10 s in eight slabs here) and packed into
    one atlas; slab borders become UV seams, which the bake's dilation covers."""
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="vsdream-uv-") as tmp:
        src, dst = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
        np.savez(src, vertices=np.asarray(vertices, np.float32), faces=np.asarray(faces, np.int64),
                 groups=spatial_groups(vertices, faces, piece_faces), resolution=resolution, padding=padding,
                 max_iterations=max_iterations)
        try:
            proc = subprocess.run([sys.executable, "-m", "engine.mesh.xatlas_worker", str(src), str(dst)],
                                  capture_output=True, timeout=timeout_s, cwd=str(Path(__file__).resolve().parents[2]))
            if proc.returncode == 0 and dst.exists():
                out = np.load(dst)
                if out["faces"].shape == np.shape(faces):
                    return UVLayout(out["vmapping"], out["faces"], out["uvs"], "xatlas",
                                    time.perf_counter() - start)
        except subprocess.TimeoutExpired:
            pass  # subprocess.run has killed the child
    layout = grid_atlas(np.asarray(faces), resolution, padding)
    layout.seconds = time.perf_counter() - start
    return layout


def grid_atlas(faces: np.ndarray, resolution: int = 1024, padding: int = 2) -> UVLayout:
    """Every triangle its own half of a grid cell; corners inset by `padding` texels."""
    n_faces = faces.shape[0]
    cells = max(1, math.ceil(n_faces / 2))
    g = math.ceil(math.sqrt(cells))
    size = 1.0 / g
    inset = min(padding / resolution, 0.2 * size)
    f = np.arange(n_faces)
    cell = f // 2
    ox, oy = (cell % g) * size, (cell // g) * size
    lo, hi = inset, size - inset
    # first triangle of a cell: lower-left corner; second: upper-right, both counter-clockwise in (u, v)
    first = np.array([[lo, lo], [hi - inset, lo], [lo, hi - inset]])
    second = np.array([[hi, hi], [lo + inset, hi], [hi, lo + inset]])
    corners = np.where((f % 2 == 0)[:, None, None], first[None], second[None])
    uvs = (corners + np.stack([ox, oy], -1)[:, None, :]).reshape(-1, 2).astype(np.float32)
    return UVLayout(np.asarray(faces).reshape(-1).astype(np.int64), np.arange(3 * n_faces).reshape(-1, 3),
                    uvs, "grid")
