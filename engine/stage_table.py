"""The stages of a job, in order, as data: the spec, the presets, the pipeline, the export fallback
and (through the engine check's report) the Blender add-on all read this one table.

A new stage is one row here, its Stage class (engine/stages/), and, if `vsdream export` should
fall back to its checkpoint, one loader in engine/stages/export_sources.py.
Pure data and the standard library only: the add-on's engine probe and engine/spec.py import it.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

JobMode = str  # "text" | "retexture" (engine/spec.py JobSpec.mode)


@dataclass(frozen=True)
class StageEntry:
    """One optimisation stage. `name` is also its JobSpec section, its checkpoint prefix
    (<run>/checkpoints/<name>-<step>.pt), its key in the job result and in progress events."""

    name: str
    title: str  # short label for the UI
    stage_class: str  # "module:Class"; the class builds itself with `for_job(ctx, earlier)`
    modes: tuple[JobMode, ...]  # job modes it runs in
    needs: tuple[str, ...] = ()  # earlier stages whose results it starts from (when they run in the job)
    defaults: dict[str, Any] = field(default_factory=dict)  # its StageSpec fields that differ from StageSpec's

    def load_class(self) -> type:
        module, name = self.stage_class.split(":")
        return getattr(importlib.import_module(module), name)


STAGES: tuple[StageEntry, ...] = (
    StageEntry("nerf", "NeRF", "engine.stages.nerf:NerfStage", ("text",)),
    # geometry: SDS on normal maps, guidance 100, t ≤ 0.5, strong smoothness (DESIGN.md §3 stage 2)
    StageEntry("geometry", "Geometry", "engine.stages.geometry:GeometryStage", ("text",), needs=("nerf",),
               defaults={"steps": 15000, "method": "sds", "guidance_scale": 100.0, "t_max": 0.5,
                         "t_max_annealed": 0.5, "resolution_schedule": [[0, 512]],
                         "lambda_normal_consistency": 1e4, "lambda_laplacian": 1e4}),
    StageEntry("texture", "Texture", "engine.stages.texture:TextureStage", ("text", "retexture"),
               needs=("nerf", "geometry"),
               defaults={"steps": 30000, "method": "vsd", "resolution_schedule": [[0, 512]]}),
)
STAGE_NAMES: tuple[str, ...] = tuple(s.name for s in STAGES)


def stage(name: str) -> StageEntry:
    for entry in STAGES:
        if entry.name == name:
            return entry
    raise KeyError(f"no stage {name!r}: the stages are {', '.join(STAGE_NAMES)}")


def stages_for(mode: JobMode) -> tuple[StageEntry, ...]:
    """The stages a job of `mode` runs, in order (text: nerf → geometry → texture; retexture: texture)."""
    return tuple(s for s in STAGES if mode in s.modes)


def describe_stages() -> list[dict[str, Any]]:
    """The table as JSON for the add-on (engine check): name, title, modes, needs."""
    return [{"name": s.name, "title": s.title, "modes": list(s.modes), "needs": list(s.needs)} for s in STAGES]
