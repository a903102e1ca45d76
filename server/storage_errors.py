"""A failed write in the runs folder, told as the artist can act on it: a full disk is not a server bug."""
from __future__ import annotations

import errno
from pathlib import Path

from .protocol import ProtocolError

FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in FULL


def storage_problem(exc: OSError, what: str, runs_dir: Path) -> tuple[str, str, str]:
    """(code, message, hint) for an OSError raised while writing `what` under `runs_dir`."""
    why = exc.strerror or type(exc).__name__
    if is_disk_full(exc):
        return ("disk_full", f"the disk of the runs folder {runs_dir} is full ({why}): could not write {what}",
                "free space on that disk (or start the engine with another --runs-dir), then try again "
                "or resume the job")
    return ("storage_error", f"could not write {what} in the runs folder {runs_dir} ({why})",
            "check that the runs folder exists and this user may write to it, then try again")


def storage_error(exc: OSError, what: str, runs_dir: Path) -> ProtocolError:
    code, message, hint = storage_problem(exc, what, runs_dir)
    return ProtocolError(code, message, hint)
