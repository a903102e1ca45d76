"""`vsdream bench learned`: the unchanged SD path on learned weights (mini-SD), scored against the
world it learned (CPU; figures, not tests).

mini-SD (models/mini-sd, tools/train_mini_sd.py) is a latent diffusion model made of SD-2.1's parts,
trained here on renders of the built-in scenes. With it as the prior and the *shipped* `fast`
preset's settings — read from engine/presets.py at run time: CFG, learning rates, LoRA ε_φ, t
schedule, regularisers, cameras, samples per ray — only these change, and the report says so:
- step counts (steps, resolution-schedule and anneal steps) × `--scale` (default 0.05: 4000 → 200);
- resolutions capped at the model's native 64² (the prior resizes every render to it anyway);
- `--field cpu` (default) uses cpu-smoke's small hash grid: the paper's 16×2^19 table is the GPU size;
  `--field preset` keeps fast's.
Sections (`--only`): model (the model's own DDIM check), vsd and sds (stage 1 on "an orange toy
robot": held-out PSNR against the marker world, the trivial answers' PSNR as the bar, front marker on
−Y, saturation relative to the reference), diversity (4 particles on "a toy robot", which colour
variant each reaches, VSD vs SDS), mesh (the whole job: stage 1 → geometry → textured mesh), retexture
(a grey marker-toy mesh re-textured through mini-SD).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from ..cameras import CameraSampler, make_cameras
from ..preview import psnr
from .learned_model import CAPTIONS, marker_visible, model_figures

VARIANTS = ["marker-red", "marker-green", "marker-blue"]
EVAL_RES = 64  # the model's native size: finer detail than mini-SD knows cannot be asked of a run


def scaled_fast(scale: float, native: int = EVAL_RES, field: str = "cpu") -> dict[str, Any]:
    """Overrides that keep the shipped `fast` preset and scale only its step counts (and cap its
    resolutions at the prior's native size); read from the preset when called."""
    from ..presets import PRESETS
    fast = PRESETS["fast"]().to_dict()  # the shipped preset as it is now (it has no prompt of its own)
    over: dict[str, Any] = {}

    def steps(n: int) -> int:
        return max(1, int(round(n * scale)))

    for name in ("nerf", "geometry", "texture"):
        s = fast[name]
        over[name] = {"steps": steps(s["steps"]), "anneal_step": steps(s["anneal_step"]),
                      "resolution_schedule": [[steps(a) if a else 0, min(int(r), native)]
                                              for a, r in s["resolution_schedule"]],
                      "preview_every": 10**6, "preview_interval_s": 0.0, "checkpoint_every": 10**6}
    if field == "cpu":
        over["field"] = {k: v for k, v in PRESETS["cpu-smoke"]().to_dict()["field"].items()
                         if k in ("levels", "features_per_level", "log2_table_size", "base_resolution", "growth",
                                  "hidden")}
    return over


def _context(tmp: Path, overrides: dict[str, Any]):
    from ..context import JobContext
    from ..presets import make_spec
    from ..run_dir import RunDir
    from .common import quiet
    return JobContext(make_spec("fast", overrides), RunDir(tmp).create(), quiet)


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def reference(scene: str, cams) -> torch.Tensor:
    from ..priors.scenes import builtin_scene
    return builtin_scene(scene).render(cams, 2).over(None)


def mirrored_reference(scene: str, cams) -> torch.Tensor:
    """The scene mirrored across X (its +X arm on −X), seen by `cams`: the mirror-camera render flipped."""
    from ..priors.scenes import builtin_scene
    m = make_cameras(cams.elevation, -cams.azimuth, cams.distance, cams.fov_y, cams.width, cams.height)
    return builtin_scene(scene).render(m, 2).over(None).flip(2)


def saturation(rgb: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean HSV saturation over the masked pixels."""
    mx, mn = rgb.amax(-1), rgb.amin(-1)
    s = (mx - mn) / mx.clamp_min(1e-6)
    return float(s[mask].mean())


def trivial_bars(scene: str, cams, ref: torch.Tensor, wrong: str) -> dict[str, float]:
    """PSNR of the answers a run must beat: the mean colour, the mirrored world, the wrong variant."""
    mean = ref.mean(dim=(0, 1, 2), keepdim=True).expand_as(ref)
    return {"mean_colour": round(psnr(mean, ref), 2), "mirrored": round(psnr(mirrored_reference(scene, cams), ref), 2),
            f"wrong_variant_{wrong}": round(psnr(reference(wrong, cams), ref), 2)}


def _trained_stage1(over: dict[str, Any]) -> tuple[Any, Any, float, Any, list[torch.Tensor]]:
    """Stage 1 of the spec `over` run to the end in a scratch folder: the stage, its context, the
    seconds it took, the held-out orbit and each particle's renders of it."""
    from ..stage_loop import run_stage
    from ..stages.nerf import NerfStage
    with tempfile.TemporaryDirectory() as tmp:
        ctx = _context(Path(tmp), over)
        stage = NerfStage(ctx)
        t0 = time.perf_counter()
        run_stage(ctx, stage)
        seconds = time.perf_counter() - t0
        cams = stage.sampler.held_out_orbit(EVAL_RES)
        with torch.no_grad():
            renders = [stage.render_views(cams, particle=i).rgb.cpu() for i in range(len(stage.particles))]
    return stage, ctx, seconds, cams, renders


def stage1_figures(method: str, base: dict[str, Any], seed: int = 0) -> dict[str, Any]:
    """Stage 1 on "an orange toy robot" (the marker world): PSNR vs the reference and the bars."""
    over = _merge(base, {"prior": "mini-sd", "prompt": CAPTIONS["marker"], "seed": seed,
                         "nerf": {"method": method}})
    stage, ctx, seconds, cams, (rgb,) = _trained_stage1(over)
    ref = reference("marker", cams)
    fg = (ref - 1).abs().amax(-1) > 0.02
    front, back = marker_visible(rgb[:1]), marker_visible(rgb[cams.batch // 2:cams.batch // 2 + 1])
    bars = trivial_bars("marker", cams, ref, "marker-blue")
    p = psnr(rgb, ref)
    return {"method": method, "steps": stage.total, "seconds": round(seconds, 1), "psnr_db": round(p, 2),
            "bars_db": bars, "beats_bars": p > max(bars.values()),
            "marker_front_visible": bool(front[0]), "marker_back_visible": bool(back[0]),
            "saturation_ratio": round(saturation(rgb, fg) / saturation(ref, fg), 3),
            "settings": {k: getattr(ctx.spec.nerf, k) for k in ("guidance_scale", "lr_grid", "lr_mlp", "lr_phi",
                                                                "anneal_step", "t_max_annealed", "lambda_sparsity")}}


def diversity_figures(method: str, base: dict[str, Any], particles: int = 4) -> dict[str, Any]:
    """`particles` particles on the caption shared by the three colour variants: nearest variant each."""
    over = _merge(base, {"prior": "mini-sd", "prompt": CAPTIONS["marker-red"], "particles": particles,
                         "nerf": {"method": method}})
    stage, _, seconds, cams, renders = _trained_stage1(over)
    refs = {v: reference(v, cams) for v in VARIANTS}
    out = []
    for i, rgb in enumerate(renders):
        scores = {v: psnr(rgb, r) for v, r in refs.items()}
        best = max(scores, key=scores.__getitem__)
        out.append({"particle": i, "variant": best, "psnr_db": round(scores[best], 2)})
    return {"method": method, "steps": stage.total, "seconds": round(seconds, 1), "particles": out,
            "distinct_variants": len({o["variant"] for o in out})}


def mesh_figures(base: dict[str, Any]) -> dict[str, Any]:
    """The whole text job (stage 1 → geometry → texture → GLB) through mini-SD; PSNR of the textured mesh."""
    from ..pipeline import run_stages
    from ..priors.analytic import AnalyticPrior
    over = _merge(base, {"prior": "mini-sd", "prompt": CAPTIONS["marker"], "camera": {"eval_views": 8},
                         "export": {"texture_size": 256, "face_target": 5000}})
    with tempfile.TemporaryDirectory() as tmp:
        ctx = _context(Path(tmp), over)
        t0 = time.perf_counter()
        out = run_stages(ctx)
        seconds = time.perf_counter() - t0
        cams = CameraSampler(ctx.spec.camera).held_out_orbit(EVAL_RES)
        got = AnalyticPrior.from_name(f"mesh={ctx.run.result / 'mesh.glb'}").reference_render(cams, None)
    ref = reference("marker", cams)
    return {"seconds": round(seconds, 1), "steps": {k: getattr(ctx.spec, k).steps for k in ("nerf", "geometry", "texture")},
            "psnr_db_exported_glb": round(psnr(got, ref), 2), "bars_db": trivial_bars("marker", cams, ref, "marker-blue"),
            "marker_front_visible": bool(marker_visible(got[:1])[0]),
            "marker_back_visible": bool(marker_visible(got[cams.batch // 2:cams.batch // 2 + 1])[0]),
            "stages": {k: {m: v for m, v in out[k].items() if isinstance(v, (int, float))} for k in out
                       if isinstance(out[k], dict)}}


def _marker_meshes(folder: Path) -> tuple[Path, Path]:
    """The marker toy as a GLB with its colours baked, and the same mesh grey (bench mesh's recipe)."""
    import numpy as np

    from ..mesh.bake import bake_texture
    from ..mesh.cleanup import clean_mesh
    from ..mesh.dmtet import DMTet
    from ..mesh.gltf_export import write_glb
    from ..mesh.tetgrid import TetGrid
    from ..mesh.types import TexturedMesh
    from ..mesh.uv import unwrap
    from ..priors.scenes import builtin_scene
    from ..priors.sdf import scene_color, scene_sdf
    scene = builtin_scene("marker")
    v, f = DMTet.from_sdf_fn(lambda p: scene_sdf(scene, p), TetGrid.cube(40, 0.8)).extract()
    v, f = clean_mesh(v.detach().numpy(), f.numpy(), 1500)
    layout = unwrap(v, f, 60, 512)
    texture = bake_texture(v, layout, lambda p: scene_color(scene, p), 512)
    ref, grey = folder / "reference.glb", folder / "grey.glb"
    write_glb(ref, TexturedMesh(v[layout.vmapping], layout.faces, layout.uvs, texture))
    write_glb(grey, TexturedMesh(v[layout.vmapping], layout.faces, layout.uvs, np.full_like(texture, 0.5)))
    return ref, grey


def retexture_figures(base: dict[str, Any]) -> dict[str, Any]:
    """A grey mesh of the marker toy re-textured with "an orange toy robot": PSNR of the exported GLB
    against the coloured mesh, beside the grey start's."""
    from ..pipeline import run_stages
    from ..priors.analytic import AnalyticPrior
    with tempfile.TemporaryDirectory() as tmp:
        ref, grey = _marker_meshes(Path(tmp))
        over = _merge(base, {"mode": "retexture", "input_mesh": str(grey), "prior": "mini-sd",
                             "prompt": CAPTIONS["marker"], "camera": {"eval_views": 8},
                             "export": {"texture_size": 512}})
        ctx = _context(Path(tmp) / "run", over)
        t0 = time.perf_counter()
        run_stages(ctx)
        seconds = time.perf_counter() - t0
        cams = CameraSampler(ctx.spec.camera).held_out_orbit(EVAL_RES)
        got = AnalyticPrior.from_name(f"mesh={ctx.run.result / 'mesh.glb'}").reference_render(cams, None)
        want = AnalyticPrior.from_name(f"mesh={ref}").reference_render(cams, None)
        start = AnalyticPrior.from_name(f"mesh={grey}").reference_render(cams, None)
    fg = (want - 1).abs().amax(-1) > 0.02
    return {"steps": ctx.spec.texture.steps, "seconds": round(seconds, 1), "psnr_db_exported_glb": round(psnr(got, want), 2),
            "psnr_db_grey_start": round(psnr(start, want), 2),
            "saturation_ratio": round(saturation(got, fg) / saturation(want, fg), 3),
            "marker_front_visible": bool(marker_visible(got[:1])[0])}


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="vsdream bench learned")
    ap.add_argument("--json", action="store_true", help="print one JSON object at the end")
    ap.add_argument("--only", default="model,vsd,sds,diversity,retexture",
                    help="comma list of model, vsd, sds, diversity, mesh, retexture")
    ap.add_argument("--scale", type=float, default=0.05, help="× the fast preset's step counts (default 0.05)")
    ap.add_argument("--field", choices=["cpu", "preset"], default="cpu",
                    help="cpu: cpu-smoke's small hash grid (default); preset: fast's own (GPU-sized)")
    ap.add_argument("--samples", type=int, default=8, help="model check: DDIM samples per caption and view")
    args = ap.parse_args(argv)
    if not (0 < args.scale <= 1 and math.isfinite(args.scale)):
        print("vsdream bench learned: --scale must be in (0, 1]", file=sys.stderr)
        return 2
    parts = args.only.split(",")
    base = scaled_fast(args.scale, field=args.field)
    report: dict[str, Any] = {"device": "cpu", "threads": torch.get_num_threads(), "scale": args.scale,
                              "field": args.field, "overrides": base}
    sections = {"model": lambda: model_figures(per_prompt=args.samples),
                "vsd": lambda: stage1_figures("vsd", base), "sds": lambda: stage1_figures("sds", base),
                "diversity": lambda: {m: diversity_figures(m, base) for m in ("vsd", "sds")},
                "mesh": lambda: mesh_figures(base), "retexture": lambda: retexture_figures(base)}
    for part in parts:
        if part not in sections:
            print(f"vsdream bench learned: unknown section {part!r}; use {', '.join(sections)}", file=sys.stderr)
            return 2
    for part in parts:
        t0 = time.perf_counter()
        report[part] = sections[part]()
        report[part]["section_seconds"] = round(time.perf_counter() - t0, 1)
        if not args.json:  # long runs: each figure as soon as it exists
            print(f"{part}: {json.dumps(report[part])}", flush=True)
    if args.json:
        print(json.dumps(report, indent=2))
    return 0
