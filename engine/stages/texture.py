"""Stage 3: texture. Geometry frozen; each particle's colour field is fine-tuned with VSD (a fresh
ε_φ) on rasterised albedo renders (DESIGN.md §3, anchors-vsd.md §9).

Text mode inherits each stage-1 representation's colour field (for the radiance field: its albedo
head and hash grid) and background; re-texture mode starts a fresh colour field on the user's mesh,
normalised into the unit sphere.
The mesh itself is part of the checkpoint, so `vsdream export` needs nothing else.
"""
from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch

from ..checkpoint import CheckpointStore
from ..context import JobContext
from ..field import Background
from ..mesh.mesh_io import DEFAULT_FACE_LIMIT, LoadedMesh, load_mesh
from ..mesh.render import render_mesh
from ..mesh.uv_check import UVReport, check_uvs
from ..preview import mean_over_particles, psnr_by_path, to_uint8
from ..report import write_contact_sheet
from ..representation import ColorField, new_color_field
from ..stage_loop import PreviewImages, Stage
from ..texture_check import check_texture
from .mesh_common import MeshStage

Mesh = tuple[torch.Tensor, torch.Tensor]  # vertices (V, 3) float, faces (F, 3) long


def prepare_mesh(vertices: torch.Tensor, faces: torch.Tensor, face_target: int, radius: float = 1.0,
                 inside: float | None = None) -> Mesh:
    """Clean-up before texturing, so the texture stage optimises exactly the mesh that gets
    exported: drop components no camera can see (bubbles a NeRF leaves inside an object; for a
    scene, `inside` = the camera distance, the shell beyond its walls), then small components,
    close vertices, and decimate to the face target."""
    from ..cameras import inside_views
    from ..mesh.cleanup import clean_mesh
    from ..mesh.raster import make_rasterizer
    from ..mesh.visibility import drop_hidden_components
    views = inside_views(inside, 128) if inside is not None else None
    faces = drop_hidden_components(vertices.detach(), faces, make_rasterizer(vertices.device), radius, cams=views)
    v, f = clean_mesh(vertices.detach().cpu().numpy(), faces.cpu().numpy(), face_target)
    return torch.from_numpy(v).to(vertices.device), torch.from_numpy(f).to(vertices.device)


def scene_views(spec: Any) -> float | None:
    """For a scene, where prepare_mesh looks from (the far end of the camera range); None for objects."""
    return spec.camera.distance[1] if spec.field.kind == "scene" else None


