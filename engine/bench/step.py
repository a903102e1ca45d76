"""`vsdream bench step`: the cost of one stage-1 VSD iteration with the Stable Diffusion prior.

Runs the real stage-1 step (engine/stages/nerf.py → engine/distill) on a random-weight SD model
and splits each iteration into: render (forward + backward, occupancy, sampling), VAE encode +
backward, pretrained UNet (CFG), ε_φ estimate, ε_φ training (forward + backward), optimisers.
The split comes from wrapping the prior's and ε_φ's methods on their instances, autograd hooks
at the VAE's input and output, and optimiser step hooks; nothing in the stage is changed.
Also: peak memory, FLOPs counted on one extra iteration (torch FlopCounterMode) and the
achieved TFLOP/s, next to the ≈6.5 TFLOP a 512² iteration must do (DESIGN.md §3).

`--flops-only` counts the diffusion part of an iteration on the meta device (no compute, any
machine): VAE encode + backward, UNet at batch 2 (CFG) + 1 (ε_φ) + forward and backward (training).
Both modes report `vae_input_hw` and `latent_hw`: the image side the VAE encodes (512 for SD-2.1,
whatever the render resolution) and the latent side the UNets see (64).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

FLOOR_TFLOP_512 = 6.5
GOAL_MS_H100, GOAL_GB = 45.0, 16.0
SPLITS = ("render", "vae", "unet_pretrained", "phi_estimate", "phi_training", "optimiser")


class StepSplitter:
    """Accumulates wall-clock per part of an iteration; synchronises CUDA at every boundary."""

    def __init__(self, device: torch.device):
        self.device = device
        self.seconds: dict[str, float] = defaultdict(float)
        self.marks: dict[str, float] = {}

    def now(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def timed(self, fn: Callable, key: str) -> Callable:
        def run(*args: Any, **kwargs: Any) -> Any:
            t0 = self.now()
            out = fn(*args, **kwargs)
            self.seconds[key] += self.now() - t0
            return out
        return run

    def mark(self, name: str) -> None:
        self.marks[name] = self.now()

    def since(self, name: str, key: str) -> None:
        if name in self.marks:
            self.seconds[key] += self.now() - self.marks.pop(name)

    def reset(self) -> None:
        self.seconds.clear()
        self.marks.clear()


def instrument(stage: Any, split: StepSplitter, shapes: dict[str, Any]) -> None:
    """Wrap the stage's prior, ε_φ and optimisers on their instances (bench only); `shapes` gets
    the side of the image the VAE encodes and of the latents the UNet sees."""
    prior, phi = stage.prior, stage.phi
    encode = prior.encode
    prior.vae.encoder.register_forward_pre_hook(
        lambda module, args: shapes.__setitem__("vae_input_hw", list(args[0].shape[-2:])))

    def timed_encode(rgb: torch.Tensor) -> torch.Tensor:
        t0 = split.now()
        x0 = encode(rgb)
        split.seconds["vae_forward"] += split.now() - t0
        shapes["latent_hw"] = list(x0.shape[-2:])
        if x0.requires_grad and rgb.requires_grad:  # backward: grad reaches x0 → VAE → grad reaches rgb
            x0.register_hook(lambda g: split.mark("vae_backward"))
            rgb.register_hook(lambda g: split.since("vae_backward", "vae_backward"))
        return x0

    prior.encode = timed_encode
    prior.predict_noise = split.timed(prior.predict_noise, "unet_pretrained")
    optimisers = [stage.opt]
    if phi is not None:
        phi.predict_noise = split.timed(phi.predict_noise, "phi_estimate")
        training_loss = phi.training_loss

        def marked_training_loss(*args: Any, **kwargs: Any) -> torch.Tensor:
            if "phi_training" not in split.marks:
                split.mark("phi_training")
            return training_loss(*args, **kwargs)

        phi.training_loss = marked_training_loss
        stage.opt_phi.register_step_pre_hook(lambda *_: split.since("phi_training", "phi_training"))
        optimisers.append(stage.opt_phi)
    for opt in optimisers:
        opt.register_step_pre_hook(lambda *_: split.mark("optimiser"))
        opt.register_step_post_hook(lambda *_: split.since("optimiser", "optimiser"))


def build_stage(model: str, resolution: int, device: torch.device, phi_model: str | None, folder: Path) -> Any:
    from ..context import JobContext
    from ..presets import make_spec
    from ..run_dir import RunDir
    from ..stages.nerf import NerfStage
    tiny = model == "tiny"
    overrides: dict[str, Any] = {
        "prior": "tiny-sd" if tiny else "sd21-random", "prompt": "a ceramic teapot", "phi_model": phi_model,
        "device": str(device),
        "nerf": {"steps": 1000, "method": "vsd", "resolution_schedule": [[0, resolution]], "batch_size": 1},
    }
    spec = make_spec("cpu-smoke" if tiny else "paper", overrides)
    ctx = JobContext(spec, RunDir(folder).create(), lambda event: None, device=device)
    return NerfStage(ctx)


def peak_memory_gb(device: torch.device) -> float | None:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    try:
        import resource  # POSIX only
    except ImportError:
        return None
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**30 if sys.platform == "darwin" else rss / 2**20  # bytes on macOS, KiB on Linux


def run_bench(model: str, resolution: int, device: torch.device, iters: int, warmup: int,
              phi_model: str | None = None) -> dict[str, Any]:
    split = StepSplitter(device)
    shapes: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="vsdream-bench-") as tmp:
        stage = build_stage(model, resolution, device, phi_model, Path(tmp))
        instrument(stage, split, shapes)
        step = 0
        for _ in range(warmup):
            stage.step(step)
            step += 1
        split.reset()
        stage.timer.seconds.clear()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        t0 = split.now()
        for _ in range(iters):
            stage.step(step)
            step += 1
        total = (split.now() - t0) / iters
        peak = peak_memory_gb(device)
        parts = {k: split.seconds[k] / iters for k in SPLITS if k not in ("render", "vae")}
        parts["vae"] = (split.seconds["vae_forward"] + split.seconds["vae_backward"]) / iters
        parts["render"] = render_seconds(stage.timer.seconds, split.seconds) / iters
        with FlopCounterMode(display=False) as counter:
            stage.step(step)
        flops = counter.get_total_flops()
        description = stage.prior.describe()
    result: dict[str, Any] = {
        "model": model, "prior": description, "resolution": resolution, "device": _device_name(device),
        "iters": iters, "ms_per_iter": 1000 * total,
        "split_ms": {k: 1000 * parts[k] for k in SPLITS},
        # what no part claims: Python between the parts; large or negative means a broken hook
        "unaccounted_ms": 1000 * (total - sum(parts.values())),
        "vae_input_hw": shapes.get("vae_input_hw"), "latent_hw": shapes.get("latent_hw"),
        "peak_memory_gb": peak, "tflop_per_iter": flops / 1e12,
        "achieved_tflops": flops / 1e12 / total,
        "floor_tflop_512": FLOOR_TFLOP_512,
    }
    if resolution == 512:
        result["floor_tflops_at_this_speed"] = FLOOR_TFLOP_512 / total
    if device.type == "cuda" and model == "sd21-random" and resolution == 512:
        result["goal_h100"] = {"ms": GOAL_MS_H100, "gb": GOAL_GB,
                               "met": 1000 * total <= GOAL_MS_H100 and (peak or 0) <= GOAL_GB}
    return result


def render_seconds(phases: dict[str, float], hooks: dict[str, float]) -> float:
    """The field's share, from the stage's own phase timer: occupancy update, the render phase
    (which also runs the VAE encode) and the backward phase (which also runs the VAE's backward)."""
    return (phases.get("occupancy", 0.0) + phases.get("render", 0.0) - hooks["vae_forward"]
            + phases.get("backward", 0.0) - hooks["vae_backward"])


def diffusion_flops(model: str, resolution: int) -> dict[str, Any]:
    """TFLOP of the diffusion part of one iteration, counted on the meta device (no compute)."""
    from ..priors.base import resize_square
    from ..priors.sd import encode_latents, native_image_size
    from ..priors.sd_builder import build_random
    meta = torch.device("meta")
    name = "tiny-sd" if model == "tiny" else "sd21-random"
    pre = build_random(name, meta, torch.float32, with_vae=True)
    phi = build_random(name + "-v", meta, torch.float32, with_vae=False)
    native = native_image_size(pre.unet, pre.vae)  # what the prior resizes every render to
    lat, width = native // 8, pre.unet.config.cross_attention_dim
    out: dict[str, Any] = {}

    def count(key: str, fn: Callable[[], None]) -> None:
        with FlopCounterMode(display=False) as counter:
            fn()
        out[key] = counter.get_total_flops() / 1e12

    def unet_call(unet: Any, batch: int) -> torch.Tensor:
        x = torch.empty(batch, 4, lat, lat, device=meta)
        t = torch.zeros(batch, dtype=torch.long, device=meta)
        return unet(x, t, encoder_hidden_states=torch.empty(batch, 77, width, device=meta)).sample

    render = torch.empty(1, resolution, resolution, 3, device=meta, requires_grad=True)
    shapes: dict[str, list[int]] = {}
    pre.vae.encoder.register_forward_pre_hook(lambda m, args: shapes.__setitem__("vae", list(args[0].shape[-2:])))

    def vae_pass() -> None:  # the prior's own path: resize to the native size, encode, backward
        latents = encode_latents(pre.vae, resize_square(render, native), torch.float32)
        shapes["latent"] = list(latents.shape[-2:])
        latents.sum().backward()

    count("vae_encode_backward", vae_pass)
    with torch.no_grad():
        count("unet_pretrained_cfg", lambda: unet_call(pre.unet, 2))
        count("phi_estimate", lambda: unet_call(phi.unet, 1))
    x = torch.empty(1, 4, lat, lat, device=meta, requires_grad=True)  # stands in for the LoRA's weight grads
    count("phi_training", lambda: phi.unet(x, torch.zeros(1, dtype=torch.long, device=meta),
                                          encoder_hidden_states=torch.empty(1, 77, width, device=meta)
                                          ).sample.sum().backward())
    out["total"] = sum(out.values())
    return {"tflop": out, "vae_input_hw": shapes["vae"], "latent_hw": shapes["latent"]}


def _device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def _print_table(r: dict[str, Any]) -> None:
    print(f"{r['prior']}\n{r['resolution']}² on {r['device']}: {r['ms_per_iter']:.1f} ms per iteration "
          f"(mean of {r['iters']})")
    for key, ms in [*r["split_ms"].items(), ("unaccounted", r["unaccounted_ms"])]:
        print(f"  {key:<16} {ms:9.1f} ms  {100 * ms / r['ms_per_iter']:5.1f} %")
    print(f"VAE encodes {r['vae_input_hw']} images into {r['latent_hw']} latents")
    if r["peak_memory_gb"] is not None:
        print(f"peak memory {r['peak_memory_gb']:.2f} GB")
    print(f"{r['tflop_per_iter']:.4g} TFLOP counted per iteration → {r['achieved_tflops']:.4g} TFLOP/s achieved")
    if "floor_tflops_at_this_speed" in r:
        print(f"the {FLOOR_TFLOP_512} TFLOP floor at this speed: {r['floor_tflops_at_this_speed']:.1f} TFLOP/s")
    if "goal_h100" in r:
        print(f"goal ≤ {GOAL_MS_H100} ms and ≤ {GOAL_GB} GB: {'met' if r['goal_h100']['met'] else 'not met'}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="vsdream bench step", description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=["sd21-random", "tiny"],
                    help="default: sd21-random on a GPU, tiny on the CPU")
    ap.add_argument("--resolution", type=int, choices=[64, 128, 256, 512], default=512)
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    ap.add_argument("--iters", type=int, help="timed iterations (default 10 on CUDA, 2 on CPU)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--phi-model", help="ε_φ base: default (the v-prediction twin) or 'shared'")
    ap.add_argument("--flops-only", action="store_true", help="count the diffusion FLOPs on the meta device")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)
    if args.flops_only:
        flops = diffusion_flops(args.model or "sd21-random", args.resolution)
        result: dict[str, Any] = {"model": args.model or "sd21-random", "resolution": args.resolution,
                                  "diffusion_tflop": flops["tflop"], "vae_input_hw": flops["vae_input_hw"],
                                  "latent_hw": flops["latent_hw"]}
        print(json.dumps(result, indent=None if args.json else 2))
        return 0
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    model = args.model
    if model is None:
        model = "sd21-random" if device.type == "cuda" else "tiny"
        if device.type == "cpu":
            print("no GPU: running the tiny random-weight model (ask for --model sd21-random to run "
                  "SD-2.1's architecture on the CPU: minutes per iteration)", file=sys.stderr)
    elif device.type == "cpu" and model == "sd21-random":
        print("sd21-random on the CPU: expect minutes per iteration", file=sys.stderr)
    iters = args.iters or (10 if device.type == "cuda" else 2)
    result = run_bench(model, args.resolution, device, iters, args.warmup, args.phi_model)
    if args.json:
        print(json.dumps(result))
    else:
        _print_table(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
