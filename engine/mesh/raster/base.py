"""Rasteriser interface, shaped like nvdiffrast's so the CUDA path is a thin wrapper.

`rasterize` returns rast (B, H, W, 4) = (u, v, z/w, triangle_id + 1), 0 id = empty, with rows
bottom-up (row 0 is clip y = −1) exactly as nvdiffrast lays them out; `engine.mesh.render`
flips to the engine's top-row-first images. (u, v) are perspective-correct barycentric weights
of the triangle's vertices 0 and 1 and carry the gradient to vertex positions.
"""
from __future__ import annotations

import abc

import torch


class Rasterizer(abc.ABC):
    name: str = "base"

    @abc.abstractmethod
    def rasterize(self, pos: torch.Tensor, tri: torch.Tensor, resolution: tuple[int, int]) -> torch.Tensor:
        """pos (B, V, 4) clip-space positions, tri (F, 3) → rast (B, H, W, 4)."""

    def interpolate(self, attr: torch.Tensor, rast: torch.Tensor, tri: torch.Tensor) -> torch.Tensor:
        """Per-vertex attributes attr (V, C) or (B, V, C) → per-pixel (B, H, W, C); 0 where empty."""
        b, h, w, _ = rast.shape
        if attr.dim() == 2:
            attr = attr.unsqueeze(0).expand(b, -1, -1)
        tid = rast[..., 3].long()
        covered = tid > 0
        face = tri.long()[(tid - 1).clamp(min=0)]  # (B, H, W, 3)
        batch = torch.arange(b, device=attr.device).view(b, 1, 1, 1)
        corners = attr[batch, face]  # (B, H, W, 3, C)
        u, v = rast[..., 0:1], rast[..., 1:2]
        out = u * corners[..., 0, :] + v * corners[..., 1, :] + (1 - u - v) * corners[..., 2, :]
        return out * covered.unsqueeze(-1)

    @abc.abstractmethod
    def antialias(self, color: torch.Tensor, rast: torch.Tensor, pos: torch.Tensor,
                  tri: torch.Tensor) -> torch.Tensor:
        """Blend colours across silhouette edges so coverage becomes differentiable in `pos`."""
