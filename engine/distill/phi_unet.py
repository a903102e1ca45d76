"""ε_φ for pixel-space priors: a small camera-conditioned UNet trained from scratch (DESIGN.md §3 step 6).

The camera embedding (flattened 4×4 camera-to-world → MLP) is added to the time embedding and its
last layer starts at zero, so the camera only matters once training says it should.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ..diffusion import NoiseSchedule
from ..priors.base import Conditioning, VariationalScore
from ..spec import StageSpec


def timestep_embedding(t: torch.Tensor, dim: int, num_steps: int) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = (t.float() / num_steps * 1000.0)[:, None] * freqs[None]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=-1)


class _ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, emb: int):
        super().__init__()
        self.n1 = nn.GroupNorm(8, c_in)
        self.c1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.e = nn.Linear(emb, 2 * c_out)
        self.n2 = nn.GroupNorm(8, c_out)
        self.c2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.c1(F.silu(self.n1(x)))
        scale, shift = self.e(F.silu(emb))[:, :, None, None].chunk(2, dim=1)
        h = self.n2(h) * (1 + scale) + shift
        h = self.c2(F.silu(h))
        return h + self.skip(x)


class CameraUNet(nn.Module):
    """A 3-level UNet: widths (w, 2w, 2w); time + camera embedding modulate every block."""

    def __init__(self, channels: int = 3, width: int = 32, emb: int = 128, num_steps: int = 1000):
        super().__init__()
        self.num_steps = num_steps
        self.t_mlp = nn.Sequential(nn.Linear(emb, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.cam_mlp = nn.Sequential(nn.Linear(16, emb), nn.SiLU(), nn.Linear(emb, emb))
        nn.init.zeros_(self.cam_mlp[-1].weight)
        nn.init.zeros_(self.cam_mlp[-1].bias)
        w1, w2 = width, 2 * width
        self.inp = nn.Conv2d(channels, w1, 3, padding=1)
        self.d1 = _ResBlock(w1, w1, emb)
        self.d2 = _ResBlock(w1, w2, emb)
        self.d3 = _ResBlock(w2, w2, emb)
        self.mid = _ResBlock(w2, w2, emb)
        self.u3 = _ResBlock(2 * w2, w2, emb)
        self.u2 = _ResBlock(2 * w2, w1, emb)
        self.u1 = _ResBlock(2 * w1, w1, emb)
        self.out = nn.Sequential(nn.GroupNorm(8, w1), nn.SiLU(), nn.Conv2d(w1, channels, 3, padding=1))
        self.emb_dim = emb

    def forward(self, x: torch.Tensor, t: torch.Tensor, camera: torch.Tensor) -> torch.Tensor:
        e = self.t_mlp(timestep_embedding(t, self.emb_dim, self.num_steps)) + self.cam_mlp(camera)
        h0 = self.inp(x)
        h1 = self.d1(h0, e)
        h2 = self.d2(F.avg_pool2d(h1, 2), e)
        h3 = self.d3(F.avg_pool2d(h2, 2), e)
        m = self.mid(h3, e)
        u = self.u3(torch.cat([m, h3], 1), e)
        u = self.u2(torch.cat([F.interpolate(u, scale_factor=2.0, mode="nearest"), h2], 1), e)
        u = self.u1(torch.cat([F.interpolate(u, scale_factor=2.0, mode="nearest"), h1], 1), e)
        return self.out(u)


class PixelEpsPhi(VariationalScore):
    """Variational score for pixel priors; ε-prediction, trained by denoising on detached renders."""

    prediction_type = "epsilon"

    def __init__(self, channels: int, stage: StageSpec, schedule: NoiseSchedule, gen: torch.Generator,
                 width: int = 32):
        super().__init__()
        self.schedule = schedule
        self.camera_dropout = stage.phi_camera_dropout
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
            self.net = CameraUNet(channels, width, num_steps=schedule.num_steps)

    @staticmethod
    def camera_vector(cond: Conditioning, batch: int, device: torch.device) -> torch.Tensor:
        return cond.cameras.c2w.reshape(-1, 16)[:batch].to(device=device, dtype=torch.float32)

    def predict_noise(self, x_t: torch.Tensor, t: torch.Tensor, cond: Conditioning,
                      use_camera: bool = True) -> torch.Tensor:
        cam = self.camera_vector(cond, x_t.shape[0], x_t.device)
        if not use_camera:
            cam = torch.zeros_like(cam)
        return self.net(x_t, t.to(x_t.device), cam)

    def training_loss(self, x0: torch.Tensor, cond: Conditioning, gen: torch.Generator) -> torch.Tensor:
        b = x0.shape[0]
        t = torch.randint(0, self.schedule.num_steps, (b,), generator=gen)
        eps = torch.randn(x0.shape, generator=gen).to(x0.device)
        cam = self.camera_vector(cond, b, x0.device)
        if float(torch.rand((), generator=gen)) < self.camera_dropout:
            cam = torch.zeros_like(cam)
        x_t = self.schedule.add_noise(x0, eps, t)
        pred = self.net(x_t, t.to(x0.device), cam)
        return F.mse_loss(pred.float(), self.schedule.target(x0, eps, t, self.prediction_type).float())
