"""Render speed figure: ms per stage-1 render forward+backward (`python -m engine.render.speed`).

Uses the cpu-smoke field and cameras at 64², the occupancy grid refreshed as the stage loop would,
and prints min/median milliseconds over the timed steps as one JSON line.
`--hashgrid` instead times the paper field's hash grid forward+backward per million samples with
the memory-light autograd function and with the reference one, in one run, and prints the ratio.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from ..cameras import CameraSampler
from ..field import Background, HashGridEncoding, OccupancyGrid, RadianceField, choose_background
from ..presets import cpu_smoke
from ..spec import FieldSpec
from .volume import render_volume


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m engine.render.speed")
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    ap.add_argument("--no-occupancy", action="store_true")
    ap.add_argument("--hashgrid", action="store_true", help="time the hash grid alone: memory-light vs reference")
    ap.add_argument("--points", type=int, default=1 << 18, help="--hashgrid: points per timed pass")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.hashgrid:
        print(json.dumps(hashgrid_timing(args.points, max(args.steps // 4, 2))))
        return 0
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


def hashgrid_timing(points: int, repeats: int, device: str = "cpu") -> dict:
    """Forward+backward ms per million samples of the paper field's grid, both backends, interleaved."""
    f = FieldSpec()
    x = (torch.rand(points, 3, generator=torch.Generator().manual_seed(0)) * 2 - 1).to(device)
    g = torch.randn(points, f.levels * f.features_per_level, generator=torch.Generator().manual_seed(1)).to(device)
    encs = {b: HashGridEncoding(f.levels, f.features_per_level, f.log2_table_size, f.base_resolution, f.growth,
                                gen=torch.Generator().manual_seed(2), backend=b).to(device)
            for b in ("torch", "torch-reference")}
    times: dict[str, list[float]] = {b: [] for b in encs}
    for rep in range(repeats + 1):
        for b, enc in encs.items():
            enc.table.grad = None
            _sync(device)
            t0 = time.perf_counter()
            (enc(x) * g).sum().backward()
            _sync(device)
            if rep:  # the first pass pays one-off allocations
                times[b].append((time.perf_counter() - t0) * 1e3 * 1e6 / points)
    new, old = statistics.median(times["torch"]), statistics.median(times["torch-reference"])
    return {"bench": "hashgrid", "device": device, "points": points, "levels": f.levels,
            "log2_table_size": f.log2_table_size, "ms_per_million_new": round(new, 1),
            "ms_per_million_reference": round(old, 1), "ratio_old_over_new": round(old / new, 3)}


def _sync(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


if __name__ == "__main__":
    raise SystemExit(main())
