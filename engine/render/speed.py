"""Render speed figure: ms per stage-1 render forward+backward (`vsdream bench render`).

Uses the cpu-smoke field and cameras at 64², the occupancy grid refreshed as the stage loop would,
and prints min/median milliseconds over the timed steps as one JSON line, with the sampling step
size where the weight is (`weighted_step`: Σ w·δ / Σ w over the rendered rays; uniform bins give
the chord / samples, importance samples shrink it) and the samples the full pass evaluated.
`--importance N` adds N importance samples per ray (importance.py).
`--jitter` times the stratified jitter of one 512² step alone (262144 rays × `--samples`): the
per-ray device draw the renderer makes, beside one host draw per sample (what it did before).
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
from .geometry import sphere_intersect
from .jitter import device_generator, ray_offsets
from .packed import render_samples, transmittance_weights
from .volume import render_volume


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m engine.render.speed")
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    ap.add_argument("--no-occupancy", action="store_true")
    ap.add_argument("--importance", type=int, default=0, help="importance samples per ray (0: uniform bins only)")
    ap.add_argument("--jitter", action="store_true", help="time the jitter of one 512² step alone")
    ap.add_argument("--hashgrid", action="store_true", help="time the hash grid alone: memory-light vs reference")
    ap.add_argument("--points", type=int, default=1 << 18, help="--hashgrid: points per timed pass")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.hashgrid:
        print(json.dumps(hashgrid_timing(args.points, max(args.steps // 4, 2))))
        return 0
    if args.jitter:
        print(json.dumps(jitter_timing(512 * 512, args.samples, max(args.steps, 3))))
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
        out = render_volume(field, cams, bg, args.samples, spec.field.radius, gen=gen, occupancy=occ,
                            importance_samples=args.importance)
        loss = (out.rgb - 0.5).square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step >= 2:  # the first steps pay one-off allocation costs
            times.append((time.perf_counter() - t0) * 1000)
            occupied.append(occ.occupied_fraction() if occ is not None else 1.0)
    step = weighted_step(field, cams, args.samples, spec.field.radius, occ, args.importance)
    ball = weighted_step(HardBall(), cams, args.samples, spec.field.radius, None, args.importance)
    print(json.dumps({"resolution": args.resolution, "samples": args.samples, "importance": args.importance,
                      "threads": torch.get_num_threads(), "occupancy": occ is not None,
                      "ms_min": round(min(times), 1), "ms_median": round(statistics.median(times), 1),
                      "occupied_fraction": round(statistics.mean(occupied), 3),
                      "uniform_step": round(2 * spec.field.radius / args.samples, 5),
                      "weighted_step_field": round(step, 5), "weighted_step_hard_ball": round(ball, 5)}))
    return 0


class HardBall:
    """σ = 500 inside |x| < 0.5 (the blob's size): a hard surface for the step-size figure."""

    def density(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(x.norm(dim=-1) < 0.5, torch.full_like(x[:, 0], 500.0), torch.zeros_like(x[:, 0]))

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.density(x), torch.full_like(x, 0.5)


@torch.no_grad()
def weighted_step(field, cams, samples: int, radius: float, occupancy, importance: int,
                  gen: torch.Generator | None = None) -> float:
    """Σ wᵢ·δᵢ / Σ wᵢ over all rays: the sampling step size where the rendered weight is."""
    o, d = (a.reshape(-1, 3) for a in cams.rays())
    t0, t1, hit = sphere_intersect(o, d, radius)
    dgen = device_generator(gen, o.device)
    s = render_samples(field, o[hit], d[hit], t0[hit], t1[hit], samples, dgen, occupancy, 0.0, fine=importance)
    if not s.count:
        return float("nan")
    w, _ = transmittance_weights(field(s.points)[0].to(s.t_mid.dtype), s)
    return float((w * (s.t_end - s.t_start)).sum() / w.sum().clamp_min(1e-12))


def jitter_timing(rays: int, samples: int, repeats: int, device: str = "cpu") -> dict:
    """ms of one step's stratified jitter: the renderer's per-ray device draw (seeded by one draw from
    the stage's CPU generator) vs one host draw per sample copied to `device` (before)."""
    gen = torch.Generator().manual_seed(0)
    per_ray, per_sample = [], []
    for rep in range(repeats + 1):
        _sync(device)
        t0 = time.perf_counter()
        ray_offsets(rays, device_generator(gen, device), device)
        _sync(device)
        t1 = time.perf_counter()
        torch.rand((rays, samples), generator=gen).to(device)
        _sync(device)
        t2 = time.perf_counter()
        if rep:
            per_ray.append((t1 - t0) * 1e3)
            per_sample.append((t2 - t1) * 1e3)
    return {"bench": "jitter", "device": device, "rays": rays, "samples": samples,
            "ms_per_ray_device_draw": round(statistics.median(per_ray), 3),
            "ms_per_sample_host_draw_before": round(statistics.median(per_sample), 1)}


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
