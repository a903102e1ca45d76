"""Render speed figure: ms per stage-1 render forward+backward (`python -m engine.render.speed`).

Uses the cpu-smoke field and cameras at 64², the occupancy grid refreshed as the stage loop would,
and prints min/median milliseconds over the timed steps as one JSON line.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from ..cameras import CameraSampler
from ..field import Background, OccupancyGrid, RadianceField, choose_background
from ..presets import cpu_smoke
from .volume import render_volume


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m engine.render.speed")
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    ap.add_argument("--no-occupancy", action="store_true")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    spec = cpu_smoke()
    gen = torch.Generator().manual_seed(0)
    field = RadianceField(spec.field, gen=gen, backend="torch")
    bg_net = Background(gen=gen)
    occ = None if args.no_occupancy else OccupancyGrid(spec.field.radius, warmup_steps=0)
    opt = torch.optim.Adam(field.param_groups(spec.nerf) + bg_net.param_groups(spec.nerf), betas=(0.9, 0.99))
    sampler = CameraSampler(spec.camera)
    times, occupied = [], []
    for step in range(args.steps + 2):
        cams = sampler.sample(spec.nerf.batch_size, args.resolution, gen)
        t0 = time.perf_counter()
        if occ is not None:
            occ.update(field, step)
        bg = choose_background(spec.field.background, cams.rays()[1], bg_net, gen)
        out = render_volume(field, cams, bg, args.samples, spec.field.radius, gen=gen, occupancy=occ)
        loss = (out.rgb - 0.5).square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step >= 2:  # the first steps pay one-off allocation costs
            times.append((time.perf_counter() - t0) * 1000)
            occupied.append(occ.occupied_fraction() if occ is not None else 1.0)
    print(json.dumps({"resolution": args.resolution, "samples": args.samples, "threads": torch.get_num_threads(),
                      "occupancy": occ is not None, "ms_min": round(min(times), 1),
                      "ms_median": round(statistics.median(times), 1),
                      "occupied_fraction": round(statistics.mean(occupied), 3)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
