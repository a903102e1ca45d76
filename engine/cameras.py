"""Cameras in Blender's world frame (DESIGN.md §2).

Z up; an object's front faces −Y. Azimuth 0 puts the camera on −Y looking at the front, azimuth
grows counter-clockwise seen from above (90° = camera on +X); elevation 90° looks straight down.
Camera-to-world matrices use the OpenGL convention: the camera looks down its −Z with +Y up.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .spec import CameraSpec


@dataclass
class Cameras:
    """A batch of B pinhole cameras sharing one image size."""

    c2w: torch.Tensor  # (B, 4, 4)
    fov_y: torch.Tensor  # (B,) radians
    elevation: torch.Tensor  # (B,) radians
    azimuth: torch.Tensor  # (B,) radians
    distance: torch.Tensor  # (B,)
    width: int
    height: int

    @property
    def batch(self) -> int:
        return self.c2w.shape[0]

    @property
    def device(self) -> torch.device:
        return self.c2w.device

    def focal(self) -> torch.Tensor:
        return 0.5 * self.height / torch.tan(0.5 * self.fov_y)

    def rays(self) -> tuple[torch.Tensor, torch.Tensor]:
        """World-space ray origins and unit directions, each (B, H, W, 3), top row first."""
        dev, dt = self.device, self.c2w.dtype
        j = torch.arange(self.width, device=dev, dtype=dt) + 0.5
        i = torch.arange(self.height, device=dev, dtype=dt) + 0.5
        ii, jj = torch.meshgrid(i, j, indexing="ij")
        f = self.focal().view(-1, 1, 1)
        x = (jj - self.width / 2) / f
        y = -(ii - self.height / 2) / f
        d_cam = torch.stack([x, y, -torch.ones_like(x)], dim=-1)  # (B, H, W, 3)
        rot = self.c2w[:, :3, :3]
        d_world = torch.einsum("bij,bhwj->bhwi", rot, d_cam)
        d_world = d_world / d_world.norm(dim=-1, keepdim=True)
        origins = self.c2w[:, :3, 3].view(-1, 1, 1, 3).expand_as(d_world)
        return origins, d_world

    def with_resolution(self, width: int, height: int) -> Cameras:
        return Cameras(self.c2w, self.fov_y, self.elevation, self.azimuth, self.distance, width, height)

    def to(self, device: torch.device | str) -> Cameras:
        return Cameras(self.c2w.to(device), self.fov_y.to(device), self.elevation.to(device),
                       self.azimuth.to(device), self.distance.to(device), self.width, self.height)

    def index(self, idx: int | slice) -> Cameras:
        sl = slice(idx, idx + 1) if isinstance(idx, int) else idx
        return Cameras(self.c2w[sl], self.fov_y[sl], self.elevation[sl], self.azimuth[sl],
                       self.distance[sl], self.width, self.height)


def camera_position(elevation: torch.Tensor, azimuth: torch.Tensor, distance: torch.Tensor) -> torch.Tensor:
    """World position (B, 3) of cameras orbiting the origin (radians)."""
    ce = torch.cos(elevation)
    return torch.stack([distance * ce * torch.sin(azimuth),
                        -distance * ce * torch.cos(azimuth),
                        distance * torch.sin(elevation)], dim=-1)


def look_at(eye: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
    """OpenGL camera-to-world (B, 4, 4) looking from `eye` at `target` (default origin), Z up."""
    target = torch.zeros_like(eye) if target is None else target
    forward = target - eye
    forward = forward / forward.norm(dim=-1, keepdim=True)
    world_up = torch.tensor([0.0, 0.0, 1.0], dtype=eye.dtype, device=eye.device).expand_as(forward)
    right = torch.linalg.cross(forward, world_up, dim=-1)
    # straight up/down views: fall back to +X as right
    degenerate = right.norm(dim=-1, keepdim=True) < 1e-6
    right = torch.where(degenerate, torch.tensor([1.0, 0.0, 0.0], dtype=eye.dtype, device=eye.device), right)
    right = right / right.norm(dim=-1, keepdim=True)
    up = torch.linalg.cross(right, forward, dim=-1)
    c2w = torch.zeros(eye.shape[0], 4, 4, dtype=eye.dtype, device=eye.device)
    c2w[:, :3, 0], c2w[:, :3, 1], c2w[:, :3, 2], c2w[:, :3, 3] = right, up, -forward, eye
    c2w[:, 3, 3] = 1.0
    return c2w


def make_cameras(elevation: torch.Tensor, azimuth: torch.Tensor, distance: torch.Tensor,
                 fov_y: torch.Tensor, width: int, height: int) -> Cameras:
    eye = camera_position(elevation, azimuth, distance)
    return Cameras(look_at(eye), fov_y, elevation, azimuth, distance, width, height)


def framing_cameras(elevation_deg: torch.Tensor, azimuth_deg: torch.Tensor, radius: float, resolution: int,
                    distance_factor: float = 2.5) -> Cameras:
    """Square cameras at distance_factor·radius whose view holds the whole sphere of `radius` with a
    10% margin (probes of a field or mesh from all round, not training views)."""
    n = elevation_deg.shape[0]
    return make_cameras(torch.deg2rad(elevation_deg), torch.deg2rad(azimuth_deg),
                        torch.full((n,), distance_factor * radius),
                        torch.full((n,), 2.2 * math.asin(1 / distance_factor)), resolution, resolution)


def concat_cameras(parts: list[Cameras]) -> Cameras:
    """One batch from several of the same image size."""
    return Cameras(*(torch.cat([getattr(c, k) for c in parts]) for k in ("c2w", "fov_y", "elevation", "azimuth",
                                                                        "distance")),
                   parts[0].width, parts[0].height)


def inside_views(distance: float, resolution: int) -> Cameras:
    """Cameras that together see every surface of a scene around them: the six cube-face views
    (fov 100°) from the centre and from four points `distance` away along ±X and ±Y."""
    axes = torch.tensor([[1.0, 0, 0], [-1.0, 0, 0], [0, 1.0, 0], [0, -1.0, 0], [0, 0, 1.0], [0, 0, -1.0]])
    eyes = torch.tensor([[0.0, 0, 0], [distance, 0, 0], [-distance, 0, 0], [0, distance, 0], [0, -distance, 0]])
    eye = eyes.repeat_interleave(len(axes), dim=0)
    target = eye + axes.repeat(len(eyes), 1)
    n = eye.shape[0]
    zeros = torch.zeros(n)
    return Cameras(look_at(eye, target), torch.full((n,), math.radians(100.0)), zeros, zeros, eye.norm(dim=-1),
                   resolution, resolution)


class CameraSampler:
    """Random training cameras per DESIGN.md §3, deterministic for a given torch.Generator."""

    def __init__(self, spec: CameraSpec):
        self.spec = spec

    def sample(self, batch: int, resolution: int, gen: torch.Generator) -> Cameras:
        s = self.spec
        u = torch.rand(batch, 5, generator=gen, dtype=torch.float64)
        # elevation: half uniform in angle, half uniform on the sphere (uniform in sin)
        lo, hi = math.radians(s.elevation_deg[0]), math.radians(s.elevation_deg[1])
        in_angle = lo + (hi - lo) * u[:, 0]
        on_sphere = torch.asin(math.sin(lo) + (math.sin(hi) - math.sin(lo)) * u[:, 0])
        elevation = torch.where(u[:, 1] < 0.5, in_angle, on_sphere)
        # azimuth: stratified across the batch so one batch covers the range
        alo, ahi = math.radians(s.azimuth_deg[0]), math.radians(s.azimuth_deg[1])
        strata = (torch.arange(batch, dtype=torch.float64) + u[:, 2]) / batch
        azimuth = alo + (ahi - alo) * strata
        distance = s.distance[0] + (s.distance[1] - s.distance[0]) * u[:, 3]
        fov = torch.deg2rad(s.fov_deg[0] + (s.fov_deg[1] - s.fov_deg[0]) * u[:, 4])
        return make_cameras(elevation.float(), azimuth.float(), distance.float(), fov.float(),
                            resolution, resolution)

    def held_out_orbit(self, resolution: int, views: int | None = None) -> Cameras:
        """Fixed evaluation/preview orbit: evenly spaced azimuths starting at the front."""
        s = self.spec
        n = views or s.eval_views
        azimuth = torch.arange(n, dtype=torch.float32) * (2 * math.pi / n)
        elevation = torch.full((n,), math.radians(s.eval_elevation_deg))
        distance = torch.full((n,), float(s.eval_distance))
        fov = torch.full((n,), math.radians(s.eval_fov_deg))
        return make_cameras(elevation, azimuth, distance, fov, resolution, resolution)

    def centre_pan(self, resolution: int, views: int) -> Cameras:
        """A level 360° pan from the centre looking out (a scene's evaluation path), starting towards
        the front (−Y), at the evaluation field of view."""
        azimuth = torch.arange(views, dtype=torch.float32) * (2 * math.pi / views)
        look = torch.stack([torch.sin(azimuth), -torch.cos(azimuth), torch.zeros(views)], dim=-1)
        eye = torch.zeros(views, 3)
        zeros = torch.zeros(views)
        fov = torch.full((views,), math.radians(self.spec.eval_fov_deg))
        return Cameras(look_at(eye, look), fov, zeros, azimuth, zeros, resolution, resolution)

    def held_out_views(self, resolution: int, views: int | None = None) -> tuple[Cameras, int]:
        """Evaluation cameras: the held-out orbit, then the centre pan when the spec asks for one
        (scenes). Returns the cameras and how many of them are orbit views."""
        orbit = self.held_out_orbit(resolution, views)
        pan = self.spec.eval_centre_pan
        if not pan:
            return orbit, orbit.batch
        return concat_cameras([orbit, self.centre_pan(resolution, pan)]), orbit.batch

    def view_suffix(self, elevation_rad: float, azimuth_rad: float) -> str:
        """'front' / 'side' / 'back' / 'overhead' for the view-dependent prompt."""
        s = self.spec
        az = (math.degrees(azimuth_rad) + 180.0) % 360.0 - 180.0
        if math.degrees(elevation_rad) > s.overhead_threshold_deg:
            return "overhead"
        if abs(az) < s.front_threshold_deg:
            return "front"
        if abs(az) > 180.0 - s.back_threshold_deg:
            return "back"
        return "side"

    def view_prompts(self, prompt: str, cams: Cameras) -> list[str]:
        if not self.spec.view_dependent_prompts:
            return [prompt] * cams.batch
        return [f"{prompt}, {self.view_suffix(float(e), float(a))} view"
                for e, a in zip(cams.elevation.tolist(), cams.azimuth.tolist(), strict=True)]
