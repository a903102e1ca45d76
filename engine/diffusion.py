"""Noise schedule, ε/v/x₀ conversions and the t schedule: one place for the diffusion maths.

x_t = α_t x₀ + σ_t ε with α_t = √ᾱ_t, σ_t = √(1−ᾱ_t); v = α_t ε − σ_t x₀.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class NoiseSchedule:
    alphas_cumprod: torch.Tensor  # (T,) float32

    @classmethod
    def scaled_linear(cls, steps: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012) -> NoiseSchedule:
        """Stable Diffusion's schedule; the analytic prior uses it too so figures transfer."""
        betas = torch.linspace(beta_start ** 0.5, beta_end ** 0.5, steps, dtype=torch.float64) ** 2
        return cls(torch.cumprod(1.0 - betas, dim=0).float())

    @property
    def num_steps(self) -> int:
        return self.alphas_cumprod.shape[0]

    def _gather(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        a = self.alphas_cumprod.to(like.device)[t.long()].to(like.dtype)
        return a.view(-1, *([1] * (like.dim() - 1)))

    def alpha_sigma(self, t: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        abar = self._gather(t, like)
        return abar.sqrt(), (1.0 - abar).sqrt()

    def add_noise(self, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a, s = self.alpha_sigma(t, x0)
        return a * x0 + s * eps

    def weight(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """w(t) = 1 − ᾱ_t (DESIGN.md §3 step 5)."""
        return 1.0 - self._gather(t, like)

    def velocity(self, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a, s = self.alpha_sigma(t, x0)
        return a * eps - s * x0

    def eps_from_v(self, x_t: torch.Tensor, v: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a, s = self.alpha_sigma(t, x_t)
        return s * x_t + a * v

    def v_from_eps(self, x_t: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a, s = self.alpha_sigma(t, x_t)
        return (eps - s * x_t) / a

    def x0_from_eps(self, x_t: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a, s = self.alpha_sigma(t, x_t)
        return (x_t - s * eps) / a

    def to_eps(self, pred: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, prediction_type: str) -> torch.Tensor:
        """Convert a model output of `prediction_type` ('epsilon' | 'v_prediction') to ε."""
        if prediction_type == "epsilon":
            return pred
        if prediction_type == "v_prediction":
            return self.eps_from_v(x_t, pred, t)
        raise ValueError(f"unsupported prediction_type {prediction_type!r}")

    def target(self, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor, prediction_type: str) -> torch.Tensor:
        """The training target for a model of `prediction_type`."""
        if prediction_type == "epsilon":
            return eps
        if prediction_type == "v_prediction":
            return self.velocity(x0, eps, t)
        raise ValueError(f"unsupported prediction_type {prediction_type!r}")


def t_max_at(step: int, total: int, t_max: float, t_max_annealed: float, anneal_step: int,
             schedule: str) -> float:
    """Upper end of the t range at `step`: hard switch at `anneal_step` or a sqrt decay."""
    if schedule == "sqrt":
        frac = min(1.0, step / max(1, total))
        return t_max - (t_max - t_max_annealed) * math.sqrt(frac)
    return t_max if step < anneal_step else t_max_annealed


def sample_t(batch: int, t_min: float, t_max: float, num_steps: int, gen: torch.Generator) -> torch.Tensor:
    """Integer timesteps uniform in [t_min, t_max]·T (inclusive)."""
    lo = int(t_min * num_steps)
    hi = max(lo + 1, int(t_max * num_steps) + 1)
    return torch.randint(lo, min(hi, num_steps), (batch,), generator=gen)
