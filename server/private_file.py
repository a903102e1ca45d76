"""Secrets on disk (the token, the TLS key) readable by their owner only.

POSIX: a secret is written into a fresh temporary file created with mode 0600 (O_CREAT|O_EXCL, so
it never exists with wider permissions, whatever file it replaces) and then atomically renamed
over the target; an older file's mode is therefore never inherited.

Windows: mode bits do not restrict readers there. What protects these files is the folder they
live in: the default runs folder is under the user's profile (%USERPROFILE%\\.vsdream), whose
ACL admits only that user, administrators and SYSTEM. A secret placed elsewhere gets a warning.
"""
from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from engine.run_dir import atomic_write_bytes

log = logging.getLogger("vsdream.server")
POSIX = os.name == "posix"


def write_private(path: Path, data: bytes) -> Path:
    """Write `data` to `path` as a new owner-only file (atomic replace); returns the path.

    The engine's atomic writer creates its temporary file with mkstemp, which opens it
    O_CREAT|O_EXCL with mode 0600: the secret never exists with wider permissions."""
    path = Path(path)
    atomic_write_bytes(path, data)
    warn_if_unprotected(path)
    return path


def others_can_read(path: Path) -> bool:
    """POSIX: the group or other users have any access to the file. Always False on Windows."""
    return POSIX and bool(Path(path).stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO))


def make_private(path: Path) -> bool:
    """Narrow an existing secret file to owner-only (POSIX); True when its mode had to change."""
    if not others_can_read(path):
        return False
    os.chmod(path, 0o600)
    return True


def warn_if_unprotected(path: Path) -> None:
    """Windows: a secret outside the user's profile is only as private as that folder's ACL."""
    if POSIX:
        return
    try:
        Path(path).resolve().relative_to(Path.home().resolve())
    except ValueError:
        log.warning("%s is outside your user profile (%s): on Windows only the folder's access list "
                    "protects it; keep the runs folder under your profile", path, Path.home())
