"""Where the add-on writes: the extension's user directory, with a fallback for legacy installs.

Never the add-on's own folder: an extension upgrade wipes it and it may be read-only.
"""
import os
from pathlib import Path

import bpy

ADDON_PACKAGE = __package__
ADDON_DIR = Path(__file__).resolve().parent


def user_dir() -> Path:
    """Per-extension writable folder; survives upgrades (removed only on uninstall)."""
    override = os.environ.get("VSDREAM_USER_DIR")
    if override:
        path = Path(override)
    else:
        try:
            path = Path(bpy.utils.extension_path_user(ADDON_PACKAGE, create=True))
        except (ValueError, AttributeError):  # legacy add-on, plain bpy module or Blender < 4.2
            path = Path(bpy.utils.user_resource("SCRIPTS", path="vsdream_data", create=True) or
                        Path.home() / ".vsdream")
    path.mkdir(parents=True, exist_ok=True)
    return path


def output_dir(prefs=None) -> Path:
    """Runs folder: the preference when set, else <user dir>/runs."""
    chosen = getattr(prefs, "output_dir", "") if prefs is not None else ""
    path = Path(bpy.path.abspath(chosen)) if chosen else user_dir() / "runs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def pid_file() -> Path:
    return user_dir() / "engine.pid"


def engine_log() -> Path:
    return user_dir() / "engine.log"


def engine_venv() -> Path:
    return user_dir() / "engine-venv"


def bundled_backend() -> Path:
    """engine/ + server/ + requirements bundled by build_addon.py (absent in a source checkout)."""
    return ADDON_DIR / "backend"


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
