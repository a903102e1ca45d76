"""The add-on version, read from blender_manifest.toml (its one source)."""
import re
from pathlib import Path


def _read() -> str:
    try:
        text = (Path(__file__).resolve().parent / "blender_manifest.toml").read_text(encoding="utf-8")
    except OSError:
        return "0.0.0"
    match = re.search(r'^version\s*=\s*"([^"]+)"', text, re.M)
    return match.group(1) if match else "0.0.0"


VERSION = _read()
