"""One short stage-1 VSD run with the random-weight SD-2.1 prior, for `make gpu-check`.

Runs `--steps` iterations of the real NerfStage at `--resolution`² on CUDA with whatever
accelerators VSDREAM_ACCEL allows (the parent sets it per run) and prints one JSON line: which hash
grid and ray marcher ran, ms per iteration, peak GPU memory, and whether the losses stayed finite.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="tools/gpu_stage1.py")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--resolution", type=int, default=512)
    ap.add_argument("--prior", default="sd21-random")
    ap.add_argument("--device", default="cuda", help="cuda, or cpu (with --prior tiny-sd) to check this script itself")
    args = ap.parse_args(argv)

    import torch

    from engine import accel
    from engine.context import JobContext
    from engine.presets import make_spec
    from engine.render.volume import _nerfacc_kernels
    from engine.run_dir import RunDir
    from engine.stages.nerf import NerfStage

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(json.dumps({"ok": False, "error": "no CUDA device"}))
        return 2
    cuda = device.type == "cuda"

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(device)

    spec = make_spec("paper" if cuda else "cpu-smoke", {
        "prior": args.prior, "prompt": "a ceramic teapot", "device": str(device),
        "nerf": {"steps": args.steps, "method": "vsd", "resolution_schedule": [[0, args.resolution]],
                 "batch_size": 1}})
    with tempfile.TemporaryDirectory(prefix="vsdream-gpu-check-") as tmp:
        t_build = time.perf_counter()
        ctx = JobContext(spec, RunDir(Path(tmp)).create(), lambda event: None, device=device)
        stage = NerfStage(ctx)
        build_s = time.perf_counter() - t_build
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
        times, finite = [], True
        last: dict[str, float] = {}
        for step in range(args.steps):
            sync()
            t0 = time.perf_counter()
            last = stage.step(step)
            sync()
            times.append(time.perf_counter() - t0)
            finite = finite and all(math.isfinite(float(v)) for v in last.values())
        steady = times[3:] or times
        result = {
            "ok": finite, "accel_env": os.environ.get(accel.ENV, "auto"),
            "hash_grid": stage.particles[0].field.encoding.backend,
            "ray_marching": "nerfacc-cuda" if cuda and accel.allowed("nerfacc") and _nerfacc_kernels() else "batched-torch",
            "steps": args.steps, "resolution": args.resolution, "build_s": round(build_s, 1),
            "total_s": round(sum(times), 1), "ms_per_iter_median": round(1000 * statistics.median(steady), 1),
            "peak_memory_gb": round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if cuda else None,
            "last_losses": {k: float(v) for k, v in last.items()},
        }
    print(json.dumps(result))
    return 0 if finite else 1


if __name__ == "__main__":
    raise SystemExit(main())
