"""`make setup-check`: the add-on's real 'Set up engine' on this machine, into a temporary folder.

Stages the bundle as build_addon.py lays it out (constraints.txt included), detects the hardware,
picks the torch build exactly as the add-on does, runs the same commands through the same
engine_setup code (heartbeat, noise filter, summary) and prints every line with its time. Ends
with the set-up time, the environment size and the torch build installed; out/setup_check.json
keeps them. Slow (it installs torch and the rest): never part of `make test`.

    python tools/setup_check.py [--torch auto|cpu|cu126|cu128|cu130|default] [--keep]
"""
from __future__ import annotations

import argparse
import json
import platform
import queue
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import bpy  # noqa: E402,F401  (blender_addon's package imports it; stdlib-only modules are used here)

import build_addon  # noqa: E402
from blender_addon import engine_setup, torch_choice  # noqa: E402
from blender_addon.paths import venv_python  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--torch", default="auto", choices=torch_choice.OVERRIDES, help="torch build (default: detect)")
    ap.add_argument("--keep", action="store_true", help="keep the environment (its path is printed)")
    ap.add_argument("--out", type=Path, default=ROOT / "out" / "setup_check.json")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="vsdream-setup-check-"))
    try:
        backend = build_addon.stage(work / "addon") / "backend"
        venv = work / "engine-venv"
        hw = torch_choice.detect(sys.platform, platform.machine())
        choice = torch_choice.choose(hw, args.torch)
        if not choice.ok:
            print(f"no torch build fits: {choice.reason}")
            return 1
        py = venv_python(venv)
        cmds = engine_setup.setup_commands(sys.executable, venv, backend, py, choice)
        box: queue.Queue = queue.Queue()
        started = time.monotonic()
        thread = engine_setup.run_setup(cmds, box, venv=venv, venv_python=py, choice=choice, hardware=hw)
        longest_gap, last, lines = 0.0, started, 0
        while True:
            kind, data = box.get()
            now = time.monotonic()
            longest_gap, last = max(longest_gap, now - last), now
            if kind == "setup_line":
                lines += 1
                print(f"[{now - started:7.1f} s] {data}", flush=True)
                continue
            ok, message = data
            break
        thread.join()
        elapsed = time.monotonic() - started
        size = engine_setup.folder_size(venv)
        result = {"ok": ok, "message": message, "seconds": round(elapsed, 1), "env_bytes": size,
                  "torch_choice": choice.build, "index_url": choice.index_url, "hardware": hw.describe(),
                  "longest_silence_s": round(longest_gap, 1), "lines": lines}
        print(("OK: " if ok else "FAILED: ") + message)
        print(json.dumps(result, indent=1))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
        if args.keep:
            print(f"kept: {venv}")
        return 0 if ok else 1
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
