"""The prior interface the distillation loop talks to.

A prior predicts the noise of a noisy render x_t (pixel space, or latent space after `encode`).
It also builds the variational score ε_φ that VSD trains alongside the field; for pixel priors
that is a small camera-conditioned UNet, for Stable Diffusion a LoRA on its UNet (the seam).
"""
from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from ..cameras import Cameras
from ..diffusion import NoiseSchedule
from ..spec import StageSpec


@dataclass
class Conditioning:
    """What a prior may look at besides x_t and t."""

    cameras: Cameras
    prompt: str
    view_prompts: list[str]  # view-dependent prompts, one per batch element
    negative_prompt: str = ""
    # (B, H, W, 3) in [0, 1], detached: what the render was composited over. The analytic prior
    # composites its reference objects over the same backdrop; image priors ignore it.
    background: torch.Tensor | None = None


class VariationalScore(nn.Module, abc.ABC):
    """ε_φ(x_t, t, c): the score of the current particle distribution, trained by VSD."""

    prediction_type: str = "epsilon"

    @abc.abstractmethod
    def predict_noise(self, x_t: torch.Tensor, t: torch.Tensor, cond: Conditioning,
                      use_camera: bool = True) -> torch.Tensor:
        """ε estimate for x_t (no gradient needed by callers); use_camera=False zeroes the camera
        condition (the unconditional half when guidance_scale_phi != 1)."""

    @abc.abstractmethod
    def training_loss(self, x0: torch.Tensor, cond: Conditioning, gen: torch.Generator) -> torch.Tensor:
        """Denoising loss on detached x₀: fresh t over the full range, fresh noise, camera dropout."""

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]


class Prior(abc.ABC):
    """A frozen diffusion model giving ε(x_t, t, y, c)."""

    space: Literal["pixel", "latent"] = "pixel"
    schedule: NoiseSchedule
    device: torch.device = torch.device("cpu")

    @abc.abstractmethod
    def encode(self, rgb: torch.Tensor) -> torch.Tensor:
        """Render (B, H, W, 3) in [0, 1] → x₀ (B, C, h, w) for the diffusion model, keeping gradient."""

    @abc.abstractmethod
    def predict_noise(self, x_t: torch.Tensor, t: torch.Tensor, cond: Conditioning,
                      guidance_scale: float) -> torch.Tensor:
        """Classifier-free-guided ε prediction (no gradient)."""

    @abc.abstractmethod
    def make_variational_score(self, stage: StageSpec, gen: torch.Generator) -> VariationalScore:
        """A fresh ε_φ for a VSD stage."""

    def describe(self) -> str:
        return type(self).__name__
