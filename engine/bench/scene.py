"""Scene-mode figures for `vsdream bench quality --only scene`: the analytic room from inside.

scene_psnr_db: stage 1's held-out inside views (an orbit at 0.8 looking at the centre and a 360°
pan from the centre looking out) against the room's reference renders, over its far field;
scene_mesh_psnr_db: the textured scene mesh (extracted surfaces, stage 3) on the same views, over
white (holes in the mesh count); scene_glb_psnr_db: the exported GLB itself (baked texture) on the
same views at 48², ray-cast (brute force: ~30 s). *_orbit / *_pan: the two paths separately.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from ..cameras import CameraSampler
from ..pipeline import run_job
from ..presets import make_spec
from ..preview import psnr
from ..priors.analytic import AnalyticPrior


def scene_figures(steps: int | None = None, texture_steps: int | None = None) -> dict[str, Any]:
    over: dict[str, Any] = {"field": {"kind": "scene"}, "seed": 0}
    if steps:
        over["nerf"] = {"steps": steps}
    if texture_steps is not None:
        over["texture"] = {"steps": texture_steps}
    spec = make_spec("cpu-smoke", over)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        out = run_job(spec, Path(tmp) / "run", lambda event: None)
        seconds = time.perf_counter() - t0
        cams, _ = CameraSampler(spec.camera).held_out_views(48)
        glb = AnalyticPrior.from_name(f"mesh={Path(tmp) / 'run' / 'result' / 'mesh.glb'}").reference_render(cams)
        glb_psnr = psnr(glb, AnalyticPrior.from_name("room").reference_render(cams))
    figures = {f"scene{stage}_psnr_db{path}": round(out[key][f"psnr{path}"], 2)
               for stage, key in (("", "nerf"), ("_mesh", "texture")) for path in ("", "_orbit", "_pan")}
    return {"prior": spec.prior, "nerf_steps": spec.nerf.steps, "texture_steps": spec.texture.steps, **figures,
            "scene_glb_psnr_db": round(glb_psnr, 2),
            "mesh_faces": out["texture"]["particles"][0]["faces"], "seconds": round(seconds, 1),
            "target_psnr_db": 26.0}
