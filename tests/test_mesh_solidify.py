"""Interior filling before meshing: pockets behind the shell are filled, open creases are not."""
from __future__ import annotations

import math

import torch

from engine.mesh.extract import dmtet_from_density
from engine.mesh.solidify import closing_radius_cells, dilate, interior_mask, reachable_from_border

N = 41


def _coords() -> torch.Tensor:
    idx = torch.arange(N, dtype=torch.float32)
    return torch.stack(torch.meshgrid(idx, idx, idx, indexing="ij"), -1)  # (N, N, N, 3) in cells


def _shell_with_pinhole() -> tuple[torch.Tensor, torch.Tensor]:
    """A ball of radius 15 cells hollowed to radius 11, with a one-cell tunnel out along −y."""
    c = _coords() - (N - 1) / 2
    dist = c.norm(dim=-1)
    occupied = dist <= 15
    hollow = dist < 11
    occupied &= ~hollow
    tunnel = (c[..., 0] == 0) & (c[..., 2] == 0) & (c[..., 1] < 0)
    occupied &= ~tunnel
    return occupied, hollow


def test_pocket_behind_a_pinhole_is_filled_but_not_by_plain_flood_fill():
    occupied, hollow = _shell_with_pinhole()
    plain = interior_mask(occupied, 0)
    assert not bool(plain[hollow].any()), "the tunnel connects the hollow to the border"
    closed = interior_mask(occupied, 1)
    assert bool(closed[hollow].all())
    assert not bool(closed[~dilate(occupied, 1) & ~hollow].any()), "nothing outside the shell is filled"


def test_enclosed_cavity_is_filled_with_radius_zero():
    occupied, hollow = _shell_with_pinhole()
    c = _coords() - (N - 1) / 2
    tunnel = (c[..., 0] == 0) & (c[..., 2] == 0) & (c[..., 1] < 0)
    sealed = occupied | (tunnel & (c.norm(dim=-1) >= 11) & (c.norm(dim=-1) <= 15))
    assert bool(interior_mask(sealed, 0)[hollow].all())


def test_open_crease_narrower_than_the_closing_stays_empty():
    """A block with a 2-cell-wide, 2-cell-deep slot open towards +x: a crease, not a pocket.
    (Deeper than 2r cells a crease narrower than 2r is filled: the trade documented in solidify.)"""
    c = _coords()
    occupied = (c[..., 0] >= 8) & (c[..., 0] <= 32) & (c[..., 1] >= 8) & (c[..., 1] <= 32) & (c[..., 2] >= 8) & (c[..., 2] <= 32)
    slot = (c[..., 0] >= 31) & (c[..., 0] <= 32) & (c[..., 2] >= 19) & (c[..., 2] <= 20) & (c[..., 1] >= 8) & (c[..., 1] <= 32)
    occupied &= ~slot
    assert not bool(reachable_from_border(~dilate(occupied, 2))[slot].any()), "the closing alone would fill it"
    assert not bool(interior_mask(occupied, 2)[slot].any())


def test_closing_radius_in_cells():
    assert closing_radius_cells(0.0, 0.02) == 0
    assert closing_radius_cells(0.03, 0.02) == 2
    assert closing_radius_cells(0.03, 0.01) == 3
    assert closing_radius_cells(0.001, 0.02) == 1


def test_extraction_of_a_spongy_ball_keeps_only_its_outside():
    """A ball whose inside is riddled with pockets below the level, reaching the surface through a
    pinhole: with filling, the extracted surface is the sphere alone (its area, no inner walls)."""
    gen = torch.Generator().manual_seed(0)
    centres = torch.nn.functional.normalize(torch.randn(60, 3, generator=gen), dim=-1) * 0.3 * torch.rand(60, 1, generator=gen)

    def density(x: torch.Tensor) -> torch.Tensor:
        r = x.norm(dim=-1)
        solid = 40.0 * torch.sigmoid((0.5 - r) / 0.01)
        pockets = torch.cdist(x, centres).min(dim=1).values < 0.09
        holes = (x[:, 0].abs() < 0.02) & (x[:, 2].abs() < 0.02) & (x[:, 1] < 0)  # a pinhole to −y
        return torch.where(pockets | (holes & (r < 0.5)), torch.zeros_like(solid), solid)

    def area(v: torch.Tensor, f: torch.Tensor) -> float:
        a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
        return float(0.5 * torch.linalg.cross(b - a, c - a).norm(dim=-1).sum())

    sphere = 4 * math.pi * 0.5 ** 2
    with torch.no_grad():
        v0, f0 = dmtet_from_density(density, 48, 20.0, fill_radius=0.0).extract()
        v1, f1 = dmtet_from_density(density, 48, 20.0).extract()
    assert area(v0, f0) > 1.3 * sphere, "without filling the pockets' walls are meshed too"
    assert abs(area(v1, f1) / sphere - 1.0) < 0.06
    off = (v1.norm(dim=-1) - 0.5).abs()
    assert float(off.mean()) < 0.005
    assert float((off > 0.03).float().mean()) < 0.01, "at most a dimple where the pinhole opens"
