"""Path containment: a client-named file must stay inside its job's run folder."""
from __future__ import annotations

from pathlib import Path
from typing import Any


def resolve_inside(root: Path, path: Any) -> Path | None:
    """`path` (absolute, or relative to root) fully resolved if it lies inside root, else None.

    Symlinks are resolved first, so a link pointing out of the run folder is refused too."""
    if not isinstance(path, str) or not path or "\x00" in path:
        return None
    base = Path(root).resolve()
    p = Path(path)
    try:
        p = (p if p.is_absolute() else base / p).resolve()
    except (OSError, RuntimeError, ValueError):
        return None
    return p if p.is_relative_to(base) else None
