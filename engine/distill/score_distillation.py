"""The SDS / VSD gradient on a render, applied through a stop-gradient loss (DESIGN.md §3 steps 2-5).

grad = w(t)·(ε_pretrained − ε_φ) with w(t) = 1 − ᾱ_t; SDS is the special case ε_φ ≡ ε. The loss
0.5·‖x − stopgrad(x − grad)‖² / B has exactly grad / B as its gradient on x, so any optimiser and
autograd graph (renderer, VAE encoder) carry it back to the field.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..diffusion import sample_t, t_max_at
from ..priors.base import Conditioning, Prior, VariationalScore
from ..spec import StageSpec


@dataclass
class DistillResult:
    loss: torch.Tensor  # backpropagate this into the render
    grad_norm: float
    t_mean: float


def variational_noise(phi: VariationalScore, x_t: torch.Tensor, t: torch.Tensor, cond: Conditioning,
                      scale: float) -> torch.Tensor:
    """ε_φ with camera guidance; a single pass when the scale is 1 (no wasted unconditional pass)."""
    eps_cam = phi.predict_noise(x_t, t, cond, use_camera=True)
    if scale == 1.0:
        return eps_cam
    eps_uncam = phi.predict_noise(x_t, t, cond, use_camera=False)
    return eps_uncam + scale * (eps_cam - eps_uncam)


def distillation_loss(prior: Prior, phi: VariationalScore | None, x0: torch.Tensor, cond: Conditioning,
                      stage: StageSpec, step: int, gen: torch.Generator) -> DistillResult:
    """SDS (phi None or stage.method == 'sds') or VSD loss for x0 (B, C, h, w), gradient-carrying."""
    sched = prior.schedule
    b = x0.shape[0]
    hi = t_max_at(step, stage.steps, stage.t_max, stage.t_max_annealed, stage.anneal_step, stage.t_schedule)
    t = sample_t(b, stage.t_min, hi, sched.num_steps, gen)
    eps = torch.randn(x0.shape, generator=gen).to(device=x0.device, dtype=x0.dtype)
    with torch.no_grad():
        x_t = sched.add_noise(x0.detach(), eps, t)
        eps_pre = prior.predict_noise(x_t, t, cond, stage.guidance_scale).to(x0.dtype)
        if stage.method == "vsd" and phi is not None:
            eps_phi = variational_noise(phi, x_t, t, cond, stage.guidance_scale_phi).to(x0.dtype)
        else:
            eps_phi = eps
        grad = sched.weight(t, x0) * (eps_pre - eps_phi)
        grad = torch.nan_to_num(grad, nan=0.0, posinf=0.0, neginf=0.0)
    target = (x0 - grad).detach()
    loss = 0.5 * ((x0.float() - target.float()) ** 2).sum() / b
    return DistillResult(loss, float(grad.float().norm() / b), float(t.float().mean()))
