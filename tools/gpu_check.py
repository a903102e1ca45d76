"""`make gpu-check`: the first look at a CUDA machine, offline, in under 10 minutes.

For a machine whose Python already has torch (with CUDA), triton, peft, transformers and nvcc but
no network: the missing packages (diffusers, nerfacc, trimesh, xatlas, pymeshlab) come along as
wheels in the git-ignored `wheels/` folder (fetch them on a networked machine with
`make gpu-wheels`) and are installed from there, without the network, into build/gpu-site.
Then, each step in its own process with a time limit so one hang cannot eat the budget:
  1. which accelerators import (tiny-cuda-nn, nerfacc's CUDA kernels, nvdiffrast);
  2. the CUDA twins of the tests (`pytest -m cuda`);
  3. `vsdream bench step --model sd21-random --resolution 512 --json` (ms/it, split, peak memory);
  4. a 100-step sd21-random stage 1 at 512² with every accelerator that imports, with each alone,
     and with none (VSDREAM_ACCEL=none: the no-build, pure-torch path);
and one summary table at the end (also written to out/gpu_check.json). Never part of `make test`.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / "build" / "gpu-site"
# module → distribution; importlib_metadata and lazy-importer are diffusers' own needs
CARRIED = {"diffusers": "diffusers", "nerfacc": "nerfacc", "trimesh": "trimesh", "xatlas": "xatlas",
           "pymeshlab": "pymeshlab", "importlib_metadata": "importlib_metadata", "lazy_importer": "lazy-importer"}
PRESENT = ("torch", "triton", "transformers", "peft", "accelerate", "safetensors")
PLATFORMS = ("manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux_2_24_x86_64", "manylinux_2_27_x86_64",
             "manylinux_2_28_x86_64", "manylinux_2_31_x86_64", "manylinux_2_34_x86_64", "manylinux_2_35_x86_64")
PROBE = r"""
import json, sys, torch
from engine.field.hashgrid import _tcnn_available
from engine.render.volume import _nerfacc_kernels
out = {"tcnn": None, "nerfacc": None, "nvdiffrast": None}
try:
    out["tcnn"] = "ok" if _tcnn_available() else "not importable"
    if out["tcnn"] == "ok":
        from engine.field.hashgrid import HashGridEncoding
        enc = HashGridEncoding(4, 2, 12, 4, 1.5, gen=torch.Generator().manual_seed(0), backend="tcnn").cuda()
        enc(torch.rand(1024, 3, device="cuda") * 2 - 1).sum().backward()
except Exception as exc:
    out["tcnn"] = f"fails: {type(exc).__name__}: {exc}"[:200]
out["nerfacc"] = "ok" if _nerfacc_kernels() else "not importable (kernels did not load or build)"
try:
    import nvdiffrast.torch as dr
    dr.RasterizeCudaContext()
    out["nvdiffrast"] = "ok"
except Exception as exc:
    out["nvdiffrast"] = f"not importable: {type(exc).__name__}"
print(json.dumps(out))
"""


class Budget:
    """Seconds left of the whole check; each step gets at most what remains (minus a reserve)."""

    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def left(self, reserve: float = 0.0) -> float:
        return max(self.end - time.monotonic() - reserve, 0.0)


def child_env(accel: str | None = None) -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    paths = [str(ROOT)] + ([str(SITE)] if SITE.is_dir() else []) + [env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    if accel is not None:
        env["VSDREAM_ACCEL"] = accel
    return env


def run_child(args: list[str], timeout: float, accel: str | None = None) -> tuple[int | None, str, float]:
    """(exit code or None on timeout, combined output, seconds); never raises for the child's failure."""
    t0 = time.monotonic()
    if timeout < 5:
        return None, "skipped: out of time", 0.0
    try:
        proc = subprocess.run([sys.executable, *args], cwd=ROOT, env=child_env(accel), capture_output=True,
                              text=True, timeout=timeout)
        return proc.returncode, proc.stdout + proc.stderr, time.monotonic() - t0
    except subprocess.TimeoutExpired as exc:  # its partial output may come back as bytes
        text = "".join(o.decode(errors="replace") if isinstance(o, bytes) else o
                       for o in (exc.stdout, exc.stderr) if o)
        return None, text + f"\n[timed out after {timeout:.0f} s]", time.monotonic() - t0


def last_json(text: str) -> dict | None:
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
    return None


