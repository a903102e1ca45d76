"""Stage 1: n radiance-field particles distilled with SDS or VSD (DESIGN.md §3).

Per step and particle: sample cameras, render over a backdrop (random solid colour half the time),
encode for the prior, apply the distillation gradient through the render; then train the shared
ε_φ on the detached renders of all particles.
"""
from __future__ import annotations

import bisect
from typing import Any

import numpy as np
import torch

from ..cameras import Cameras, CameraSampler
from ..context import JobContext
from ..distill import distillation_loss
from ..distill.phi_training import HoldsPhi, build_phi
from ..field import choose_background
from ..panorama import render_panorama
from ..preview import mean_over_particles, normal_to_uint8, psnr, psnr_by_path, to_uint8
from ..priors.base import Conditioning
from ..render import RenderOutput
from ..report import write_contact_sheet, write_result_image
from ..representation import Representation, make_representation
from ..spec import StageSpec
from ..stage_loop import PreviewImages, Stage
from ..timing import PhaseTimer


def resolution_at(stage: StageSpec, step: int) -> int:
    starts = [s for s, _ in stage.resolution_schedule]
    return stage.resolution_schedule[bisect.bisect_right(starts, step) - 1][1]


def _optimizer(params: list[dict[str, Any]]) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, betas=(0.9, 0.99), eps=1e-15, weight_decay=0.0)


def z_variance_loss(out: RenderOutput) -> torch.Tensor:
    """Mean depth variance over rays that are at least half opaque (threestudio's scene loss): a ray
    whose weight is smeared along its length is fog, and fog is what a scene's mesh cannot keep."""
    solid = out.opacity.detach() > 0.5
    if not bool(solid.any()):
        return out.opacity.new_zeros(())
    return out.depth_variance[solid].mean()


def opaque_weight(cfg: StageSpec, step: int) -> float:
    """The opacity term's weight at `step`: 0 before `opaque_ramp[0]`, `lambda_opaque` from
    `opaque_ramp[1]`, linear between (the binary cross-entropy of each ray's opacity with itself,
    threestudio's `lambda_opaque`: rays either hit or miss, so no fog survives into the mesh)."""
    start, end = cfg.opaque_ramp
    if step < start:
        return 0.0
    if step >= end:
        return cfg.lambda_opaque
    return cfg.lambda_opaque * (step - start) / (end - start)


