"""Load a user mesh (GLB/GLTF, OBJ, PLY as Blender's exporters write them) for re-texturing.

The mesh is brought into Blender's frame (glTF and OBJ are Y up, Blender's PLY exporter writes
Z up), then centred and scaled into the unit sphere; `LoadedMesh.to_original` undoes that so
the result can be written back with the user's own coordinates, vertex order and UVs.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import MeshInputError
from .gltf_export import gltf_to_blender
from .types import TexturedMesh

GLTF_SUFFIXES = {".glb", ".gltf"}
Y_UP_SUFFIXES = GLTF_SUFFIXES | {".obj"}
SUFFIXES = Y_UP_SUFFIXES | {".ply"}
DEFAULT_FACE_LIMIT = 500_000


@dataclass
class LoadedMesh:
    mesh: TexturedMesh  # normalised: centred on the origin, inside the unit sphere
    center: np.ndarray  # (3,) Blender-frame centre that was subtracted
    scale: float  # radius that was divided out
    source: Path
    had_uvs: bool
    decimated: bool = False

    def to_original(self, vertices: np.ndarray) -> np.ndarray:
        return np.asarray(vertices, np.float64) * self.scale + self.center


def _fail(path: Path, what: str, hint: str | None = None) -> MeshInputError:
    return MeshInputError(f"input_mesh {str(path)!r}: {what}", hint)


def _read_gltf(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """glTF through our own reader (gltf_read.py): what conformant exporters write, UVs as glTF keeps them."""
    from .gltf_read import GltfError, read_gltf
    try:
        got = read_gltf(path)
    except GltfError as exc:
        raise _fail(path, f"could not be read: {exc}", "re-export it from Blender (File > Export > glTF 2.0)") from None
    except (OSError, MemoryError) as exc:
        raise _fail(path, f"could not be read ({type(exc).__name__})") from None
    return got.vertices, got.faces, got.uvs


def _read_trimesh(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """OBJ and PLY through trimesh."""
    import trimesh
    try:
        loaded = trimesh.load(str(path), process=False, maintain_order=True)
    except Exception as exc:  # noqa: BLE001 - trimesh raises many kinds on corrupt files
        raise _fail(path, f"could not be read ({type(exc).__name__}: {str(exc)[:200]})",
                    "re-export it from Blender (File > Export > glTF 2.0 / OBJ / PLY)") from None
    if isinstance(loaded, trimesh.Scene):
        geoms = [g for g in loaded.dump() if isinstance(g, trimesh.Trimesh)]
        if not geoms:
            raise _fail(path, "contains no triangle mesh (empty scene, points or lines only)")
        tm = geoms[0] if len(geoms) == 1 else trimesh.util.concatenate(geoms)
    elif isinstance(loaded, trimesh.Trimesh):
        tm = loaded
    else:
        raise _fail(path, f"contains no triangle mesh ({type(loaded).__name__})")
    vertices = np.asarray(tm.vertices, np.float64)
    uvs = None
    uv = getattr(tm.visual, "uv", None)
    if uv is not None and len(uv) == len(vertices):
        uvs = np.asarray(uv, np.float32).copy()
        uvs[:, 1] = 1.0 - uvs[:, 1]  # trimesh keeps OBJ's v-up convention; the engine uses glTF's
    return vertices, np.asarray(tm.faces, np.int64).reshape(-1, 3), uvs


def _has_area(vertices: np.ndarray, faces: np.ndarray) -> bool:
    """Some triangle spans an area (relative to the mesh's size): without one, renders are empty and
    no stage has a gradient to follow. All vertices in one point is the zero-extent error instead."""
    extent = float(np.ptp(vertices, axis=0).max())
    if not extent > 0:
        return True
    tri = vertices[faces]
    area2 = np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    return bool((area2 > 1e-10 * extent * extent).any())


def load_mesh(path: str | Path, face_limit: int = DEFAULT_FACE_LIMIT, decimate: bool = False,
              radius: float = 1.0) -> LoadedMesh:
    """Read, validate and normalise. Over `face_limit` faces: MeshInputError, or quadric
    decimation down to the limit when `decimate` (the original UVs are then dropped)."""
    path = Path(path)
    if not path.is_file():
        raise _fail(path, "file not found", "check the path; the engine reads it from its own machine")
    if path.suffix.lower() not in SUFFIXES:
        raise _fail(path, f"unsupported format {path.suffix or '(none)'}", "use .glb, .gltf, .obj or .ply")
    vertices, faces, uvs = _read_gltf(path) if path.suffix.lower() in GLTF_SUFFIXES else _read_trimesh(path)
    if vertices.shape[0] == 0:
        raise _fail(path, "is empty (no vertices)")
    if faces.shape[0] == 0:
        raise _fail(path, "has vertices but no faces", "send a surface mesh, not a point cloud")
    if not np.isfinite(vertices).all():
        raise _fail(path, "has NaN or infinite vertex positions")
    if faces.min() < 0 or faces.max() >= vertices.shape[0]:
        raise _fail(path, "has faces that index missing vertices")
    if not _has_area(vertices, faces):
        raise _fail(path, "has no triangle with an area (every face is degenerate: its corners lie on one "
                          "line or point)", "send the surface itself; check the mesh's scale and merged vertices")
    decimated = False
    if faces.shape[0] > face_limit:
        if not decimate:
            raise _fail(path, f"has {faces.shape[0]} faces, over the limit of {face_limit}",
                        "decimate it in Blender first, or allow decimation (retexture --decimate)")
        from .cleanup import decimate as _decimate
        vertices, faces = _decimate(vertices, faces, face_limit)
        uvs, decimated = None, True
    if path.suffix.lower() in Y_UP_SUFFIXES:
        vertices = gltf_to_blender(vertices)
    lo, hi = vertices.min(0), vertices.max(0)
    center = 0.5 * (lo + hi)
    scale = float(np.linalg.norm(vertices - center, axis=1).max()) / radius
    if not scale > 1e-12:
        raise _fail(path, "has zero extent (all vertices coincide)")
    norm = ((vertices - center) / scale).astype(np.float32)
    return LoadedMesh(TexturedMesh(norm, faces, uvs), center, scale, path, uvs is not None, decimated)