def install_wheels(wheels: Path) -> list[str]:
    """Install carried wheels for the missing modules into build/gpu-site (no network); notes."""
    missing = [m for m in CARRIED if importlib.util.find_spec(m) is None]
    if not missing:
        return ["all carried packages already importable"]
    files = sorted(wheels.glob("*.whl")) if wheels.is_dir() else []
    if not files:
        return [f"missing {', '.join(missing)} and no wheels in {wheels} (run `make gpu-wheels` on a networked machine)"]
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile", "--upgrade",
           "--target", str(SITE), *map(str, files)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return [f"pip install from {wheels} failed: {proc.stderr.strip()[-300:]}"]
    sys.path.insert(0, str(SITE))
    importlib.invalidate_caches()
    return [f"installed {len(files)} wheels from {wheels} into {SITE.relative_to(ROOT)}"]


def versions() -> dict[str, str]:
    from importlib import metadata
    out = {}
    for mod in (*PRESENT, *CARRIED):
        if importlib.util.find_spec(mod) is None:
            out[mod] = "not importable"
            continue
        try:
            out[mod] = metadata.version(CARRIED.get(mod, mod))
        except metadata.PackageNotFoundError:
            out[mod] = "importable"
    return out


def pytest_summary(text: str) -> str:
    m = re.findall(r"=+ (.*?(?:passed|failed|skipped|error|deselected|no tests ran).*?) in [\d.]+s", text)
    return m[-1] if m else "no summary (see log)"


def cuda_test_files() -> list[str]:
    return sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_*.py")
                  if "mark.cuda" in p.read_text(encoding="utf-8", errors="replace"))


def stage1_configs(probe: dict) -> list[tuple[str, str]]:
    """(label, VSDREAM_ACCEL): all that import, each alone when several do, and none."""
    ok = [name for name in ("tcnn", "nerfacc") if probe.get(name) == "ok"]
    configs = [("all importable (" + (", ".join(ok) or "none") + ")", "auto")] if ok else []
    if len(ok) > 1:
        configs += [(f"{name} only", name) for name in ok]
    return configs + [("no-build (pure torch)", "none")]


