"""What `vsdream export RUN_DIR` exports: the newest usable checkpoint of a run, newest stage first.

texture checkpoint  → its meshes and fine-tuned colour fields (exactly what stage 3 ended with);
geometry checkpoint → DMTet surfaces (cleaned, decimated) + the stage-1 colour fields;
nerf checkpoint     → surfaces extracted from the stage-1 density + its colour fields.
No prior and no stage object is built: exporting never loads diffusion weights.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..checkpoint import CheckpointStore
from ..context import JobContext
from ..errors import EngineError
from ..field import RadianceField
from ..field.radiance import backend_for
from ..mesh.mesh_io import LoadedMesh, load_mesh
from .geometry import extract_dmtet, meshes_from_checkpoint
from .texture import prepare_mesh

Mesh = tuple[torch.Tensor, torch.Tensor]


@dataclass
class ExportSources:
    stage: str  # the checkpoint it came from
    step: int
    meshes: list[Mesh]
    fields: list[RadianceField]
    loaded: LoadedMesh | None = None

    def color_fns(self) -> list[Callable[[torch.Tensor], torch.Tensor]]:
        return [f.albedo for f in self.fields]


def _fields(ctx: JobContext, states: list[dict[str, torch.Tensor]]) -> list[RadianceField]:
    out = []
    for s in states:
        field = RadianceField(ctx.spec.field, backend=backend_for(ctx.device)).to(ctx.device)
        field.load_state_dict(s)
        out.append(field.eval())
    return out


def _per_particle(state: dict[str, torch.Tensor], module: str | None = None) -> list[dict[str, torch.Tensor]]:
    """Split a ModuleList state dict (`<i>.<name>`) per particle; with `module`, keep only
    `<i>.<module>.<name>` entries, as `<name>`."""
    groups: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        idx, name = key.split(".", 1)
        if module is not None:
            head, _, name = name.partition(".")
            if head != module:
                continue
        groups.setdefault(int(idx), {})[name] = value
    return [groups[i] for i in sorted(groups)]


def load_export_sources(ctx: JobContext) -> ExportSources:
    store = CheckpointStore(ctx.run.ckpt)
    log = lambda m: ctx.log(m, "warning")  # noqa: E731
    spec = ctx.spec
    loaded = load_mesh(spec.input_mesh, decimate=spec.input_mesh_decimate) if spec.mode == "retexture" else None
    tex = store.latest("texture", log=log)
    if tex is not None:
        meshes = [(v.to(ctx.device), f.to(ctx.device)) for v, f in tex.state["meshes"]]
        return ExportSources("texture", tex.step, meshes, _fields(ctx, _per_particle(tex.state["fields"])), loaded)
    if loaded is not None:
        raise EngineError("this re-texture run has no texture checkpoint yet: nothing to export",
                          hint="resume the job (vsdream run --resume RUN_DIR) until stage 3 has saved a checkpoint")
    nerf = store.latest("nerf", log=log)
    if nerf is None:
        raise EngineError(f"no checkpoint in {ctx.run.ckpt}: nothing to export",
                          hint="run the job first (vsdream run), or point at the right run folder")
    fields = _fields(ctx, _per_particle(nerf.state["particles"], "field"))
    geo = store.latest("geometry", log=log)
    if geo is not None:
        raw, stage, step = meshes_from_checkpoint(geo.state, ctx.device), "geometry", geo.step
    else:
        raw, stage, step = [], "nerf", nerf.step
        for i, fld in enumerate(fields):
            with torch.no_grad():
                raw.append(tuple(t.detach() for t in extract_dmtet(ctx, fld.density, i).extract()))
    meshes = [prepare_mesh(v, f, spec.export.face_target, spec.field.radius) for v, f in raw]
    return ExportSources(stage, step, meshes, fields, None)
