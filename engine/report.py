"""Result reports shared by the stages: the contact sheet of held-out views, written and announced."""
from __future__ import annotations

import numpy as np

from .context import JobContext
from .events import Artifact
from .preview import contact_sheet, save_png


def write_result_image(ctx: JobContext, rgb: np.ndarray, filename: str, role: str) -> str:
    """A PNG in <run>/result/, announced as an Artifact; returns its path."""
    path = save_png(ctx.run.result / filename, rgb)
    ctx.emit(Artifact(path.name, str(path), path.stat().st_size, role=role))
    return str(path)


def write_contact_sheet(ctx: JobContext, rows: list[list[np.ndarray]], filename: str) -> str:
    """One row per particle, one column per held-out view; emits an Artifact and returns the path."""
    sheet = contact_sheet([img for row in rows for img in row], columns=len(rows[0]))
    return write_result_image(ctx, sheet, filename, "contact_sheet")
