"""Atomic checkpoints per stage: <run>/ckpt/<stage>-<step:08d>.pt, newest wins, corrupt ones skipped.

Each file is written to a temp name and renamed, so a crash mid-write never leaves a half file
under a real name; a file damaged some other way is reported and the previous one is used. The
temp file of a writer that was killed (`<stage>-<step>.pt.<random>.tmp`, as big as a checkpoint)
is removed by the next save, prune or resume (and by the server when a run ends).
"""
from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .errors import CheckpointError
from .run_dir import CHECKPOINT_FILE as _NAME
from .run_dir import atomic_write_bytes, remove_checkpoint_orphans

FORMAT = "vsdream-ckpt-1"



@dataclass
class Checkpoint:
    stage: str
    step: int
    state: dict[str, Any]
    path: Path


class CheckpointStore:
    def __init__(self, folder: Path, keep: int = 2):
        self.folder = Path(folder)
        self.keep = keep

    def path_for(self, stage: str, step: int) -> Path:
        return self.folder / f"{stage}-{step:08d}.pt"

    def save(self, stage: str, step: int, state: dict[str, Any]) -> Path:
        remove_checkpoint_orphans(self.folder)
        buf = io.BytesIO()
        torch.save({"format": FORMAT, "stage": stage, "step": step, "state": state}, buf)
        path = self.path_for(stage, step)
        atomic_write_bytes(path, buf.getvalue())
        self._prune(stage, keep_step=step)
        return path

    def list(self, stage: str) -> list[tuple[int, Path]]:
        """(step, path) for a stage, newest first."""
        found = []
        if self.folder.is_dir():
            for p in self.folder.iterdir():
                m = _NAME.match(p.name)
                if m and m["stage"] == stage:
                    found.append((int(m["step"]), p))
        return sorted(found, reverse=True)

    def load(self, path: Path) -> Checkpoint:
        try:
            data = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as exc:  # truncated, garbage, wrong format: say which file and why
            raise CheckpointError(f"checkpoint {path.name} is unreadable ({type(exc).__name__}: {exc})") from exc
        if not isinstance(data, dict) or data.get("format") != FORMAT or "state" not in data:
            raise CheckpointError(f"checkpoint {path.name} is not a {FORMAT} file")
        return Checkpoint(data["stage"], int(data["step"]), data["state"], path)

    def latest(self, stage: str, log: Callable[[str], None] = lambda m: None) -> Checkpoint | None:
        """Newest readable checkpoint of `stage`; unreadable ones are reported through `log` and skipped."""
        remove_checkpoint_orphans(self.folder)  # a resume: the run that wrote them is over
        for _, path in self.list(stage):
            try:
                return self.load(path)
            except CheckpointError as exc:
                log(f"{exc}; falling back to the previous checkpoint")
        return None

    def _prune(self, stage: str, keep_step: int) -> None:
        remove_checkpoint_orphans(self.folder)
        for step, path in self.list(stage)[self.keep:]:
            if step != keep_step:
                path.unlink(missing_ok=True)
