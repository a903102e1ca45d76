"""What the two mesh stages (geometry, texture) share: cameras, backdrop, prior, SDS/VSD, ε_φ.

Both render a triangle mesh with the rasteriser, hand the image to the same distillation loss as
stage 1 and, for VSD, train a fresh ε_φ on the detached renders.
"""
from __future__ import annotations

from typing import Any

import torch

from ..cameras import Cameras, CameraSampler
from ..context import JobContext
from ..distill import DistillResult, distillation_loss
from ..distill.phi_training import HoldsPhi, build_phi
from ..field import Background, choose_background
from ..mesh.raster import make_rasterizer
from ..priors.base import Conditioning, Prior
from ..spec import StageSpec
from ..stage_loop import Stage
from ..timing import PhaseTimer
from .nerf import resolution_at


class MeshStage(HoldsPhi, Stage):
    """Base class: subclasses set `name`, build their parameters, then call `_setup_phi`."""

    cfg: StageSpec
    trains_background = False  # whether the distillation gradient reaches the background network

    def __init__(self, ctx: JobContext, cfg: StageSpec, prior: Prior | None = None):
        self.ctx, self.spec, self.cfg = ctx, ctx.spec, cfg
        self.total = cfg.steps if cfg.enabled else 0
        self.preview_every, self.checkpoint_every = cfg.preview_every, cfg.checkpoint_every
        self.device = ctx.device
        self.gen = ctx.generator(self.name)
        self.timer = PhaseTimer()
        self.sampler = CameraSampler(ctx.spec.camera)
        self.camera_factor = 1.0  # training and held-out camera distances × this (frame_subject)
        self.raster = make_rasterizer(self.device)
        self.prior = prior if prior is not None else ctx.prior()
        self.phi_trainer = None

    def frame_subject(self, meshes: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Scale this stage's camera distances so the meshes fill the frame as the preset's cameras
        allow (engine/framing.py): a user's mesh in re-texture mode, or the surface stage 1 grew,
        whatever its size and aspect. Objects only: a scene's cameras stand inside it."""
        from ..framing import mesh_stage_factor
        self._use_camera_factor(mesh_stage_factor(self.spec, meshes))

    def _use_camera_factor(self, factor: float) -> None:
        """Train from the job's cameras with every distance × `factor` (a checkpoint's factor is
        applied here too, so a resumed stage trains from the same cameras)."""
        from ..framing import scaled_camera
        if factor != self.camera_factor:
            self.ctx.log(f"{self.name}: camera distances × {factor:.3g} to frame the mesh "
                         f"(training {self.spec.camera.distance[0] * factor:.2f}–{self.spec.camera.distance[1] * factor:.2f})")
        self.camera_factor = factor
        self.sampler = CameraSampler(scaled_camera(self.spec.camera, factor))

    def _setup_phi(self) -> None:
        """A fresh ε_φ per stage (DESIGN.md §3 stage 3); nothing for SDS."""
        self.phi_trainer = build_phi(self.prior, self.cfg, self.gen, self.device)

    def resolution(self, step: int) -> int:
        return resolution_at(self.cfg, step)

    def sample_views(self, step: int, background: Background | None) -> tuple[Cameras, torch.Tensor]:
        cams = self.sampler.sample(self.cfg.batch_size, self.resolution(step), self.gen).to(self.device)
        _, dirs = cams.rays()
        mode = self.spec.field.background
        if background is None and mode in ("network", "random_half"):
            mode = "random_half_solid"
        if mode == "random_half_solid":  # no network to fall back on: always a random solid colour
            draws = torch.rand(cams.batch, 4, generator=self.gen).to(self.device)
            return cams, draws[:, None, None, :3].expand_as(dirs).contiguous()
        backdrop = choose_background(mode, dirs, background, self.gen)
        return cams, backdrop if self.trains_background else backdrop.detach()

    def condition(self, cams: Cameras, backdrop: torch.Tensor) -> Conditioning:
        p = self.spec.prompt
        return Conditioning(cams, p, self.sampler.view_prompts(p, cams), self.spec.negative_prompt, backdrop)

    def distill(self, image: torch.Tensor, cond: Conditioning, step: int,
                prior: Prior | None = None) -> tuple[DistillResult, torch.Tensor]:
        x0 = (prior or self.prior).encode(image)
        return distillation_loss(prior or self.prior, self.phi, x0, cond, self.cfg, step, self.gen), x0

    def train_phi(self, renders: list[tuple[torch.Tensor, Conditioning]]) -> dict[str, float]:
        if self.phi_trainer is None or not renders:
            return {}
        return {"phi": self.phi_trainer.train(renders, self.gen)}

    def phi_state(self) -> dict[str, Any]:
        return {**super().phi_state(), "gen": self.gen.get_state(), "camera_factor": self.camera_factor}

    def load_phi_state(self, state: dict[str, Any]) -> None:
        super().load_phi_state(state)
        self.gen.set_state(state["gen"])
        if "camera_factor" in state:
            self._use_camera_factor(float(state["camera_factor"]))
