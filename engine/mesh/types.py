"""The triangle mesh that moves between stages: positions in Blender's frame (Z up, front −Y).

UVs follow glTF: (0, 0) is the top-left of the texture image, v grows downwards, so texture row i
holds v ≈ (i + 0.5) / H. OBJ writers flip v on the way out.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class TexturedMesh:
    vertices: np.ndarray  # (V, 3) float32, Blender frame
    faces: np.ndarray  # (F, 3) int64, counter-clockwise seen from outside
    uvs: np.ndarray | None = None  # (V, 2) float32 per vertex, glTF convention
    texture: np.ndarray | None = None  # (H, W, 3) float32 in [0, 1], top row first
    extras: dict = field(default_factory=dict)

    @property
    def num_faces(self) -> int:
        return int(self.faces.shape[0])

    def vertex_normals(self) -> np.ndarray:
        """Area-weighted unit vertex normals (zero-area fans fall back to +Z)."""
        v, f = self.vertices.astype(np.float64), self.faces
        fn = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
        vn = np.zeros_like(v)
        for k in range(3):
            np.add.at(vn, f[:, k], fn)
        norm = np.linalg.norm(vn, axis=1, keepdims=True)
        vn = np.where(norm > 1e-20, vn / np.maximum(norm, 1e-20), np.array([0.0, 0.0, 1.0]))
        return vn.astype(np.float32)