class TextureStage(MeshStage):
    name = "texture"
    trains_background = True
    uv_report: UVReport | None = None  # re-texture with the user's own UVs: what the bake will do to them

    def __init__(self, ctx: JobContext, meshes: list[Mesh], fields: list[ColorField],
                 backgrounds: list[Background | None] | None = None, loaded: LoadedMesh | None = None):
        super().__init__(ctx, ctx.spec.texture)
        self.meshes = [(v.detach().to(self.device).float(), f.to(self.device).long()) for v, f in meshes]
        self.fields = torch.nn.ModuleList(fields).to(self.device)
        # stage 1's background networks keep training here (threestudio's texture stage, lr 1e-3): the
        # colour field moves, and a frozen far field would hold it to stage 1's backdrop; copies, so
        # stage 1's own particles stay as they finished
        self.backgrounds = [copy.deepcopy(b).to(self.device) if b is not None else None
                            for b in (backgrounds or [None] * len(fields))]
        self.loaded = loaded
        self.frame_subject(self.meshes)
        groups = [g for fld in self.fields for g in fld.param_groups(self.cfg)]
        groups += [g for b in self.backgrounds if b is not None for g in b.param_groups(self.cfg)]
        self.opt = torch.optim.AdamW(groups, betas=(0.9, 0.99), eps=1e-15, weight_decay=0.0)
        self._setup_phi()

    # ------------------------------------------------------------ factories
    @classmethod
    def for_job(cls, ctx: JobContext, earlier: dict[str, Stage]) -> TextureStage:
        """The pipeline's constructor (engine/stage_table.py): after stages 1 and 2 in text mode,
        on the user's mesh in re-texture mode (MeshInputError before anything is written)."""
        if "geometry" in earlier:
            return cls.from_stages(ctx, earlier["nerf"], earlier["geometry"])
        spec = ctx.spec
        loaded = load_mesh(spec.input_mesh, face_limit=DEFAULT_FACE_LIMIT, decimate=spec.input_mesh_decimate)
        ctx.log(f"re-texturing {loaded.source.name}: {loaded.mesh.num_faces} faces, "
                f"{'its own UVs' if loaded.had_uvs else 'no UVs (will unwrap)'}"
                + (", decimated" if loaded.decimated else ""))
        stage = cls.from_mesh_file(ctx, loaded)
        if loaded.had_uvs:
            stage.uv_report = check_uvs(loaded.mesh.uvs, loaded.mesh.faces)
            for warning in stage.uv_report.warnings():
                ctx.log(f"{loaded.source.name}: {warning}", level="warning")
        return stage

    def results(self, resolution: int = 128) -> dict[str, Any]:
        """Held-out evaluation of the textured meshes and their contact sheet (one row per particle);
        in re-texture mode also what was loaded."""
        metrics = self.evaluate(resolution, self.spec.camera.eval_views)
        metrics["contact_sheet"] = write_contact_sheet(self.ctx, metrics.pop("images"), "mesh_contact_sheet.png")
        metrics.update(check_texture(self))  # a nearly flat texture is reported, with its likely cause
        out: dict[str, Any] = {self.name: metrics}
        if self.loaded is not None:
            m = self.loaded
            out["input"] = {"path": str(m.source), "faces": m.mesh.num_faces, "vertices": int(len(m.mesh.vertices)),
                            "had_uvs": m.had_uvs, "decimated": m.decimated}
            if self.uv_report is not None:
                out["input"].update(uv_overlap=round(self.uv_report.overlap, 4), uv_outside=round(self.uv_report.outside, 4),
                                    uv_warnings=self.uv_report.warnings())
        return out

    @classmethod
    def from_stages(cls, ctx: JobContext, nerf: Any, geometry: Any) -> TextureStage:
        """Text mode: GeometryStage surfaces (cleaned, decimated) + copies of the stage-1 colour fields.
        When stage 3 has a checkpoint its meshes replace these, so the clean-up is skipped."""
        resuming = bool(CheckpointStore(ctx.run.ckpt).list(cls.name))
        meshes = [(v, f) if resuming else prepare_mesh(v, f, ctx.spec.export.face_target, ctx.spec.field.radius,
                                                       scene_views(ctx.spec))
                  for v, f in geometry.meshes()]
        fields = [p.color_field() for p in nerf.particles]
        return cls(ctx, meshes, fields, [p.background for p in nerf.particles])

    @classmethod
    def from_mesh_file(cls, ctx: JobContext, loaded: LoadedMesh) -> TextureStage:
        """Re-texture mode: the user's mesh as loaded (vertex order kept), fresh colour fields per particle."""
        v = torch.from_numpy(loaded.mesh.vertices).float()
        f = torch.from_numpy(loaded.mesh.faces).long()
        gen = ctx.generator("texture-init")
        fields = [new_color_field(ctx.spec, gen, ctx.device) for _ in range(ctx.spec.particles)]
        # no trained background network here: backdrops are random solid colours
        return cls(ctx, [(v, f)] * len(fields), fields, None, loaded)

    # ----------------------------------------------------------------- step
    def render(self, i: int, cams, backdrop: torch.Tensor):
        v, f = self.meshes[i]
        return render_mesh(self.raster, v, f, cams, self.fields[i].albedo, backdrop)

    def step(self, step: int) -> dict[str, float]:
        tm = self.timer
        tm.steps += 1
        self.opt.zero_grad(set_to_none=True)
        total = 0.0
        renders = []
        for i, bg in enumerate(self.backgrounds):
            with tm.phase("render"):
                cams, backdrop = self.sample_views(step, bg)
                out = self.render(i, cams, backdrop)
                cond = self.condition(cams, backdrop.detach())
            with tm.phase("prior"):
                res, x0 = self.distill(out.image, cond, step)
            with tm.phase("backward"):
                res.loss.backward()
            total += float(res.loss.detach()) / len(self.fields)
            renders.append((x0.detach(), cond))
        with tm.phase("optimiser"):
            self.opt.step()
        losses = {"distill": total}
        with tm.phase("phi_train"):
            losses.update(self.train_phi(renders))
        return losses

    def albedo_fn(self, i: int):
        field = self.fields[i]
        return lambda x: field.albedo(x.to(self.device))

    # -------------------------------------------------------------- preview
    def render_views(self, cams, particle: int = 0, supersample: int = 1) -> torch.Tensor:
        """(B, H, W, 3) renders on white, one camera at a time (bounded memory); `supersample`
        renders ss× larger and box-filters, as the analytic prior's reference renders do."""
        h, w = cams.height, cams.width
        big = cams.to(self.device).with_resolution(w * supersample, h * supersample)
        white = torch.ones(1, big.height, big.width, 3, device=self.device)
        with torch.no_grad():
            img = torch.cat([self.render(particle, big.index(k), white).image for k in range(cams.batch)])
        if supersample > 1:
            img = torch.nn.functional.avg_pool2d(img.permute(0, 3, 1, 2), supersample).permute(0, 2, 3, 1)
        return img

    def preview(self, step: int) -> PreviewImages:
        cams = self.sampler.held_out_orbit(self.resolution(max(step - 1, 0)), views=1).to(self.device)
        white = torch.ones(1, cams.height, cams.width, 3, device=self.device)
        rgbs, normals = [], []
        for i in range(len(self.fields)):
            rgbs.append(to_uint8(self.render_views(cams, i)[0]))
            v, f = self.meshes[i]
            normals.append(to_uint8(render_mesh(self.raster, v, f, cams, "normal", white).image[0]))
        return PreviewImages(np.concatenate(rgbs, axis=1), np.concatenate(normals, axis=1))

    def evaluate(self, resolution: int = 128, views: int | None = None, supersample: int = 2) -> dict[str, Any]:
        """Held-out PSNR (the orbit, and a scene's centre pan) against the prior's reference render
        (analytic prior), per particle."""
        cams, orbit = self.sampler.held_out_views(resolution, views)
        cams = cams.to(self.device)
        reference = getattr(self.prior, "reference_render", None)
        white = torch.ones(cams.batch, resolution, resolution, 3, device=self.device)
        ref = reference(cams, white) if reference is not None else None
        metrics: dict[str, Any] = {"resolution": resolution, "views": cams.batch, "particles": [], "images": []}
        for i in range(len(self.fields)):
            rgb = self.render_views(cams, i, supersample)
            entry: dict[str, Any] = {"particle": i, "faces": int(self.meshes[i][1].shape[0])}
            if ref is not None:
                entry.update(psnr_by_path(rgb, ref, orbit))
            metrics["particles"].append(entry)
            metrics["images"].append([to_uint8(rgb[k]) for k in range(cams.batch)])
        metrics.update(mean_over_particles(metrics["particles"]))
        return metrics

    # ---------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        return {"meshes": [(v.cpu(), f.cpu()) for v, f in self.meshes], "fields": self.fields.state_dict(),
                "backgrounds": [b.state_dict() if b is not None else None for b in self.backgrounds],
                "opt": self.opt.state_dict(), **self.phi_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.meshes = [(v.to(self.device), f.to(self.device)) for v, f in state["meshes"]]
        self.fields.load_state_dict(state["fields"])
        for b, saved in zip(self.backgrounds, state.get("backgrounds") or [None] * len(self.backgrounds), strict=True):
            if b is not None and saved is not None:
                b.load_state_dict(saved)
        try:
            self.opt.load_state_dict(state["opt"])
        except ValueError:  # saved before the background trained here: other parameter groups
            self.ctx.log("texture: checkpoint from an older version; the optimiser's moments start afresh")
        self.load_phi_state(state)
