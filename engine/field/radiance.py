"""Radiance field θ of one particle: hash grid → density MLP (softplus + blob) and albedo MLP.

Renders are albedo only (DESIGN.md §3), so colour does not depend on the view direction. The blob
bias λ(1 − r/ρ) makes the initial field a soft ball (object: λ=10, ρ=0.5) or an empty room the
camera sits in (scene: λ=−10, ρ=2.5); without it SDS/VSD starts from noise and wastes steps.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..spec import FieldSpec, StageSpec
from .hashgrid import HashGridEncoding

BLOBS = {"object": (10.0, 0.5), "scene": (-10.0, 2.5)}  # (λ, ρ)


def init_linear(layer: nn.Linear, gen: torch.Generator | None) -> nn.Linear:
    """PyTorch's default Linear init, drawn from `gen` so a seed fixes the field exactly."""
    nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=gen)
    bound = 1.0 / math.sqrt(layer.in_features)
    nn.init.uniform_(layer.bias, -bound, bound, generator=gen)
    return layer


def empty_linear(a: int, b: int) -> nn.Linear:
    """An uninitialised Linear: built on the meta device (no global RNG draw), then given empty
    parameters (unlike `skip_init`'s `to_empty`, this also works under FakeTensorMode: bench memory)."""
    layer = nn.Linear(a, b, device="meta")
    layer.weight, layer.bias = nn.Parameter(torch.empty(b, a)), nn.Parameter(torch.empty(b))
    return layer


def mlp(sizes: list[int], gen: torch.Generator | None) -> nn.Sequential:
    """Linear/ReLU stack built without a global RNG draw and initialised from `gen`."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(init_linear(empty_linear(a, b), gen))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def backend_for(device: torch.device | str) -> str:
    """The hash-grid backend for a field that will live on `device`: tiny-cuda-nn only where it can
    run (a CPU job on a machine that has tiny-cuda-nn must still build the torch grid)."""
    return "auto" if torch.device(device).type == "cuda" else "torch"


class RadianceField(nn.Module):
    """Density σ(x) ≥ 0 and albedo a(x) ∈ [0, 1]^3 inside the sphere |x| ≤ spec.radius."""

    def __init__(self, spec: FieldSpec, gen: torch.Generator | None = None, backend: str = "auto"):
        super().__init__()
        if spec.blob not in BLOBS:
            raise ValueError(f"field.blob = {spec.blob!r}: use one of {sorted(BLOBS)}")
        self.spec = spec
        self.radius = float(spec.radius)
        self.blob_scale, self.blob_radius = BLOBS[spec.blob]
        self.encoding = HashGridEncoding(spec.levels, spec.features_per_level, spec.log2_table_size,
                                         spec.base_resolution, spec.growth, bound=self.radius, gen=gen,
                                         backend=backend)
        dim = self.encoding.output_dim
        self.density_net = mlp([dim, spec.hidden, 1], gen)
        self.albedo_net = mlp([dim, spec.hidden, 3], gen)

    def blob_bias(self, x: torch.Tensor) -> torch.Tensor:
        return self.blob_scale * (1.0 - x.norm(dim=-1) / self.blob_radius)

    def _sigma(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        sigma = F.softplus(self.density_net(h).squeeze(-1) + self.blob_bias(x))
        inside = x.norm(dim=-1) <= self.radius
        return torch.where(inside, sigma, torch.zeros_like(sigma))

    def density(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3) → (N,) density; zero outside the field's sphere."""
        return self._sigma(x, self.encoding(x))

    def albedo(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3) → (N, 3) colour in [0, 1]."""
        return torch.sigmoid(self.albedo_net(self.encoding(x)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(sigma (N,), albedo (N, 3)) sharing one encoding pass."""
        h = self.encoding(x)
        return self._sigma(x, h), torch.sigmoid(self.albedo_net(h))

    def density_and_normal(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Density and outward unit normal −∇σ/|∇σ| (detached; for previews and normal maps)."""
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            sigma = self.density(xg)
            (grad,) = torch.autograd.grad(sigma.sum(), xg)
        normal = -grad / grad.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return sigma.detach(), normal

    def param_groups(self, stage: StageSpec) -> list[dict]:
        """Adam groups: hash table at stage.lr_grid, MLPs at stage.lr_mlp (DESIGN.md §3 step 7)."""
        return [
            {"name": "grid", "params": list(self.encoding.parameters()), "lr": stage.lr_grid},
            {"name": "mlp", "params": list(self.density_net.parameters()) + list(self.albedo_net.parameters()),
             "lr": stage.lr_mlp},
        ]
