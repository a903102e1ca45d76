"""Stage 2: geometry. The stage-1 density becomes a DMTet per particle (threshold, fitted box), and
SDS on rasterised normal maps refines it, with normal-consistency and Laplacian regularisers
(DESIGN.md §3; anchors-vsd.md §8: guidance 100, t ≤ 0.5, normals (n+1)/2 over the backdrop).

A prior scores RGB images; Stable Diffusion is simply shown the normal map as an image, as in the
references. A prior whose reference world has true normal maps (the analytic prior) offers
`for_normal_maps()`, a prior over normal-map images, and this stage uses it when present.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ..checkpoint import CheckpointStore
from ..context import JobContext
from ..field import Background
from ..mesh.dmtet import DMTet
from ..mesh.extract import FILL_RADIUS, dmtet_from_density, silhouette_threshold
from ..mesh.regularizers import laplacian_smoothing, normal_consistency
from ..mesh.render import render_mesh
from ..mesh.scene_surface import SURFACE_DEPTH, scene_viewpoints, visible_depth
from ..preview import to_uint8
from ..priors.base import Prior
from ..stage_loop import PreviewImages, Stage
from .mesh_common import MeshStage

DensityFn = Callable[[torch.Tensor], torch.Tensor]
DEFAULT_THRESHOLD = 25.0  # after softplus, blob-initialised field (anchors-vsd.md §8)


def normal_map_prior(prior: Prior) -> Prior:
    make = getattr(prior, "for_normal_maps", None)
    return make() if callable(make) else prior


def extraction_level(ctx: JobContext, density: DensityFn, particle: int, wanted: float = DEFAULT_THRESHOLD) -> float:
    """The iso-level for a particle's density (extract.silhouette_threshold), logged when it is not 25."""
    level, info = silhouette_threshold(density, ctx.spec.field.radius, wanted, device=ctx.device)
    if level != wanted:
        ctx.log(f"particle {particle}: extracting the surface at density {level:.3g} instead of {wanted:g} "
                f"(silhouettes disagree with the field's opacity on {100 * info['disagreement']:.1f}% of rays "
                f"instead of {100 * info['disagreement_at_wanted']:.1f}%)")
    return level


def extract_dmtet(ctx: JobContext, density: DensityFn, particle: int, threshold: float = DEFAULT_THRESHOLD) -> DMTet:
    """A particle's stage-1 density as a DMTet at the geometry stage's grid resolution. A scene's
    surface is where its viewpoints' transmittance falls to one half (mesh/scene_surface.py), and the
    room they stand in stays empty (no pocket filling)."""
    spec = ctx.spec
    if spec.field.kind == "scene":
        ctx.log(f"particle {particle}: extracting the surfaces the scene's viewpoints see (transmittance ½)")
        tau = visible_depth(density, spec.field.radius, scene_viewpoints(spec.camera.distance[1]),
                            rows=max(64, spec.geometry.grid_resolution), device=ctx.device)
        return dmtet_from_density(tau, spec.geometry.grid_resolution, SURFACE_DEPTH, spec.field.radius,
                                  fill_radius=None, closed=False, device=ctx.device)
    level = extraction_level(ctx, density, particle, threshold)
    return dmtet_from_density(density, spec.geometry.grid_resolution, level, spec.field.radius,
                              fill_radius=FILL_RADIUS, device=ctx.device)


