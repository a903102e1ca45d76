"""Scene-mode figures for `vsdream bench quality --only scene`: the analytic room from inside.

scene_psnr_db: stage 1's held-out inside views against the room's reference renders;
scene_mesh_psnr_db: the textured scene mesh (extracted surfaces, stage 3) on the same views.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from ..pipeline import run_job
from ..presets import make_spec


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
    return {"prior": spec.prior, "nerf_steps": spec.nerf.steps, "texture_steps": spec.texture.steps,
            "scene_psnr_db": round(out["nerf"]["psnr"], 2), "scene_mesh_psnr_db": round(out["texture"]["psnr"], 2),
            "mesh_faces": out["texture"]["particles"][0]["faces"], "seconds": round(seconds, 1),
            "target_psnr_db": 26.0}
