"""Any trimesh-readable mesh (GLB/glTF/OBJ/PLY/…) as a reference scene for the analytic prior.

The mesh is used where it stands, in the world frame (no normalisation). glTF and OBJ files are
Y-up (the glTF spec; Blender's OBJ exporter/importer defaults), so they are turned into our Z-up
frame the way Blender's importers do it ((x, y, z) → (x, −z, y)); PLY and other formats are taken
as Z-up already, as Blender's PLY exporter writes them. `y_up` overrides the guess. The suffix
rule is engine.mesh.mesh_io's, so a reference mesh and a re-textured mesh agree.

Rendering is brute-force ray casting in torch: every ray is tested against every triangle in
chunks, with each triangle's plane and barycentric "dual" vectors precomputed so a chunk costs
two small matmuls plus elementwise ops on (rays × faces). That is fine for meshes up to a few
thousand faces at 64²; beyond that it gets slow (decimate the mesh first).
Colours: texture sampled at the hit's UV (times the material's base colour factor), else
vertex or face colours, else trimesh's `visual.to_color()`, else mid grey.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..cameras import Cameras
from ..errors import MeshInputError
from ..mesh.mesh_io import Y_UP_SUFFIXES
from ..render import sphere_intersect
from .scene_render import RayHits, SceneRender, render_rays

_Y_UP_TO_Z_UP = np.array([[1, 0, 0, 0], [0, 0, -1, 0], [0, 1, 0, 0], [0, 0, 0, 1]], dtype=np.float64)
_CHUNK_ELEMENTS = 1 << 21  # rays × faces per chunk


@dataclass
class _Part:
    """One trimesh geometry placed in the world, with where its colours come from."""

    tris: np.ndarray  # (F, 3, 3)
    corner_rgb: np.ndarray  # (F, 3, 3) in [0, 1]
    corner_uv: np.ndarray | None = None  # (F, 3, 2)
    texture: np.ndarray | None = None  # (H, W, 3) in [0, 1], already times the base colour factor


def _rgb01(colors) -> np.ndarray:
    c = np.asarray(colors, dtype=np.float64)[..., :3]
    return c / 255.0 if c.max(initial=0.0) > 1.0 or np.asarray(colors).dtype == np.uint8 else c


def _part_from_mesh(mesh, matrix: np.ndarray) -> _Part:
    """Triangles placed by `matrix` (4×4) and their colour source (the mesh itself is not copied)."""
    faces = np.asarray(mesh.faces, dtype=np.int64)
    verts = np.asarray(mesh.vertices, dtype=np.float64) @ matrix[:3, :3].T + matrix[:3, 3]
    tris = verts[faces]
    grey = np.full((len(faces), 3, 3), 0.7)
    visual = mesh.visual
    if getattr(visual, "kind", None) == "texture":
        material = visual.material
        image = getattr(material, "baseColorTexture", None) or getattr(material, "image", None)
        if image is not None and visual.uv is not None and len(visual.uv) == len(mesh.vertices):
            factor = getattr(material, "baseColorFactor", None)
            factor = np.ones(3) if factor is None else _rgb01(np.asarray(factor).reshape(-1)[:3].reshape(1, 3))[0]
            tex = np.asarray(image.convert("RGB"), dtype=np.float64) / 255.0 * factor
            return _Part(tris, grey, np.asarray(visual.uv, dtype=np.float64)[faces], tex)
        visual = visual.to_color()
    kind = getattr(visual, "kind", None)
    if kind == "vertex":
        return _Part(tris, _rgb01(visual.vertex_colors)[faces])
    if kind == "face":
        return _Part(tris, np.repeat(_rgb01(visual.face_colors)[:, None, :], 3, axis=1))
    return _Part(tris, grey)


def _load_parts(path: Path, y_up: bool | None) -> list[_Part]:
    import trimesh

    try:
        scene = trimesh.load(str(path), force="scene", process=False)
    except Exception as exc:  # trimesh raises many kinds for unreadable files
        raise MeshInputError(f"mesh file {str(path)!r} could not be read: {exc}") from exc
    if y_up is None:
        y_up = path.suffix.lower() in Y_UP_SUFFIXES
    parts = []
    for node in scene.graph.nodes_geometry:
        transform, geom_name = scene.graph[node]
        geom = scene.geometry[geom_name]
        if not isinstance(geom, trimesh.Trimesh) or len(geom.faces) == 0:
            continue
        matrix = (_Y_UP_TO_Z_UP @ transform) if y_up else np.asarray(transform, dtype=np.float64)
        parts.append(_part_from_mesh(geom, matrix))
    if not parts:
        raise MeshInputError(f"mesh file {str(path)!r} has no triangles")
    return parts


class MeshScene:
    """A triangle mesh reference scene; see the module docstring for frame and colour rules."""

    def __init__(self, parts: list[_Part], name: str = "mesh", supersample: int = 2):
        self.name, self.supersample = name, supersample
        tris = torch.from_numpy(np.concatenate([p.tris for p in parts])).float()
        e1, e2 = tris[:, 1] - tris[:, 0], tris[:, 2] - tris[:, 0]
        n = torch.linalg.cross(e1, e2)
        n2 = n.square().sum(-1)
        keep = n2 > 1e-18  # drop degenerate triangles
        if not bool(keep.any()):
            raise MeshInputError(f"mesh {name!r} has only degenerate triangles")
        self.tris, n, n2, e1, e2 = tris[keep], n[keep], n2[keep], e1[keep], e2[keep]
        v0 = self.tris[:, 0]
        a1 = torch.linalg.cross(e2, n) / n2[:, None]  # (p − v0)·a1 = barycentric weight of v1
        a2 = torch.linalg.cross(n, e1) / n2[:, None]  # (p − v0)·a2 = barycentric weight of v2
        self._proj = torch.cat([n, a1, a2]).T.contiguous()  # (3, 3F)
        self._off = torch.cat([(v0 * n).sum(-1), (v0 * a1).sum(-1), (v0 * a2).sum(-1)])
        self.face_normal = n / n2.sqrt()[:, None]
        self.bound = float(self.tris.reshape(-1, 3).norm(dim=-1).max()) + 1e-4
        self.corner_rgb = torch.from_numpy(np.concatenate([p.corner_rgb for p in parts])).float()[keep]
        # textures: per face an index into self.textures (−1 = use corner colours)
        self.textures: list[torch.Tensor] = []
        tex_id, uv = [], []
        for p in parts:
            f = len(p.tris)
            if p.texture is None:
                tex_id.append(np.full(f, -1))
                uv.append(np.zeros((f, 3, 2)))
            else:
                tex_id.append(np.full(f, len(self.textures)))
                uv.append(p.corner_uv)
                self.textures.append(torch.from_numpy(p.texture).float().permute(2, 0, 1)[None])
        self.face_tex = torch.from_numpy(np.concatenate(tex_id))[keep]
        self.corner_uv = torch.from_numpy(np.concatenate(uv)).float()[keep]

    @classmethod
    def load(cls, path: str | Path, y_up: bool | None = None, supersample: int = 2) -> MeshScene:
        p = Path(path)
        if not p.is_file():
            raise MeshInputError(f"mesh file {str(p)!r} does not exist", hint="pass an existing GLB, OBJ or PLY path")
        return cls(_load_parts(p, y_up), name=f"mesh:{p.name}", supersample=supersample)

    @property
    def num_faces(self) -> int:
        return self.tris.shape[0]

    def _closest_hits(self, o: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Nearest positive hit distance (inf if none) and face index for rays (n, 3)."""
        nf = self.num_faces
        ts, fs = [], []
        step = max(1, _CHUNK_ELEMENTS // nf)
        for s in range(0, o.shape[0], step):
            oo, dd = o[s:s + step] @ self._proj - self._off, d[s:s + step] @ self._proj
            t = -oo[:, :nf] / dd[:, :nf]  # plane hit: (o + t d − v0)·n = 0
            u = oo[:, nf:2 * nf] + t * dd[:, nf:2 * nf]
            v = oo[:, 2 * nf:] + t * dd[:, 2 * nf:]
            ok = (t > 1e-6) & (u >= 0) & (v >= 0) & (u + v <= 1)
            t_min, f_min = torch.where(ok, t, torch.inf).min(dim=1)
            ts.append(t_min)
            fs.append(f_min)
        return torch.cat(ts), torch.cat(fs)

    def _colour(self, face: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        tri = self.tris[face]
        rel = points - tri[:, 0]
        a1, a2 = self._proj[:, self.num_faces:2 * self.num_faces].T, self._proj[:, 2 * self.num_faces:].T
        w1, w2 = (rel * a1[face]).sum(-1), (rel * a2[face]).sum(-1)
        bary = torch.stack([1 - w1 - w2, w1, w2], dim=-1).clamp(0, 1)[..., None]  # (n, 3, 1)
        rgb = (self.corner_rgb[face] * bary).sum(1)
        tex_of_hit = self.face_tex[face]
        for k, tex in enumerate(self.textures):
            sel = (tex_of_hit == k).nonzero().squeeze(1)
            if sel.numel() == 0:
                continue
            uv = (self.corner_uv[face[sel]] * bary[sel]).sum(1)
            uv = uv - uv.floor()  # repeat wrap
            grid = torch.stack([uv[:, 0] * 2 - 1, (1 - uv[:, 1]) * 2 - 1], dim=-1).view(1, 1, -1, 2)
            rgb[sel] = F.grid_sample(tex, grid, mode="bilinear", padding_mode="border",
                                     align_corners=False)[0, :, 0].T
        return rgb.clamp(0, 1)

    def trace(self, origins: torch.Tensor, dirs: torch.Tensor, pixel_angle: float = 0.0) -> RayHits:
        """Cast rays (N, 3) against all triangles; nearest hit wins."""
        origins, dirs = origins.float(), dirs.float()
        out = RayHits.empty(origins.shape[0], origins.device, origins.dtype)
        _, _, meets = sphere_intersect(origins, dirs, self.bound)
        idx = meets.nonzero().squeeze(1)
        if idx.numel() == 0:
            return out
        t, face = self._closest_hits(origins[idx], dirs[idx])
        hit = torch.isfinite(t)
        idx, t, face = idx[hit], t[hit], face[hit]
        points = origins[idx] + t[:, None] * dirs[idx]
        out.scatter(idx, True, t, self._colour(face, points), self.face_normal[face])
        return out

    def render(self, cameras: Cameras, supersample: int | None = None) -> SceneRender:
        ss = self.supersample if supersample is None else supersample
        return render_rays(self.trace, cameras.to("cpu"), ss)

    def sample_surface(self, n: int, gen: torch.Generator) -> torch.Tensor:
        """(n, 3) points uniform by area on the triangles."""
        area = torch.linalg.cross(self.tris[:, 1] - self.tris[:, 0], self.tris[:, 2] - self.tris[:, 0]).norm(dim=-1)
        face = torch.multinomial(area, n, replacement=True, generator=gen)
        r1, r2 = torch.rand(n, generator=gen).sqrt(), torch.rand(n, generator=gen)
        tri = self.tris[face]
        return (1 - r1)[:, None] * tri[:, 0] + (r1 * (1 - r2))[:, None] * tri[:, 1] + (r1 * r2)[:, None] * tri[:, 2]
