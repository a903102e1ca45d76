"""What `vsdream export RUN_DIR` exports: the newest usable checkpoint of a run, latest stage first
in the stage table's order for the job's mode (engine/stage_table.py).

texture checkpoint  → its meshes and fine-tuned colour fields (exactly what stage 3 ended with);
geometry checkpoint → DMTet surfaces (cleaned, decimated) + the stage-1 colour fields;
nerf checkpoint     → surfaces extracted from the stage-1 density + its colour fields.
No prior and no stage object is built: exporting never loads diffusion weights.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..checkpoint import Checkpoint, CheckpointStore
from ..context import JobContext
from ..errors import EngineError
from ..mesh.mesh_io import LoadedMesh, load_mesh
from ..representation import ColorField, Representation, load_color_field, load_representation
from ..stage_table import stages_for
from .geometry import extract_dmtet, meshes_from_checkpoint
from .texture import prepare_mesh, scene_views

Mesh = tuple[torch.Tensor, torch.Tensor]


@dataclass
class ExportSources:
    stage: str  # the checkpoint it came from
    step: int
    meshes: list[Mesh]
    fields: list[ColorField]
    loaded: LoadedMesh | None = None

    def color_fns(self) -> list[Callable[[torch.Tensor], torch.Tensor]]:
        return [f.albedo for f in self.fields]


def _per_particle(state: dict[str, torch.Tensor]) -> list[dict[str, torch.Tensor]]:
    """Split a ModuleList state dict (`<i>.<name>`) into one state per particle."""
    groups: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        idx, name = key.split(".", 1)
        groups.setdefault(int(idx), {})[name] = value
    return [groups[i] for i in sorted(groups)]


class _Loader:
    """Turns a stage's checkpoint into ExportSources; one method per stage of the stage table."""

    def __init__(self, ctx: JobContext, store: CheckpointStore, loaded: LoadedMesh | None):
        self.ctx, self.store, self.loaded = ctx, store, loaded

    def _log(self, message: str) -> None:
        self.ctx.log(message, "warning")

    def _prepared(self, raw: list[Mesh]) -> list[Mesh]:
        spec = self.ctx.spec
        return [prepare_mesh(v, f, spec.export.face_target, spec.field.radius, scene_views(spec)) for v, f in raw]

    def _particles(self, ckpt: Checkpoint) -> list[Representation]:
        return [load_representation(self.ctx.spec, s, self.ctx.device) for s in _per_particle(ckpt.state["particles"])]

    def texture(self, ckpt: Checkpoint) -> ExportSources:
        dev = self.ctx.device
        meshes = [(v.to(dev), f.to(dev)) for v, f in ckpt.state["meshes"]]
        fields = [load_color_field(self.ctx.spec, s, dev) for s in _per_particle(ckpt.state["fields"])]
        return ExportSources("texture", ckpt.step, meshes, fields, self.loaded)

    def geometry(self, ckpt: Checkpoint) -> ExportSources:
        nerf = self.store.latest("nerf", log=self._log)
        if nerf is None:
            raise self.missing()
        particles = self._particles(nerf)
        meshes = self._prepared(meshes_from_checkpoint(ckpt.state, self.ctx.device))
        return ExportSources("geometry", ckpt.step, meshes, [p.color_field() for p in particles])

    def nerf(self, ckpt: Checkpoint) -> ExportSources:
        particles = self._particles(ckpt)
        raw: list[Mesh] = []
        for i, p in enumerate(particles):
            with torch.no_grad():
                raw.append(tuple(t.detach() for t in extract_dmtet(self.ctx, p.density, i).extract()))
        return ExportSources("nerf", ckpt.step, self._prepared(raw), [p.color_field() for p in particles])

    def missing(self) -> EngineError:
        if self.loaded is not None:
            return EngineError("this re-texture run has no texture checkpoint yet: nothing to export",
                               hint="resume the job (vsdream run --resume RUN_DIR) until stage 3 has saved a checkpoint")
        return EngineError(f"no checkpoint in {self.ctx.run.ckpt}: nothing to export",
                           hint="run the job first (vsdream run), or point at the right run folder")


def load_export_sources(ctx: JobContext) -> ExportSources:
    spec = ctx.spec
    loaded = load_mesh(spec.input_mesh, decimate=spec.input_mesh_decimate) if spec.mode == "retexture" else None
    loader = _Loader(ctx, CheckpointStore(ctx.run.ckpt), loaded)
    for entry in reversed(stages_for(spec.mode)):
        ckpt = loader.store.latest(entry.name, log=loader._log)
        if ckpt is not None:
            return getattr(loader, entry.name)(ckpt)
    raise loader.missing()
