"""Build dist/vsdream-<version>.zip: the Blender extension plus the bundled engine backend.

    python build_addon.py [--out dist] [--no-validate]

The zip holds blender_addon/ (as the extension root), the server/protocol/ package and
server/tls_pin.py copied in as protocol/ and tls_pin.py (the add-on's only copies of the wire format
and of the pinned-TLS client for remote engines; the source tree keeps one of each), and
backend/ with engine/, server/, pyproject.toml, requirements.txt and constraints.txt (the versions
this environment runs, pinned), from which the add-on's
"Set up engine" builds the engine's own virtual environment. The result is built and then
validated with blender_ext.py, the extension tool that ships inside the bpy wheel.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent
ADDON = ROOT / "blender_addon"
SHARED_WITH_ADDON = ("protocol", "tls_pin.py")  # stdlib-only server package / module the add-on imports
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".*", "*.egg-info")


def manifest_version(manifest: Path = ADDON / "blender_manifest.toml") -> str:
    return tomllib.loads(manifest.read_text(encoding="utf-8"))["version"]


def find_blender_ext() -> Path:
    """blender_ext.py from $BLENDER_EXT_PY or the installed bpy wheel (no `import bpy` needed)."""
    env = os.environ.get("BLENDER_EXT_PY")
    if env:
        return Path(env)
    spec = importlib.util.find_spec("bpy")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("blender_ext.py not found: install the bpy wheel (pip install bpy) or set BLENDER_EXT_PY")
    for base in spec.submodule_search_locations:
        hits = sorted(Path(base).glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
        if hits:
            return hits[-1]
    raise SystemExit("blender_ext.py not found inside the bpy wheel; set BLENDER_EXT_PY")


def requirements(pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    """The engine's runtime requirements, straight from pyproject.toml."""
    return list(tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["dependencies"])


def _dist_name(requirement: str) -> str:
    """PEP 503 normalised name at the start of a requirement string."""
    return re.sub(r"[-_.]+", "-", re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement).group(1)).lower()


def constraints(reqs: list[str] | None = None) -> list[str]:
    """`name==version` for the engine's requirements and all they pull in, as installed where this
    build runs (the environment `make test` ran); extras left out, local labels dropped
    (torch 2.13.0+cpu pins torch==2.13.0, which the CPU and CUDA wheel indexes both satisfy)."""
    from importlib import metadata
    todo, pins = [_dist_name(r) for r in (requirements() if reqs is None else reqs)], {}
    while todo:
        name = todo.pop()
        if name in pins:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        pins[name] = dist.version.split("+")[0]
        todo += [_dist_name(r) for r in dist.requires or [] if not re.search(r"\bextra\s*==", r)]
    return [f"{name}=={version}" for name, version in sorted(pins.items())]


def stage(dest: Path) -> Path:
    """Lay out the extension folder; returns it."""
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(ADDON, dest, ignore=IGNORE)
    for shared in SHARED_WITH_ADDON:
        if (ROOT / "server" / shared).is_dir():
            shutil.copytree(ROOT / "server" / shared, dest / shared, ignore=IGNORE)
        else:
            shutil.copy2(ROOT / "server" / shared, dest / shared)
    backend = dest / "backend"
    for pkg in ("engine", "server"):
        shutil.copytree(ROOT / pkg, backend / pkg, ignore=IGNORE)
    shutil.copy2(ROOT / "pyproject.toml", backend / "pyproject.toml")
    readme = ROOT / "README.md"
    if readme.exists():
        shutil.copy2(readme, backend / "README.md")
    (backend / "requirements.txt").write_text("\n".join(requirements()) + "\n", encoding="utf-8")
    (backend / "constraints.txt").write_text("\n".join(constraints()) + "\n", encoding="utf-8")
    return dest


def run_ext(tool: Path, *args: str) -> str:
    proc = subprocess.run([sys.executable, str(tool), *args], capture_output=True, text=True)
    out = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0:
        raise SystemExit(f"blender_ext.py {args[0]} failed ({proc.returncode}):\n{out}")
    return out


def build(out_dir: Path = ROOT / "dist", validate: bool = True, work: Path = ROOT / "build" / "addon") -> Path:
    version = manifest_version()
    if not re.fullmatch(r"\d+\.\d+\.\d+", version):
        raise SystemExit(f"blender_manifest.toml version {version!r} is not semver MAJOR.MINOR.PATCH")
    out_dir.mkdir(parents=True, exist_ok=True)
    zip_path = out_dir / f"vsdream-{version}.zip"
    zip_path.unlink(missing_ok=True)
    src = stage(work / "vsdream")
    tool = find_blender_ext()
    run_ext(tool, "build", "--source-dir", str(src), "--output-filepath", str(zip_path))
    if validate:
        run_ext(tool, "validate", str(zip_path))
    return zip_path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "dist", help="output folder (default: dist)")
    ap.add_argument("--no-validate", action="store_true", help="skip blender_ext.py validate")
    args = ap.parse_args(argv)
    zip_path = build(args.out, validate=not args.no_validate)
    print(f"built {zip_path} ({zip_path.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
