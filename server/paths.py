"""Path containment: a client-named file must stay inside its job's run folder."""
from __future__ import annotations

from pathlib import Path
from typing import Any

MAX_NAME_BYTES = 255    # one path component (ext4, APFS, NTFS)
MAX_PATH_BYTES = 4096   # a whole path (Linux PATH_MAX)


def fits_file_system(path: str) -> bool:
    """Whether `path` could name a file at all. A longer one makes the OS raise ENAMETOOLONG (which
    answered `internal`) where the honest answer is that no such file exists."""
    raw = path.encode("utf-8", "surrogatepass")
    parts = raw.replace(b"\\", b"/").split(b"/")
    return len(raw) <= MAX_PATH_BYTES and all(len(part) <= MAX_NAME_BYTES for part in parts)


def resolve_inside(root: Path, path: Any) -> Path | None:
    """`path` (absolute, or relative to root) fully resolved if it lies inside root, else None.

    Symlinks are resolved first, so a link pointing out of the run folder is refused too."""
    if not isinstance(path, str) or not path or "\x00" in path or not fits_file_system(path):
        return None
    base = Path(root).resolve()
    p = Path(path)
    try:
        p = (p if p.is_absolute() else base / p).resolve()
    except (OSError, RuntimeError, ValueError):
        return None
    return p if p.is_relative_to(base) else None
