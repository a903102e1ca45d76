"""`vsdream bench quality`: what a user cares about, measured on the analytic prior (CPU).

- held-out PSNR of stage 1 against the reference scene, VSD and SDS, with seconds per iteration
  and its breakdown (render, prior, backward, ε_φ training, optimiser);
- the particle spread ratio on an image mixture (VSD ≈ 1, SDS → 0);
- a K=3 colour-variant mixture with 4 particles: which variant each particle lands on;
- with --only scene: scene mode on the analytic room, stage 1 and the textured scene mesh (bench/scene.py).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from ..stage_loop import run_stage
from ..stages.nerf import NerfStage, resolution_at
from .common import smoke_context
from .mixture2d import run_mixture2d
from .scene import scene_figures

VARIANTS = ["marker-red", "marker-green", "marker-blue"]


def run_nerf(method: str, overrides: dict[str, Any] | None = None, prior: str = "analytic:marker",
             particles: int = 1) -> tuple[NerfStage, float]:
    over = {"prior": prior, "particles": particles, "nerf": {"method": method}, "seed": 0}
    for k, v in (overrides or {}).items():
        over.setdefault(k, {}).update(v) if isinstance(v, dict) else over.__setitem__(k, v)
    with tempfile.TemporaryDirectory() as tmp:
        ctx = smoke_context(Path(tmp), over)
        stage = NerfStage(ctx)
        t0 = time.perf_counter()
        run_stage(ctx, stage)
        return stage, time.perf_counter() - t0


def nerf_figures(method: str, steps: int | None) -> dict[str, Any]:
    over = {"nerf": {"steps": steps}} if steps else None
    stage, seconds = run_nerf(method, over)
    res = resolution_at(stage.cfg, stage.total - 1)
    ev = stage.evaluate(res)
    return {"method": method, "steps": stage.total, "seconds": round(seconds, 1),
            "s_per_it": round(seconds / max(stage.total, 1), 4), "psnr_db": round(ev["psnr"], 2),
            "resolution": res, "breakdown_ms": {k: round(v, 1) for k, v in stage.timer.per_step_ms().items()}}


def variants_figures(steps: int | None) -> dict[str, Any]:
    """K=3 colour variants, 4 VSD particles: nearest variant and PSNR per particle (report only)."""
    from ..priors.analytic import AnalyticPrior
    over = {"nerf": {"steps": steps}} if steps else None
    stage, seconds = run_nerf("vsd", over, prior="analytic:" + ",".join(VARIANTS), particles=4)
    res = resolution_at(stage.cfg, stage.total - 1)
    cams = stage.sampler.held_out_orbit(res)
    white = torch.ones(cams.batch, res, res, 3)
    refs = [AnalyticPrior.from_name(v).reference_render(cams, white) for v in VARIANTS]
    from ..preview import psnr
    out = []
    with torch.no_grad():
        for i in range(len(stage.particles)):
            rgb = stage.render_views(cams, particle=i).rgb
            scores = [psnr(rgb, r) for r in refs]
            best = max(range(len(scores)), key=scores.__getitem__)
            out.append({"particle": i, "variant": VARIANTS[best], "psnr_db": round(scores[best], 2)})
    return {"seconds": round(seconds, 1), "particles": out}


def spread_figures(steps: int) -> dict[str, Any]:
    vsd = run_mixture2d("vsd", steps=steps)
    sds = run_mixture2d("sds", steps=steps)
    return {"vsd_spread_ratio": round(vsd.spread_ratio, 3), "sds_spread_ratio": round(sds.spread_ratio, 3),
            "vsd_mode_counts": vsd.mode_counts, "sds_mode_counts": sds.mode_counts,
            "targets": {"vsd": [0.7, 1.3], "sds_below": 0.2}}


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="vsdream bench quality")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--only", default="nerf,spread,variants", help="comma list of nerf, spread, variants, scene")
    ap.add_argument("--steps", type=int, help="override stage-1 steps (default: the cpu-smoke preset)")
    ap.add_argument("--spread-steps", type=int, default=3000)
    args = ap.parse_args(argv)
    parts = set(args.only.split(","))
    report: dict[str, Any] = {"device": "cpu", "threads": torch.get_num_threads()}
    sections = [("nerf_vsd", "nerf", lambda: nerf_figures("vsd", args.steps)),
                ("nerf_sds", "nerf", lambda: nerf_figures("sds", args.steps)),
                ("spread", "spread", lambda: spread_figures(args.spread_steps)),
                ("variants", "variants", lambda: variants_figures(args.steps)),
                ("scene", "scene", lambda: scene_figures(args.steps))]
    for key, part, run in sections:
        if part in parts:
            report[key] = run()
            if not args.json:  # long runs: show each figure as soon as it exists
                print(f"{key}: {report[key]}", flush=True)
    if "nerf" in parts:
        report["targets"] = {"psnr_db": 30.0, "seconds": 180.0}
    if args.json:
        print(json.dumps(report, indent=2))
    sys.stdout.flush()
    return 0
