"""The run directory: everything a job makes lives here, so nothing is lost on a crash.

    <run>/spec.json        the validated JobSpec
    <run>/events.jsonl     every event with a sequence number (written by the server)
    <run>/previews/        preview PNGs per stage and step
    <run>/ckpt/            atomic checkpoints  <stage>-<step:08d>.pt
    <run>/result/          meshes, textures, metrics.json, contact_sheet.png
"""
from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .spec import JobSpec

CHECKPOINT_FILE = re.compile(r"^(?P<stage>[a-z0-9_]+)-(?P<step>\d{8})\.pt$")  # ckpt/<stage>-<step:08d>.pt


@dataclass
class RunDir:
    root: Path

    def __post_init__(self) -> None:
        self.root = Path(self.root)

    @property
    def spec_path(self) -> Path:
        return self.root / "spec.json"

    @property
    def events_path(self) -> Path:
        return self.root / "events.jsonl"

    @property
    def previews(self) -> Path:
        return self.root / "previews"

    @property
    def ckpt(self) -> Path:
        return self.root / "ckpt"

    @property
    def result(self) -> Path:
        return self.root / "result"

    def create(self) -> RunDir:
        for p in (self.root, self.previews, self.ckpt, self.result):
            p.mkdir(parents=True, exist_ok=True)
        return self

    def write_spec(self, spec: JobSpec) -> None:
        atomic_write_bytes(self.spec_path, spec.to_json().encode("utf-8"))

    def read_spec(self) -> JobSpec:
        return JobSpec.from_json(self.spec_path.read_text(encoding="utf-8"))

    def write_json(self, rel: str, data: Any) -> Path:
        path = self.root / rel
        atomic_write_bytes(path, json.dumps(data, indent=2, sort_keys=True).encode("utf-8"))
        return path


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temp file in the same folder, fsync, then rename over the target."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_temp_files(folder: Path, target: re.Pattern[str]) -> list[str]:
    """Delete the temp files atomic_write_bytes leaves (`<name>.<random>.tmp`) when its writer is killed
    mid-write, for names matching `target`; returns the names removed. Call it only while no one
    writes into `folder` (the folder's single writer before it writes, or after its writer ended)."""
    removed = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    for p in entries:
        name, dot, rest = p.name.rpartition(".tmp")[0].rpartition(".")
        if p.name.endswith(".tmp") and dot and rest and target.match(name):
            try:
                p.unlink()
                removed.append(p.name)
            except OSError:
                pass
    return removed


def remove_checkpoint_orphans(folder: Path) -> list[str]:
    """Temp files of checkpoint writes that never finished (their writer was killed); the names removed."""
    return remove_temp_files(folder, CHECKPOINT_FILE)
