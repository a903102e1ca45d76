"""`vsdream fit`: the fit check alone — device, estimated peak memory and time, settings that fit.

Why a command of its own: the server never imports torch, so an `estimate` request (and the add-on's
panel) runs this in a child process and reads its `--json` answer; an artist can ask it before
queueing a night's runs. The same engine/fit_check.py as `vsdream run`'s check.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .cli_spec import SET_HELP, parse_set, report
from .presets import DEFAULT_PRESET, PRESETS, make_spec
from .spec import JobSpec, SpecError


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="vsdream fit", description=__doc__.splitlines()[0])
    ap.add_argument("--spec", type=Path, help="a JobSpec JSON file (instead of --preset and its options)")
    ap.add_argument("--preset", default=DEFAULT_PRESET, choices=list(PRESETS))
    ap.add_argument("--prior")
    ap.add_argument("--prompt", default=None)
    ap.add_argument("--particles", type=int)
    ap.add_argument("--device", help="auto | cpu | cuda[:N]")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=SET_HELP)
    ap.add_argument("--free-gb", type=float, metavar="GB", help="check against this much free memory instead")
    ap.add_argument("--no-time", action="store_true", help="skip the time estimate (and its first-use calibration)")
    ap.add_argument("--json", action="store_true", help="print one JSON object (the FitCheck dataclass)")
    args = ap.parse_args(argv)
    if args.free_gb is not None and not args.free_gb > 0:
        print(f"vsdream fit: --free-gb {args.free_gb}: a number of GB above 0", file=sys.stderr)
        return 2
    try:
        if args.spec is not None:
            try:
                text = args.spec.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                print(f"vsdream fit: --spec {args.spec}: cannot read it ({exc.__class__.__name__})", file=sys.stderr)
                return 2
            spec = JobSpec.from_json(text).validate()
        else:
            overrides = parse_set(args.set)
            for key in ("prior", "prompt", "particles", "device"):
                if getattr(args, key) is not None:
                    overrides[key] = getattr(args, key)
            spec = make_spec(args.preset, overrides)
    except SpecError as exc:
        return report(exc)
    from .devices import DeviceUnavailable
    from .fit_check import fit_check
    try:
        check = fit_check(spec, free_gb=args.free_gb, time_estimate=not args.no_time)
    except DeviceUnavailable as exc:
        print(f"vsdream fit: device: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(check.to_dict()))
    else:
        print("\n".join(check.lines()))
    return 0
