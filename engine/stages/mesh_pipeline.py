"""The mesh half of a job, for engine.pipeline.run_job to call.

Text mode, after stage 1:     result.update(run_mesh_stages(ctx, nerf))
Re-texture mode (no stage 1): result.update(run_retexture(ctx))

Each stage resumes from its newest checkpoint through the shared stage loop, so calling these
again on the same run folder continues where the job stopped.
"""
from __future__ import annotations

from typing import Any

from ..context import JobContext
from ..mesh.mesh_io import DEFAULT_FACE_LIMIT, load_mesh
from ..report import write_contact_sheet
from ..stage_loop import run_stage
from .export import export_texture_stage
from .geometry import GeometryStage
from .texture import TextureStage


def report_texture(ctx: JobContext, texture: TextureStage, resolution: int = 128) -> dict[str, Any]:
    """Held-out evaluation of the textured meshes and their contact sheet (one row per particle)."""
    metrics = texture.evaluate(resolution, ctx.spec.camera.eval_views)
    metrics["contact_sheet"] = write_contact_sheet(ctx, metrics.pop("images"), "mesh_contact_sheet.png")
    return metrics


def _finish(ctx: JobContext, texture: TextureStage) -> dict[str, Any]:
    if ctx.spec.texture.enabled:
        run_stage(ctx, texture)
    out: dict[str, Any] = {"texture": report_texture(ctx, texture)}
    if ctx.spec.export.enabled:
        out["export"] = export_texture_stage(ctx, texture)
    return out


def run_mesh_stages(ctx: JobContext, nerf: Any) -> dict[str, Any]:
    """Stage 2 (geometry), stage 3 (texture) and export for every particle of a NerfStage."""
    geometry = GeometryStage.from_nerf(ctx, nerf)
    if ctx.spec.geometry.enabled:
        run_stage(ctx, geometry)
    out: dict[str, Any] = {"geometry": {"faces": [int(f.shape[0]) for _, f in geometry.meshes()],
                                        "grid_resolution": ctx.spec.geometry.grid_resolution}}
    out.update(_finish(ctx, TextureStage.from_stages(ctx, nerf, geometry)))
    return out


def run_retexture(ctx: JobContext, face_limit: int = DEFAULT_FACE_LIMIT) -> dict[str, Any]:
    """Load the user's mesh (clear MeshInputError before anything is written), texture, export."""
    spec = ctx.spec
    loaded = load_mesh(spec.input_mesh, face_limit=face_limit, decimate=spec.input_mesh_decimate)
    ctx.log(f"re-texturing {loaded.source.name}: {loaded.mesh.num_faces} faces, "
            f"{'its own UVs' if loaded.had_uvs else 'no UVs (will unwrap)'}"
            + (", decimated" if loaded.decimated else ""))
    out: dict[str, Any] = {"input": {"path": str(loaded.source), "faces": loaded.mesh.num_faces,
                                     "vertices": int(len(loaded.mesh.vertices)), "had_uvs": loaded.had_uvs,
                                     "decimated": loaded.decimated}}
    out.update(_finish(ctx, TextureStage.from_mesh_file(ctx, loaded)))
    return out