class GeometryStage(MeshStage):
    name = "geometry"

    def __init__(self, ctx: JobContext, densities: list[DensityFn], backgrounds: list[Background | None] | None = None,
                 threshold: float = DEFAULT_THRESHOLD, prior: Prior | None = None):
        super().__init__(ctx, ctx.spec.geometry, prior)
        self.backgrounds = backgrounds or [None] * len(densities)
        saved = CheckpointStore(ctx.run.ckpt).latest(self.name)
        if saved is not None:  # resuming: the checkpoint holds the fitted boxes; skip the extraction
            nets = [DMTet.from_state_dict(s, self.device) for s in saved.state["dmtets"]]
        else:
            nets = [extract_dmtet(ctx, density, i, threshold) for i, density in enumerate(densities)]
        self.dmtets = torch.nn.ModuleList(nets)
        self.frame_subject(self.meshes())
        # threestudio's geometry-stage optimiser (Adam, betas (0.9, 0.99), eps 1e-15): the small eps keeps
        # steps on SDF values and offsets whose gradients are tiny from being damped away
        self.opt = torch.optim.Adam([g for n in nets for g in n.param_groups(self.cfg.lr_geometry)],
                                    betas=(0.9, 0.99), eps=1e-15)
        self.normal_prior = normal_map_prior(self.prior)
        self._setup_phi()

    @classmethod
    def for_job(cls, ctx: JobContext, earlier: dict[str, Stage]) -> GeometryStage:
        """The pipeline's constructor (engine/stage_table.py): from stage 1's particles."""
        return cls.from_nerf(ctx, earlier["nerf"])

    @classmethod
    def from_nerf(cls, ctx: JobContext, nerf: Any) -> GeometryStage:
        """From a NerfStage: each particle's density and background network."""
        return cls(ctx, [p.density for p in nerf.particles], [p.background for p in nerf.particles])

    def results(self) -> dict[str, Any]:
        return {self.name: {"faces": [int(f.shape[0]) for _, f in self.meshes()],
                            "grid_resolution": self.cfg.grid_resolution}}

    def step(self, step: int) -> dict[str, float]:
        cfg, tm = self.cfg, self.timer
        tm.steps += 1
        self.opt.zero_grad(set_to_none=True)
        totals = {"distill": 0.0, "normal_consistency": 0.0, "laplacian": 0.0, "faces": 0.0}
        renders = []
        for net, bg in zip(self.dmtets, self.backgrounds, strict=True):
            with tm.phase("extract"):
                v, f = net.extract()
            totals["faces"] += f.shape[0] / len(self.dmtets)
            if f.shape[0] == 0:
                continue  # an empty surface has nothing to render; the log shows faces = 0
            with tm.phase("render"):
                cams, backdrop = self.sample_views(step, bg)
                out = render_mesh(self.raster, v, f, cams, "normal", backdrop)
                cond = self.condition(cams, backdrop)
            with tm.phase("prior"):
                res, x0 = self.distill(out.image, cond, step, self.normal_prior)
            with tm.phase("backward"):
                nc, lap = normal_consistency(v, f), laplacian_smoothing(v, f)
                loss = res.loss + cfg.lambda_normal_consistency * nc + cfg.lambda_laplacian * lap
                loss.backward()
            totals["distill"] += float(res.loss.detach()) / len(self.dmtets)
            totals["normal_consistency"] += float(nc.detach()) / len(self.dmtets)
            totals["laplacian"] += float(lap.detach()) / len(self.dmtets)
            renders.append((x0.detach(), cond))
        with tm.phase("optimiser"):
            self.opt.step()
        with tm.phase("phi_train"):
            totals.update(self.train_phi(renders))
        return totals

    def meshes(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Current surfaces (vertices, faces), detached."""
        out = []
        with torch.no_grad():
            for net in self.dmtets:
                v, f = net.extract()
                out.append((v.detach(), f))
        return out

    def preview(self, step: int) -> PreviewImages:
        cams = self.sampler.held_out_orbit(self.resolution(max(step - 1, 0)), views=1).to(self.device)
        tiles = []
        for v, f in self.meshes():
            if f.shape[0] == 0:
                tiles.append(np.full((cams.height, cams.width, 3), 255, np.uint8))
                continue
            white = torch.ones(1, cams.height, cams.width, 3, device=self.device)
            tiles.append(to_uint8(render_mesh(self.raster, v, f, cams, "normal", white).image[0]))
        normal = np.concatenate(tiles, axis=1)
        return PreviewImages(normal, normal)

    def state_dict(self) -> dict[str, Any]:
        return {"dmtets": [n.state_dict() for n in self.dmtets], "opt": self.opt.state_dict(), **self.phi_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for net, s in zip(self.dmtets, state["dmtets"], strict=True):
            net.load_state_dict(s)
        self.opt.load_state_dict(state["opt"])
        self.load_phi_state(state)


def meshes_from_checkpoint(state: dict[str, Any], device: torch.device | str = "cpu") -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Surfaces of a geometry checkpoint without rebuilding the stage (used by `vsdream export`)."""
    out = []
    with torch.no_grad():
        for s in state["dmtets"]:
            v, f = DMTet.from_state_dict(s, device).extract()
            out.append((v.detach(), f))
    return out
