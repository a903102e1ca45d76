"""`vsdream run`: run a job from a preset (or resume one) with a progress bar and ETA."""
from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from .cli_spec import SET_HELP, parse_set, read_run_spec, report
from .errors import JobCancelled, error_code
from .events import Event, Log, Preview, Progress, StageStarted
from .presets import DEFAULT_PRESET, PRESETS, make_spec
from .priors.registry import prior_syntax
from .spec import SpecError

__all__ = ["main", "parse_set"]


class ProgressPrinter:
    """tqdm bar per stage; log lines and preview paths printed above it."""

    def __init__(self) -> None:
        from tqdm import tqdm
        self._tqdm = tqdm
        self.bar = None

    def __call__(self, ev: Event) -> None:
        if isinstance(ev, StageStarted):
            self.close()
            self.bar = self._tqdm(total=ev.total, initial=ev.resumed_from, desc=ev.stage, unit="it",
                                  dynamic_ncols=True)
        elif isinstance(ev, Progress) and self.bar is not None:
            self.bar.update(ev.step - self.bar.n)
            self.bar.set_postfix({k: f"{v:.3g}" for k, v in list(ev.losses.items())[:3]})
        elif isinstance(ev, Preview) and self.bar is not None:
            self.bar.write(f"preview {ev.stage} step {ev.step}: {ev.path}")
        elif isinstance(ev, Log):
            (self.bar.write if self.bar else print)(f"[{ev.level}] {ev.message}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def fit_gate(spec, free_gb: float | None, force: bool) -> int | None:
    """Print the fit check (device, estimated peak memory and time); 2 when the job cannot fit and
    --force is not given, None to go on. A CPU job is checked against system RAM (engine/fit_check.py)."""
    from .devices import DeviceUnavailable
    from .fit_check import fit_check
    if free_gb is not None and not free_gb > 0:
        print(f"vsdream: --free-gb {free_gb}: a number of GB above 0", file=sys.stderr)
        return 2
    try:
        check = fit_check(spec, free_gb=free_gb, suggest=not force)  # forced: no time spent on alternatives
    except DeviceUnavailable:
        return None  # the run says which device is missing, with its hint, as before
    for line in check.lines():
        print(line)
    if check.fits is not False:
        return None
    if force:
        print("vsdream: --force: starting although the estimate exceeds the free memory")
        return None
    fixes = "; ".join(f"{s.label}: {s.cli}" for s in check.suggestions) or \
        "none of the low-vram preset, fewer particles or a lower final resolution fits either"
    print(f"vsdream: this job needs about {check.peak_gb:.1f} GB but {check.device.name} has "
          f"{check.device.free_gb:.1f} GB free. Settings that fit: {fixes}. Or run anyway with --force.",
          file=sys.stderr)
    return 2


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="vsdream run", description="Run a VSDream job into a folder.")
    ap.add_argument("--preset", default=DEFAULT_PRESET, choices=list(PRESETS),
                    help=f"settings to start from (default {DEFAULT_PRESET}, Stable Diffusion; cpu-smoke is the "
                         "analytic prior's test preset)")
    ap.add_argument("--prior", help=f"default: the preset's (sd for all but cpu-smoke); {prior_syntax()}")
    ap.add_argument("--prompt")
    ap.add_argument("--negative-prompt")
    ap.add_argument("--seed", type=int)
    ap.add_argument("--particles", type=int)
    ap.add_argument("--model", help="Stable Diffusion model id or local folder")
    ap.add_argument("--device", help="auto | cpu | cuda[:N]")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=SET_HELP)
    ap.add_argument("--out", type=Path, help="run folder to create")
    ap.add_argument("--resume", type=Path, help="continue the job in this run folder")
    ap.add_argument("--force", action="store_true",
                    help="start even when the fit check estimates that the job does not fit the device's memory")
    ap.add_argument("--free-gb", type=float, metavar="GB",
                    help="check the fit against this much free memory instead of the device's (plan for another card)")
    args = ap.parse_args(argv)
    try:
        if args.resume:
            run_dir = args.resume
            spec = read_run_spec(run_dir, "--resume")
        else:
            if args.out is None:
                ap.error("--out DIR is required (or --resume DIR)")
            overrides = parse_set(args.set)
            for key in ("prior", "prompt", "negative_prompt", "seed", "particles", "model", "device"):
                if getattr(args, key) is not None:
                    overrides[key] = getattr(args, key)
            spec = make_spec(args.preset, overrides)
            run_dir = args.out
            if (run_dir / "spec.json").exists():
                print(f"vsdream: {run_dir} already holds a job; use --resume {run_dir} or another --out",
                      file=sys.stderr)
                return 2
    except SpecError as exc:
        return report(exc)

    refused = fit_gate(spec, args.free_gb, args.force)
    if refused is not None:
        return refused
    from .pipeline import run_job  # after the spec checks: a usage error answers without loading torch
    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    printer = ProgressPrinter()
    try:
        result = run_job(spec, run_dir, printer, should_stop=stop.is_set)
    except JobCancelled as exc:
        printer.close()
        print(f"stopped in {exc.stage} at step {exc.step}; checkpoint {exc.checkpoint}\n"
              f"continue with: vsdream run --resume {run_dir}")
        return 130
    except Exception as exc:  # noqa: BLE001 - the CLI's last word: any failure becomes a message and exit 1
        printer.close()
        code, hint = error_code(exc)
        print(f"vsdream: {code}: {exc}\nhint: {hint}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGINT, previous)
    printer.close()
    nerf = result.get("nerf", {})
    if "psnr" in nerf:
        print(f"stage 1 held-out PSNR {nerf['psnr']:.2f} dB at {nerf['resolution']}²")
    print(f"done in {result['seconds']:.1f} s → {run_dir}/result")
    return 0
