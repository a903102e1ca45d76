"""Find a scene job's equirectangular panorama (engine/stages/nerf.py write_panoramas) — pure Python.

The engine writes result/panorama.png (panorama_<i>.png for several particles) and announces it as
an artifact; a job followed live knows the artifact's path, a job from History only its run folder.
"""
import re
from pathlib import Path

_NAME = re.compile(r"panorama(_\d+)?\.(png|exr|hdr)$", re.IGNORECASE)


def is_panorama_name(name: str) -> bool:
    return bool(_NAME.fullmatch(Path(str(name)).name))


def panorama_paths(run_dir: str = "", artifacts: dict | None = None) -> list:
    """Existing panorama files of a job, particle order: its artifacts (name → path), else <run_dir>/result."""
    found = sorted(str(p) for n, p in (artifacts or {}).items() if is_panorama_name(n) and Path(p).is_file())
    if not found and run_dir:
        result = Path(run_dir) / "result"
        try:
            found = sorted(str(p) for p in result.iterdir() if is_panorama_name(p.name) and p.is_file())
        except OSError:
            return []
    return found


def first_panorama(run_dir: str = "", artifacts: dict | None = None) -> str:
    """The first particle's panorama, or "" when the job has none (an object job, or not finished)."""
    paths = panorama_paths(run_dir, artifacts)
    return paths[0] if paths else ""
