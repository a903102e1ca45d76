"""The paper's 2D claim, measured: SDS particles collapse onto mode centres, VSD particles spread.

Particles are points in the plane and rendering is the identity. The prior is an exact Gaussian
mixture (the analytic prior's maths with fixed means), so ε* is known in closed form; SDS and VSD
run through the same `distillation_loss` as the 3D stages.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ..diffusion import NoiseSchedule
from ..distill import distillation_loss
from ..distill.phi_training import build_phi
from ..distill.phi_unet import timestep_embedding
from ..priors.base import Prior, VariationalScore
from ..priors.mixture import mixture_eps
from ..spec import StageSpec


class PointMixturePrior(Prior):
    """p₀ = Σ_k π_k N(m_k, s²I) over points; ε* exact."""

    space = "pixel"

    def __init__(self, means: torch.Tensor, s: float):
        self.means, self.s = means, s
        self.schedule = NoiseSchedule.scaled_linear()

    def encode(self, rgb: torch.Tensor) -> torch.Tensor:
        return rgb

    def predict_noise(self, x_t, t, cond, guidance_scale):  # type: ignore[override]
        alpha, sigma = self.schedule.alpha_sigma(t, x_t)
        k = self.means.shape[0]
        means = self.means[:, None, :].expand(k, x_t.shape[0], -1)
        log_pi = torch.full((k,), -math.log(k), dtype=x_t.dtype)
        return mixture_eps(x_t, alpha, sigma, means, log_pi, self.s)

    def make_variational_score(self, stage: StageSpec, gen: torch.Generator) -> VariationalScore:
        return PointEpsPhi(self.means.shape[1], self.schedule, gen)


class PointEpsPhi(VariationalScore):
    """ε_φ(x_t, t) for points: a small MLP (there is no camera in the plane)."""

    def __init__(self, dim: int, schedule: NoiseSchedule, gen: torch.Generator, width: int = 128):
        super().__init__()
        self.schedule = schedule
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
            self.t_mlp = nn.Sequential(nn.Linear(64, width), nn.SiLU())
            self.net = nn.Sequential(nn.Linear(dim + width, width), nn.SiLU(), nn.Linear(width, width), nn.SiLU(),
                                     nn.Linear(width, width), nn.SiLU(), nn.Linear(width, dim))

    def predict_noise(self, x_t, t, cond, use_camera=True):  # type: ignore[override]
        e = self.t_mlp(timestep_embedding(t, 64, self.schedule.num_steps))
        return self.net(torch.cat([x_t, e], dim=-1))

    def training_loss(self, x0, cond, gen):  # type: ignore[override]
        t = torch.randint(0, self.schedule.num_steps, (x0.shape[0],), generator=gen)
        eps = torch.randn(x0.shape, generator=gen)
        return F.mse_loss(self.predict_noise(self.schedule.add_noise(x0, eps, t), t, cond), eps)


@dataclass
class SpreadResult:
    method: str
    spread_ratio: float  # mean distance to the nearest mode / the true samples' mean distance
    mode_counts: list[int]


def run_mixture2d(method: str, steps: int = 3000, particles: int = 64, s: float = 0.05, seed: int = 0,
                  lr: float = 3e-3, phi_repeats: int = 1, shape: tuple[int, ...] = (3, 8, 8),
                  modes: int = 4, init_spread: float | None = None, optimizer: str = "adam",
                  phi_warmup: int = 0) -> SpreadResult:
    """Particles are tiny images of `shape` (flattened); modes are random images in [-0.8, 0.8].

    In two or three dimensions the modes sit too close for SDS to separate them at large t (it
    collapses onto the mixture mean); at image-like dimension it collapses onto the mode centres,
    which is the behaviour the paper contrasts VSD with.

    `init_spread` None starts the particles uniformly over the square (the benchmark); a number
    starts them on the modes (in turn) with `init_spread`·s of Gaussian spread, so a short run
    measures only what happens to the spread: SDS shrinks it toward 0, VSD settles at s.
    `optimizer` 'sgd' moves particles by the distillation gradient itself, whose noise vanishes
    with w(t) at small t; Adam moves every particle about lr per step whatever the gradient's size,
    a noise floor that a short run cannot average out.
    `phi_warmup` trains ε_φ on the starting particles first, so a short run does not spend its
    steps on an ε_φ that knows nothing yet."""
    gen = torch.Generator().manual_seed(seed)
    dim = math.prod(shape)
    means = 1.6 * torch.rand(modes, dim, generator=gen) - 0.8
    prior = PointMixturePrior(means, s)
    stage = StageSpec(steps=steps, method=method, guidance_scale=1.0, t_min=0.02, t_max=0.98,
                      t_max_annealed=0.5, anneal_step=steps // 2, lr_phi=1e-3)
    if init_spread is None:  # spread over the square: the experiment measures the spread, not basin escape
        x = nn.Parameter(2.0 * torch.rand(particles, dim, generator=gen) - 1.0)
    else:
        start = means[torch.arange(particles) % modes] + init_spread * s * torch.randn(particles, dim, generator=gen)
        x = nn.Parameter(start)
    opt = torch.optim.SGD([x], lr=lr) if optimizer == "sgd" else torch.optim.Adam([x], lr=lr)
    trainer = build_phi(prior, stage, gen, torch.device("cpu"))  # the stages' own ε_φ builder
    phi = trainer.phi if trainer is not None else None
    for _ in range(phi_warmup if trainer is not None else 0):
        trainer.train([(x.detach(), None)], gen)  # type: ignore[list-item]
    for step in range(steps):
        opt.zero_grad()
        res = distillation_loss(prior, phi, x, None, stage, step, gen)  # type: ignore[arg-type]
        res.loss.backward()
        opt.step()
        if trainer is not None:
            for _ in range(phi_repeats):
                trainer.train([(x.detach(), None)], gen)  # type: ignore[list-item]
    with torch.no_grad():
        d = torch.cdist(x, means)
        nearest, which = d.min(dim=1)
        # E‖s·z‖ for z ~ N(0, I_d) = s·√2·Γ((d+1)/2)/Γ(d/2)
        expected = s * math.sqrt(2.0) * math.exp(math.lgamma((dim + 1) / 2) - math.lgamma(dim / 2))
        counts = torch.bincount(which, minlength=means.shape[0]).tolist()
    return SpreadResult(method, float(nearest.mean() / expected), counts)
