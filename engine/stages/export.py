"""Export: every particle's textured mesh as GLB (and OBJ+MTL+PNG on request) in <run>/result/.

Text mode: the texture stage's (already cleaned and decimated) mesh is unwrapped with xatlas
under the spec's time bound, the colour field is baked into a texture_size² texture, and the GLB
carries the prompt, seed and spec in asset.extras. Re-texture mode bakes into the user's own UVs
when the mesh has them (unwrapping otherwise) and writes the user's original coordinates, so the
result drops into the scene in place; the bare texture PNG is written too.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import __version__
from ..context import JobContext
from ..events import Artifact, Progress, StageStarted
from ..mesh.bake import bake_texture
from ..mesh.gltf_export import png_bytes, write_glb, write_obj
from ..mesh.mesh_io import LoadedMesh
from ..mesh.types import TexturedMesh
from ..mesh.uv import UVLayout, unwrap
from ..run_dir import atomic_write_bytes

ColorFn = Callable[[torch.Tensor], torch.Tensor]


def glb_extras(ctx: JobContext, particle: int, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    s = ctx.spec
    out = {"generator": f"VSDream {__version__}", "prompt": s.prompt, "negative_prompt": s.negative_prompt,
           "seed": s.seed, "particle": particle, "preset": s.preset, "prior": s.prior, "mode": s.mode,
           "spec": s.to_dict()}
    out.update(extra or {})
    return out


def export_mesh(vertices: np.ndarray, faces: np.ndarray, color_fn: ColorFn, out_base: Path, *,
                texture_size: int, formats: list[str], unwrap_timeout_s: float, extras: dict[str, Any],
                loaded: LoadedMesh | None = None, raster=None, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Unwrap (or reuse UVs), bake, write. Returns paths and timings; `out_base` has no suffix."""
    t0 = time.perf_counter()
    if loaded is not None and loaded.had_uvs:
        layout = UVLayout(np.arange(len(vertices)), np.asarray(faces), loaded.mesh.uvs, "input")
    else:
        layout = unwrap(vertices, faces, unwrap_timeout_s, texture_size)
    t_uv = time.perf_counter()
    texture = bake_texture(vertices, layout, color_fn, texture_size, raster, device)
    t_bake = time.perf_counter()
    out_vertices = np.asarray(vertices)[layout.vmapping]
    if loaded is not None:
        out_vertices = loaded.to_original(out_vertices)
        extras = {**extras, "normalization": {"center": loaded.center.tolist(), "scale": loaded.scale},
                  "source": str(loaded.source)}
    mesh = TexturedMesh(out_vertices.astype(np.float32), np.asarray(layout.faces), layout.uvs, texture)
    files = {"glb": str(write_glb(out_base.with_suffix(".glb"), mesh, {**extras, "uv_method": layout.method}))}
    if "obj" in formats:
        files["obj"] = [str(p) for p in write_obj(out_base.with_suffix(".obj"), mesh)]
    if loaded is not None:  # the bare texture, for swapping the image of the user's own material
        png = out_base.with_name(out_base.name + "_albedo.png")  # the OBJ writer's name for it too
        if "obj" in files:
            files["obj"] = [p for p in files["obj"] if p != str(png)]
        else:
            atomic_write_bytes(png, png_bytes(texture))
        files["texture"] = str(png)
    t_end = time.perf_counter()
    return {"files": files, "faces": int(len(layout.faces)), "vertices": int(len(out_vertices)),
            "uv_method": layout.method, "seconds": {"unwrap": t_uv - t0, "bake": t_bake - t_uv,
                                                    "write": t_end - t_bake, "total": t_end - t0}}


def export_all(ctx: JobContext, meshes: list[tuple[torch.Tensor, torch.Tensor]], color_fns: list[ColorFn],
               loaded: LoadedMesh | None = None, raster=None) -> dict[str, Any]:
    """Write every particle's mesh into <run>/result/ (mesh.glb, or mesh_<i>.glb for several
    particles); emits one Artifact per file (roles: mesh, mesh_obj, texture)."""
    spec = ctx.spec.export
    n = len(meshes)
    results = []
    ctx.emit(StageStarted("export", n))  # docs/protocol.md: a `stage` event per stage, export included
    for i, ((v, f), color_fn) in enumerate(zip(meshes, color_fns, strict=True)):
        base = ctx.run.result / ("mesh" if n == 1 else f"mesh_{i}")
        with torch.no_grad():
            info = export_mesh(v.detach().cpu().numpy(), f.cpu().numpy(), color_fn, base,
                               texture_size=spec.texture_size, formats=spec.formats,
                               unwrap_timeout_s=spec.unwrap_timeout_s, extras=glb_extras(ctx, i),
                               loaded=loaded, raster=raster, device=ctx.device)
        if info["uv_method"] == "grid":
            ctx.log(f"particle {i}: xatlas did not finish within {spec.unwrap_timeout_s:g}s; "
                    "used a per-triangle atlas instead", "warning")
        for role, paths in info["files"].items():
            for p in paths if isinstance(paths, list) else [paths]:
                path = Path(p)
                ctx.emit(Artifact(path.name, str(path), path.stat().st_size,
                                  role={"glb": "mesh", "obj": "mesh_obj", "texture": "texture"}[role]))
        results.append({"particle": i, **info})
        ctx.emit(Progress("export", i + 1, n))
    return {"particles": results}


def export_texture_stage(ctx: JobContext, texture: Any) -> dict[str, Any]:
    """Export a finished TextureStage (its meshes and colour fields)."""
    return export_all(ctx, texture.meshes, [texture.albedo_fn(i) for i in range(len(texture.meshes))],
                      texture.loaded, texture.raster)
