"""`vsdream export RUN_DIR`: (re-)write the run's meshes from its newest checkpoint.

Useful after changing the texture size or formats, after a crash during export, or to get a
mesh out of a job that was stopped in stage 2 or 3.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .cli_spec import read_run_spec, report
from .errors import error_code
from .events import Artifact, Event, Log
from .run_dir import RunDir
from .spec import SpecError


def _print(ev: Event) -> None:
    if isinstance(ev, Artifact):
        print(f"wrote {ev.path} ({ev.size} bytes)")
    elif isinstance(ev, Log):
        print(f"[{ev.level}] {ev.message}")


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="vsdream export", description="Export meshes from a run folder's checkpoint.")
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--formats", help="comma list of glb, obj (default: the job's export.formats)")
    ap.add_argument("--texture-size", type=int, help="256 … 4096 (default: the job's export.texture_size)")
    ap.add_argument("--device", help="auto | cpu | cuda[:N] (default: the job's device)")
    ap.add_argument("--json", action="store_true", help="print the export summary as JSON")
    args = ap.parse_args(argv)
    run = RunDir(args.run_dir)
    try:
        spec = read_run_spec(args.run_dir, "RUN_DIR", validate=False)  # validated below, with the options
        if args.formats:
            spec.export.formats = [f.strip() for f in args.formats.split(",") if f.strip()]
        if args.texture_size:
            spec.export.texture_size = args.texture_size
        if args.device:
            spec.device = args.device
        spec.validate()
    except SpecError as exc:
        return report(exc)
    from .context import JobContext, resolve_device  # torch: only once the spec is known to be good
    from .stages.export import export_all
    from .stages.export_sources import load_export_sources
    ctx = JobContext(spec, run, _print, device=resolve_device(spec.device))
    try:
        src = load_export_sources(ctx)
        ctx.log(f"exporting from the {src.stage} checkpoint at step {src.step}")
        summary = export_all(ctx, src.meshes, src.color_fns(), src.loaded)
    except Exception as exc:  # noqa: BLE001 - the CLI's last word: any failure becomes a message and exit 1
        code, hint = error_code(exc)
        print(f"vsdream: {code}: {exc}\nhint: {hint}", file=sys.stderr)
        return 1
    summary = {"stage": src.stage, "step": src.step, **summary}
    if args.json:
        print(json.dumps(summary, indent=2))
    return 0