class NerfStage(HoldsPhi, Stage):
    name = "nerf"

    def __init__(self, ctx: JobContext):
        spec = ctx.spec
        self.ctx, self.spec, self.cfg = ctx, spec, spec.nerf
        self.total = self.cfg.steps
        self.preview_every, self.checkpoint_every = self.cfg.preview_every, self.cfg.checkpoint_every
        self.device = ctx.device
        self.gen = ctx.generator(self.name)
        self.timer = PhaseTimer()
        self.sampler = CameraSampler(spec.camera)
        self.prior = ctx.prior()
        # one Representation per particle (engine/representation): the stage never reaches inside it
        self.particles = torch.nn.ModuleList(
            make_representation(spec, self.gen, self.device) for _ in range(spec.particles)).to(self.device)
        self.opt = _optimizer([g for p in self.particles for g in p.param_groups(self.cfg)])
        self.phi_trainer = build_phi(self.prior, self.cfg, self.gen, self.device)

    @classmethod
    def for_job(cls, ctx: JobContext, earlier: dict[str, Stage]) -> NerfStage:
        """The pipeline's constructor (engine/stage_table.py): stage 1 starts from the blob init."""
        return cls(ctx)

    def results(self) -> dict[str, Any]:
        """Held-out evaluation of stage 1 and its contact sheet (one row per particle)."""
        metrics = self.evaluate(resolution_at(self.cfg, max(self.total - 1, 0)))
        metrics["contact_sheet"] = write_contact_sheet(self.ctx, metrics.pop("images"), "contact_sheet.png")
        if self.spec.field.kind == "scene":
            metrics["panoramas"] = self.write_panoramas()
        return {self.name: metrics}

    def write_panoramas(self) -> list[str]:
        """Scene mode: an equirectangular panorama from the centre per particle, in Blender's World
        mapping (engine/panorama.py): result/panorama.png, or panorama_<i>.png for several."""
        width, n = self.spec.export.panorama_width, len(self.particles)
        paths = []
        for i, rep in enumerate(self.particles):
            rgb = render_panorama(lambda tile, s, rep=rep: rep.render(tile, self.display_backdrop(rep, tile.rays()[1]),
                                                                     s, None),
                                  width, self.cfg.samples_per_ray, device=self.device)
            paths.append(write_result_image(self.ctx, rgb, "panorama.png" if n == 1 else f"panorama_{i}.png",
                                            "panorama"))
        return paths

    # ----------------------------------------------------------------- step
    def step(self, step: int) -> dict[str, float]:
        cfg, spec, tm = self.cfg, self.spec, self.timer
        res = resolution_at(cfg, step)
        tm.steps += 1
        with tm.phase("occupancy"):
            for p in self.particles:
                p.update(step)
        self.opt.zero_grad(set_to_none=True)
        total_distill, grad_norm = 0.0, 0.0
        renders: list[tuple[torch.Tensor, Conditioning]] = []
        for p in self.particles:
            with tm.phase("render"):
                cams = self.sampler.sample(cfg.batch_size, res, self.gen).to(self.device)
                _, dirs = cams.rays()
                backdrop = choose_background(spec.field.background, dirs, p.background, self.gen)
                out = p.render(cams, backdrop, cfg.samples_per_ray, self.gen)
                cond = Conditioning(cams, spec.prompt, self.sampler.view_prompts(spec.prompt, cams),
                                    spec.negative_prompt, backdrop.detach())
                x0 = self.prior.encode(out.rgb)
            with tm.phase("prior"):
                res_d = distillation_loss(self.prior, self.phi, x0, cond, cfg, step, self.gen)
            with tm.phase("backward"):
                loss = res_d.loss + self._regularisers(out, step)
                loss.backward()
            total_distill += res_d.loss.item()
            grad_norm += res_d.grad_norm
            renders.append((x0.detach(), cond))
        with tm.phase("optimiser"):
            self.opt.step()
        losses = {"distill": total_distill / len(self.particles), "grad_norm": grad_norm / len(self.particles)}
        if self.phi_trainer is not None:
            with tm.phase("phi_train"):
                losses["phi"] = self.phi_trainer.train(renders, self.gen)
        return losses

    def _regularisers(self, out: RenderOutput, step: int) -> torch.Tensor:
        cfg = self.cfg
        reg = out.rgb.new_zeros(())
        if cfg.lambda_sparsity > 0:
            reg = reg + cfg.lambda_sparsity * torch.sqrt(out.opacity ** 2 + 0.01).mean()
        opaque = opaque_weight(cfg, step)
        if opaque > 0:
            o = out.opacity.clamp(1e-3, 1 - 1e-3)
            reg = reg + opaque * torch.nn.functional.binary_cross_entropy(o, o)
        if cfg.lambda_z_variance > 0 and out.depth_variance is not None:
            reg = reg + cfg.lambda_z_variance * z_variance_loss(out)
        return reg

    # -------------------------------------------------------------- preview
    def display_backdrop(self, rep: Representation, dirs: torch.Tensor) -> torch.Tensor:
        """What a finished render shows where rays leave the field: white behind an object; behind a
        scene its own far field (the background network it trained with), since a scene has no
        backdrop of its own and a white one would show through every wall that is not fully opaque."""
        if self.spec.field.kind == "scene":
            return rep.background(dirs)
        return torch.ones_like(dirs)

    def render_views(self, cams: Cameras, particle: int = 0, normals: bool = False) -> RenderOutput:
        """Deterministic renders over the display backdrop (previews, evaluation, contact sheet)."""
        cams = cams.to(self.device)
        rep: Representation = self.particles[particle]
        outs = []
        for i in range(cams.batch):
            cam = cams.index(i)
            with torch.no_grad():
                backdrop = self.display_backdrop(rep, cam.rays()[1])
            outs.append(rep.render(cam, backdrop, self.cfg.samples_per_ray, None, normals=normals))
        return RenderOutput(
            rgb=torch.cat([o.rgb for o in outs]), opacity=torch.cat([o.opacity for o in outs]),
            depth=torch.cat([o.depth for o in outs]),
            normal=torch.cat([o.normal for o in outs]) if normals else None)

    def preview(self, step: int) -> PreviewImages:
        res = resolution_at(self.cfg, max(step - 1, 0))
        cams = self.sampler.held_out_orbit(res, views=1)
        rgbs, normals = [], []
        for i in range(len(self.particles)):
            with torch.no_grad():  # no RGB graph kept; the normals' own pass is chunked (render/packed.py)
                out = self.render_views(cams, particle=i, normals=True)
            rgbs.append(to_uint8(out.rgb[0]))
            # the renderer's normal is opacity-weighted, so empty space shows as neutral grey
            normals.append(normal_to_uint8(out.normal[0]))
        return PreviewImages(np.concatenate(rgbs, axis=1), np.concatenate(normals, axis=1))

    def evaluate(self, resolution: int, views: int | None = None) -> dict[str, Any]:
        """Held-out renders (the orbit, and a scene's centre pan); PSNR against the prior's reference
        when it has one."""
        cams, orbit = self.sampler.held_out_views(resolution, views)
        metrics: dict[str, Any] = {"resolution": resolution, "views": cams.batch, "particles": []}
        reference = getattr(self.prior, "reference_render", None)
        sheets = []
        with torch.no_grad():
            white = torch.ones(cams.batch, resolution, resolution, 3, device=self.device)
            ref = reference(cams.to(self.device), white) if reference is not None else None  # a scene's own is opaque
            for i in range(len(self.particles)):
                out = self.render_views(cams, particle=i)
                entry: dict[str, Any] = {"particle": i}
                if ref is not None:
                    per_view = [psnr(out.rgb[v], ref[v]) for v in range(cams.batch)]
                    entry["psnr_views"] = per_view
                    entry.update(psnr_by_path(out.rgb, ref, orbit))
                metrics["particles"].append(entry)
                sheets.append([to_uint8(out.rgb[v]) for v in range(cams.batch)])
        metrics.update(mean_over_particles(metrics["particles"]))
        metrics["images"] = sheets
        return metrics

    # ---------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        return {
            "particles": self.particles.state_dict(),
            "opt": self.opt.state_dict(),
            **self.phi_state(),
            "gen": self.gen.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.particles.load_state_dict(state["particles"])
        self.opt.load_state_dict(state["opt"])
        self.load_phi_state(state)
        self.gen.set_state(state["gen"])