def check(args: argparse.Namespace) -> int:
    budget = Budget(args.budget_s)
    try:
        import torch
    except ImportError:
        print(f"gpu-check needs PyTorch with CUDA in this Python ({sys.executable}): torch is not importable")
        return 2
    if not torch.cuda.is_available():
        print(f"no CUDA device: gpu-check needs a GPU (torch {torch.__version__} in {sys.executable} sees none)")
        return 2
    report: dict = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__,
                    "cuda": torch.version.cuda, "python": sys.version.split()[0], "nvcc": shutil.which("nvcc")}
    report["wheels"] = install_wheels(args.wheels)
    report["versions"] = versions()
    log = ROOT / "out" / "gpu_check.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    logs: list[str] = []

    def step(name: str, child: list[str], share: float, reserve: float, accel: str | None = None):
        code, text, secs = run_child(child, min(budget.left(reserve), share), accel)
        logs.append(f"===== {name} (exit {code}, {secs:.0f} s)\n{text}")
        print(f"[gpu-check] {name}: exit {code} in {secs:.0f} s", flush=True)
        return code, text, secs

    code, text, _ = step("accelerator probe", ["-c", PROBE], 300, 240)  # nerfacc may JIT-build its kernels
    probe = last_json(text) or {"tcnn": "probe failed", "nerfacc": "probe failed", "nvdiffrast": "probe failed"}
    report["accelerators"] = probe
    files = cuda_test_files()
    code, text, secs = step("CUDA tests", ["-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "-m", "cuda",
                                           *files], 150, 200)
    report["cuda_tests"] = {"files": files, "exit": code, "summary": pytest_summary(text), "s": round(secs)}
    code, text, secs = step("bench step", ["-m", "engine.cli", "bench", "step", "--model", "sd21-random",
                                           "--resolution", "512", "--json"], 150, 120)
    bench = last_json(text)
    report["bench_step"] = bench if bench is not None else {"exit": code, "error": text.strip()[-300:]}
    report["stage1"] = []
    configs = stage1_configs(probe)
    for i, (label, accel) in enumerate(configs):
        share = budget.left(10) / (len(configs) - i)
        code, text, secs = step(f"stage 1, {label}", ["tools/gpu_stage1.py", "--steps", str(args.steps),
                                                       "--resolution", str(args.resolution)], share, 10, accel)
        res = last_json(text) or {"ok": False, "error": text.strip()[-300:]}
        report["stage1"].append({"label": label, "accel": accel, "exit": code, **res})
    log.write_text("\n".join(logs), encoding="utf-8")
    (ROOT / "out" / "gpu_check.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    print_summary(report, log)
    failed = report["cuda_tests"]["exit"] not in (0, 5) or bench is None or \
        any(r.get("exit") != 0 for r in report["stage1"])
    return 1 if failed else 0


def print_summary(r: dict, log: Path) -> None:
    print(f"\n== gpu-check summary: {r['device']}, torch {r['torch']} (CUDA {r['cuda']}), Python {r['python']}, "
          f"nvcc {'at ' + r['nvcc'] if r['nvcc'] else 'absent'}")
    print("packages:   " + ", ".join(f"{k} {v}" for k, v in r["versions"].items()))
    print("wheels:     " + "; ".join(r["wheels"]))
    print("accelerators: " + ", ".join(f"{k}: {v}" for k, v in r["accelerators"].items()))
    t = r["cuda_tests"]
    print(f"CUDA tests: {t['summary']} ({len(t['files'])} files, exit {t['exit']})")
    b = r["bench_step"]
    if "ms_per_iter" in b:
        split = ", ".join(f"{k} {v:.1f}" for k, v in b["split_ms"].items())
        peak = b.get("peak_memory_gb")
        print(f"bench step: {b['ms_per_iter']:.1f} ms/it at {b['resolution']}² ({split} ms), peak "
              + (f"{peak:.2f} GB" if peak is not None else "n/a") + f", {b.get('achieved_tflops', 0):.1f} TFLOP/s")
    else:
        print(f"bench step: FAILED (exit {b.get('exit')}): {b.get('error', '')[-200:]}")
    print(f"{'stage 1 (' + str(r['stage1'][0].get('steps', '?')) + ' steps)' if r['stage1'] else 'stage 1':<34}"
          f"{'hash grid':<10}{'marching':<14}{'ms/it':>8}{'total s':>9}{'peak GB':>9}  result")
    for s in r["stage1"]:
        if "ms_per_iter_median" in s:
            print(f"{s['label']:<34}{s['hash_grid']:<10}{s['ray_marching']:<14}{s['ms_per_iter_median']:>8.1f}"
                  f"{s['total_s']:>9.1f}{s['peak_memory_gb']:>9.2f}  {'ok' if s['ok'] else 'NON-FINITE LOSS'}")
        else:
            print(f"{s['label']:<34}{'':<10}{'':<14}{'':>8}{'':>9}{'':>9}  FAILED (exit {s['exit']}): "
                  f"{s.get('error', '')[-120:]}")
    print(f"full output: {log.relative_to(ROOT)}; figures: out/gpu_check.json")


def download_wheels(dest: Path, python_version: str) -> int:
    """On a networked machine: the carried packages as wheels for the GPU machine's Python (x86-64)."""
    from importlib import metadata
    specs = []
    for dist in CARRIED.values():
        try:
            specs.append(f"{dist}=={metadata.version(dist)}")  # the version this checkout was tested with
        except metadata.PackageNotFoundError:
            specs.append(dist)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version",
           python_version, "--implementation", "cp", *[a for p in PLATFORMS for a in ("--platform", p)],
           "-d", str(dest), *specs]
    print(" ".join(cmd))
    return subprocess.call(cmd)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="tools/gpu_check.py", description=__doc__.splitlines()[0])
    ap.add_argument("--wheels", type=Path, default=ROOT / "wheels", help="folder of carried wheels")
    ap.add_argument("--steps", type=int, default=100, help="stage-1 steps per accelerator setting")
    ap.add_argument("--resolution", type=int, default=512)
    ap.add_argument("--budget-s", type=float, default=570.0, help="the whole check's time limit")
    ap.add_argument("--download-wheels", type=Path, metavar="DIR", help="networked machine: fetch the wheels and stop")
    ap.add_argument("--python-version", default="3.12", help="the GPU machine's Python, for --download-wheels")
    args = ap.parse_args(argv)
    if args.download_wheels:
        return download_wheels(args.download_wheels, args.python_version)
    return check(args)


if __name__ == "__main__":
    raise SystemExit(main())
