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
from torch.nn import functional as F

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


def resize_square(rgb: torch.Tensor, size: int) -> torch.Tensor:
    """(B, H, W, C) → (B, size, size, C), bilinear and differentiable; antialiased when shrinking
    (a 1024² render squeezed into 512² without it aliases thin features into the prior's view)."""
    b, h, w, c = rgb.shape
    if (h, w) == (size, size):
        return rgb
    x = rgb.permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=h > size or w > size)
    return x.permute(0, 2, 3, 1).to(rgb.dtype)


class Prior(abc.ABC):
    """A frozen diffusion model giving ε(x_t, t, y, c)."""

    space: Literal["pixel", "latent"] = "pixel"
    schedule: NoiseSchedule
    device: torch.device = torch.device("cpu")
    # side of the square image the model judges (SD-2.1-base: 512); None = the render's own size
    native_size: int | None = None

    def to_native(self, rgb: torch.Tensor) -> torch.Tensor:
        """A render (B, H, W, 3) at the size this prior judges: the schedule's render resolution
        (64² early in `paper`) never reaches the model as 8×8 latents it cannot judge."""
        return rgb if self.native_size is None else resize_square(rgb, self.native_size)

    @abc.abstractmethod
    def encode(self, rgb: torch.Tensor) -> torch.Tensor:
        """Render (B, H, W, 3) in [0, 1] → x₀ (B, C, h, w) for the diffusion model, keeping gradient;
        latent priors resize to `native_size` first (`to_native`)."""

    @abc.abstractmethod
    def predict_noise(self, x_t: torch.Tensor, t: torch.Tensor, cond: Conditioning,
                      guidance_scale: float) -> torch.Tensor:
        """Classifier-free-guided ε prediction (no gradient)."""

    @abc.abstractmethod
    def make_variational_score(self, stage: StageSpec, gen: torch.Generator) -> VariationalScore:
        """A fresh ε_φ for a VSD stage."""

    def describe(self) -> str:
        return type(self).__name__
