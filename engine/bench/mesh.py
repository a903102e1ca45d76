"""`vsdream bench mesh`: the mesh stages measured on the analytic prior (CPU, a few minutes).

- extraction: Chamfer-L1 of the surface extracted from a "stage-1 density" to the reference
  surface. By default the density is the marker scene's analytic SDF made into a density
  (50·sigmoid(−sdf/0.01), threshold 25), i.e. a perfect stage 1; `--from-nerf` trains the real
  cpu-smoke stage 1 instead (adds minutes, and its Chamfer reflects stage 1's quality).
- refinement: the same density with a smooth ±0.03 perturbation (a stand-in for an imperfect
  stage 1), then the geometry stage (SDS on normal maps against the analytic normal-map prior):
  Chamfer before and after; and the same from the exact density (refinement must not spoil it).
- texture: held-out PSNR at 128² (2×2 supersampled like the reference) of the textured mesh after
  stage 3 (VSD, a fresh colour field: no stage 1 to inherit from here).
- re-texture: a reference mesh with known colours (the marker toy, centred in the unit sphere),
  given grey; held-out PSNR after stage 3 and of the exported GLB itself.
- export: clean-up + xatlas + 1024² bake of a colour field + GLB write for a ~100k-face mesh.
- pipeline: the whole cpu-smoke job (stage 1 → mesh → texture → GLB), as `make demo` runs it:
  held-out PSNR of stage 1 and of the textured mesh (the figure an artist sees).
Chamfer is reported in unit-sphere scale: distances divided by the reference's bounding radius.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..presets import make_spec
from .common import quiet, smoke_context

TARGETS = {"chamfer_l1": 0.01, "texture_psnr_db": 28.0, "retexture_psnr_db": 28.0, "export_100k_s": 30.0}


def _marker():
    from ..priors.scenes import builtin_scene, sample_surface
    from ..priors.sdf import scene_color, scene_sdf
    scene = builtin_scene("marker")
    ref = sample_surface(scene, 20000, torch.Generator().manual_seed(0))
    radius = float(ref.norm(dim=-1).max())
    return scene, ref, radius, (lambda p: scene_sdf(scene, p)), (lambda p: scene_color(scene, p))


def _density(sdf: Callable, perturb: float = 0.0) -> Callable[[torch.Tensor], torch.Tensor]:
    def density(x: torch.Tensor) -> torch.Tensor:
        s = sdf(x)
        if perturb:
            s = s + perturb * torch.sin(7 * x[:, 0] + 1) * torch.sin(6 * x[:, 1] + 2) * torch.sin(5 * x[:, 2] + 0.5)
        return 50.0 * torch.sigmoid(-s / 0.01)
    return density


def _chamfer(v: torch.Tensor, f: torch.Tensor, sdf: Callable, ref: torch.Tensor, radius: float) -> float:
    from ..mesh.metrics import chamfer_to_surface
    return round(chamfer_to_surface(v, f, sdf, ref[:8000], 8000, torch.Generator().manual_seed(1)) / radius, 5)


def extraction_figures(resolutions: list[int], from_nerf: bool) -> dict[str, Any]:
    """Per density: its iso-level (25 for the analytic one; the silhouette-matched level for a
    trained field, as the geometry stage picks it), then one extraction per grid resolution."""
    from ..mesh.extract import dmtet_from_density, silhouette_threshold
    from ..stages.texture import prepare_mesh
    _, ref, radius, sdf, _ = _marker()
    out: dict[str, Any] = {"density": "analytic marker SDF as density (perfect stage 1)"}
    densities = {"analytic": _density(sdf)}
    if from_nerf:
        from .quality import run_nerf
        stage, seconds = run_nerf("vsd")
        densities["nerf"] = stage.particles[0].density
        out["nerf_seconds"] = round(seconds, 1)
    for name, density in densities.items():
        t_level = time.perf_counter()
        threshold = silhouette_threshold(density, 1.0)[0] if name == "nerf" else 25.0
        level_seconds = time.perf_counter() - t_level
        for res in resolutions:
            t0 = time.perf_counter()
            v, f = dmtet_from_density(density, res, threshold).extract()
            entry = {"level": round(threshold, 2), "faces": int(f.shape[0]),
                     "chamfer_l1": _chamfer(v.detach(), f, sdf, ref, radius),
                     "seconds": round(level_seconds + time.perf_counter() - t0, 2)}
            if name == "nerf":  # as exported: hidden components and small pieces dropped (no decimation)
                vp, fp = prepare_mesh(v, f, 10**7)
                entry.update(prepared_faces=int(fp.shape[0]), prepared_chamfer_l1=_chamfer(vp, fp, sdf, ref, radius))
            out[f"{name}_grid{res}"] = entry
    return out


def refinement_figures(steps: int, grid: int, lr: float, resolution: int = 256) -> dict[str, Any]:
    """Geometry stage from a perturbed density (can it recover?) and from the exact one (does it hold?).

    The ±0.03 perturbation covers every side, so the cameras do too (elevation ±80°). Normal maps at
    256²: the bumps are a pixel or two at 64², and Chamfer after refinement went 0.0148 (64²) →
    0.0109 (128²) → 0.0081 (256²) when measured.
    """
    from ..stages.geometry import GeometryStage
    _, ref, radius, sdf, _ = _marker()
    elevation = [-80.0, 80.0]
    out: dict[str, Any] = {"grid": grid, "steps": steps, "render_resolution": resolution, "elevation_deg": elevation}
    for start, perturb in (("perturbed", 0.03), ("exact", 0.0)):
        with tempfile.TemporaryDirectory() as tmp:
            ctx = smoke_context(Path(tmp), {"camera": {"elevation_deg": elevation},
                                   "geometry": {"steps": steps, "grid_resolution": grid, "lr_geometry": lr,
                                                "guidance_scale": 1.0, "resolution_schedule": [[0, resolution]]}})
            stage = GeometryStage(ctx, [_density(sdf, perturb=perturb)], [None])
            v, f = stage.meshes()[0]
            before = _chamfer(v, f, sdf, ref, radius)
            t0 = time.perf_counter()
            for step in range(steps):
                stage.step(step)
            seconds = time.perf_counter() - t0
            v, f = stage.meshes()[0]
            out[start] = {"faces": int(f.shape[0]), "chamfer_l1_before": before,
                          "chamfer_l1_after": _chamfer(v, f, sdf, ref, radius), "s_per_it": round(seconds / max(steps, 1), 3)}
    return out


def texture_figures(steps: int, grid: int) -> dict[str, Any]:
    from ..mesh.dmtet import DMTet
    from ..mesh.tetgrid import TetGrid
    from ..representation import new_color_field
    from ..stages.texture import TextureStage, prepare_mesh
    scene, _, _, sdf, _ = _marker()
    v, f = DMTet.from_sdf_fn(sdf, TetGrid.cube(grid, 0.8)).extract()
    v, f = prepare_mesh(v, f, 60_000)
    with tempfile.TemporaryDirectory() as tmp:
        ctx = smoke_context(Path(tmp), {"texture": {"steps": steps, "resolution_schedule": [[0, 64]]}})
        stage = TextureStage(ctx, [(v, f)], [new_color_field(ctx.spec, ctx.generator("bench"))], None)
        t0 = time.perf_counter()
        for step in range(steps):
            stage.step(step)
        seconds = time.perf_counter() - t0
        ev = stage.evaluate(128, 8)
    return {"method": ctx.spec.texture.method, "steps": steps, "faces": int(f.shape[0]), "train_resolution": 64,
            "psnr_db_128": round(ev["psnr"], 2), "s_per_it": round(seconds / max(steps, 1), 3)}


def retexture_figures(steps: int) -> dict[str, Any]:
    from ..cameras import CameraSampler
    from ..mesh.bake import bake_texture
    from ..mesh.cleanup import clean_mesh
    from ..mesh.dmtet import DMTet
    from ..mesh.gltf_export import write_glb
    from ..mesh.tetgrid import TetGrid
    from ..mesh.types import TexturedMesh
    from ..mesh.uv import unwrap
    from ..pipeline import run_stages
    from ..preview import psnr
    from ..priors.analytic import AnalyticPrior
    scene, _, _, sdf, color = _marker()
    v, f = DMTet.from_sdf_fn(sdf, TetGrid.cube(40, 0.8)).extract()
    v, f = clean_mesh(v.detach().numpy(), f.numpy(), 1500)  # the mesh scene is ray-cast brute force
    centre = 0.5 * (v.min(0) + v.max(0))
    layout = unwrap(v, f, 60, 512)
    texture = bake_texture(v, layout, color, 512)
    vn = ((v - centre) / np.linalg.norm(v - centre, axis=1).max())[layout.vmapping]
    with tempfile.TemporaryDirectory() as tmp:
        ref, grey = Path(tmp) / "reference.glb", Path(tmp) / "grey.glb"
        write_glb(ref, TexturedMesh(vn, layout.faces, layout.uvs, texture))
        write_glb(grey, TexturedMesh(vn, layout.faces, layout.uvs, np.full_like(texture, 0.5)))
        ctx = smoke_context(Path(tmp) / "run", {
            "mode": "retexture", "input_mesh": str(grey), "prior": f"analytic:mesh={ref}",
            "texture": {"steps": steps, "guidance_scale": 1.0, "resolution_schedule": [[0, 48]]},
            "camera": {"eval_views": 4}, "export": {"texture_size": 512}})
        t0 = time.perf_counter()
        out = run_stages(ctx)
        seconds = time.perf_counter() - t0
        cams = CameraSampler(ctx.spec.camera).held_out_orbit(128, 4)
        white = torch.ones(4, 128, 128, 3)
        got = AnalyticPrior.from_name(f"mesh={ctx.run.result / 'mesh.glb'}").reference_render(cams, white)
        want = AnalyticPrior.from_name(f"mesh={ref}").reference_render(cams, white)
        return {"method": ctx.spec.texture.method, "steps": steps, "faces": out["input"]["faces"], "train_resolution": 48,
                "psnr_db_128_stage3": round(out["texture"]["psnr"], 2), "psnr_db_128_exported_glb": round(psnr(got, want), 2),
                "seconds": round(seconds, 1)}


def export_figures(grid: int, texture_size: int) -> dict[str, Any]:
    from ..mesh.cleanup import clean_mesh
    from ..mesh.dmtet import DMTet
    from ..mesh.tetgrid import TetGrid
    from ..representation import new_color_field
    from ..stages.export import export_mesh
    scene, _, _, sdf, _ = _marker()
    v, f = DMTet.from_sdf_fn(sdf, TetGrid.cube(grid, 0.8)).extract()
    raw_faces = int(f.shape[0])
    field = new_color_field(make_spec("cpu-smoke"), torch.Generator().manual_seed(0))
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        vc, fc = clean_mesh(v.detach().numpy(), f.numpy(), 100_000)
        t1 = time.perf_counter()
        info = export_mesh(vc, fc, field.albedo, Path(tmp) / "mesh", texture_size=texture_size, formats=["glb"],
                           unwrap_timeout_s=120.0, extras={"bench": True})
        total = time.perf_counter() - t0
        size = Path(info["files"]["glb"]).stat().st_size
    secs = {k: round(s, 2) for k, s in info["seconds"].items()}
    return {"raw_faces": raw_faces, "faces": info["faces"], "texture_size": texture_size, "uv_method": info["uv_method"],
            "seconds": {"cleanup": round(t1 - t0, 2), **secs, "total_with_cleanup": round(total, 2)},
            "glb_mb": round(size / 2**20, 2)}


def pipeline_figures() -> dict[str, Any]:
    """The cpu-smoke job end to end; Chamfer of the exported GLB (the surface the artist gets,
    read back in Blender's frame) shows what stage 1's field leaves for the mesh stages."""
    from ..mesh.mesh_io import load_mesh
    from ..pipeline import run_job
    _, ref, radius, sdf, _ = _marker()
    spec = make_spec("cpu-smoke", {"prior": "analytic:marker", "seed": 0})
    with tempfile.TemporaryDirectory() as tmp:
        out = run_job(spec, Path(tmp), quiet)
        loaded = load_mesh(Path(tmp) / "result" / "mesh.glb")
    v = torch.from_numpy(loaded.to_original(loaded.mesh.vertices)).float()
    return {"stage1_psnr_db_64": round(out["nerf"]["psnr"], 2), "textured_psnr_db_128": round(out["texture"]["psnr"], 2),
            "exported_faces": int(loaded.mesh.faces.shape[0]),
            "exported_chamfer_l1": _chamfer(v, torch.from_numpy(loaded.mesh.faces), sdf, ref, radius),
            "steps": {k: getattr(spec, k).steps for k in ("nerf", "geometry", "texture")}, "seconds": round(out["seconds"], 1)}


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="vsdream bench mesh")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--only", default="extract,refine,texture,retexture,export,pipeline",
                    help="comma list of extract, refine, texture, retexture, export, pipeline")
    ap.add_argument("--from-nerf", action="store_true", help="also extract from a real cpu-smoke stage 1 (slow)")
    ap.add_argument("--refine-steps", type=int, default=100)
    ap.add_argument("--texture-steps", type=int, default=200)
    ap.add_argument("--retexture-steps", type=int, default=150)
    args = ap.parse_args(argv)
    parts = set(args.only.split(","))
    report: dict[str, Any] = {"device": "cpu", "threads": torch.get_num_threads(), "targets": TARGETS}
    t0 = time.perf_counter()
    if "extract" in parts:
        report["extract"] = extraction_figures([64, 128], args.from_nerf)
    if "refine" in parts:
        report["refine"] = refinement_figures(args.refine_steps, 32, 3e-2)
    if "texture" in parts:
        report["texture"] = texture_figures(args.texture_steps, 64)
    if "retexture" in parts:
        report["retexture"] = retexture_figures(args.retexture_steps)
    if "export" in parts:
        report["export"] = export_figures(128, 1024)
    if "pipeline" in parts:
        report["pipeline"] = pipeline_figures()
    report["seconds"] = round(time.perf_counter() - t0, 1)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for key, value in report.items():
            print(f"{key}: {value}")
    sys.stdout.flush()
    return 0
