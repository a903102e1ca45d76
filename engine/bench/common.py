"""What the benches share: a cpu-smoke job context whose events go nowhere."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..context import JobContext
from ..events import Event
from ..presets import make_spec
from ..run_dir import RunDir


def quiet(_: Event) -> None:
    """An event sink that drops everything: benches print their own figures."""


def smoke_context(run_dir: Path, overrides: dict[str, Any]) -> JobContext:
    """A `cpu-smoke` spec with `overrides`, its run folder created under `run_dir`, events dropped."""
    return JobContext(make_spec("cpu-smoke", overrides), RunDir(run_dir).create(), quiet)
