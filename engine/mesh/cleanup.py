"""Mesh clean-up before export with pymeshlab (imported lazily: it must never load before bpy in
one process, and most of the engine does not need it)."""
from __future__ import annotations

import numpy as np


def _meshset(vertices: np.ndarray, faces: np.ndarray):
    import pymeshlab
    ms = pymeshlab.MeshSet()
    ms.add_mesh(pymeshlab.Mesh(vertex_matrix=np.asarray(vertices, np.float64),
                               face_matrix=np.asarray(faces, np.int32)))
    return ms


def _arrays(ms) -> tuple[np.ndarray, np.ndarray]:
    m = ms.current_mesh()
    return m.vertex_matrix().astype(np.float32), m.face_matrix().astype(np.int64)


def decimate(vertices: np.ndarray, faces: np.ndarray, face_target: int) -> tuple[np.ndarray, np.ndarray]:
    """Quadric edge collapse to at most `face_target` faces (no-op when already below).

    `planarquadric` adds a small plane term to every face's quadric: without it, marching-tets
    output (rows of nearly coplanar slivers) collapsed badly; the marker toy at grid 64 → 5000
    faces measured Chamfer-L1 0.0167 without it and 0.0053 with it (0.0051 undecimated)."""
    if faces.shape[0] <= face_target:
        return np.asarray(vertices, np.float32), np.asarray(faces, np.int64)
    ms = _meshset(vertices, faces)
    ms.meshing_decimation_quadric_edge_collapse(targetfacenum=int(face_target), preservenormal=True,
                                                preservetopology=True, optimalplacement=True, planarquadric=True)
    ms.meshing_remove_unreferenced_vertices()
    return _arrays(ms)


def clean_mesh(vertices: np.ndarray, faces: np.ndarray, face_target: int, min_component_ratio: float = 0.01,
               merge_fraction: float = 1e-4) -> tuple[np.ndarray, np.ndarray]:
    """Merge vertices closer than `merge_fraction` of the bbox diagonal, drop components with fewer
    than `min_component_ratio` of the largest one's faces, remove degenerate faces, decimate."""
    import pymeshlab
    ms = _meshset(vertices, faces)
    ms.meshing_remove_duplicate_vertices()
    ms.meshing_merge_close_vertices(threshold=pymeshlab.PercentageValue(100.0 * merge_fraction))
    ms.meshing_remove_duplicate_faces()
    ms.meshing_remove_null_faces()
    ms.compute_selection_by_small_disconnected_components_per_face(nbfaceratio=min_component_ratio)
    ms.meshing_remove_selected_vertices_and_faces()
    ms.meshing_remove_unreferenced_vertices()
    v, f = _arrays(ms)
    if f.shape[0] == 0:
        raise ValueError("clean-up removed every face: the surface is empty")
    return decimate(v, f, face_target)
