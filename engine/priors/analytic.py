"""The analytic prior: an exact diffusion model of a known 3D world (DESIGN.md §5).

For cameras c, reference scene k renders to m_k(c) (composited over the same backdrop the
field's render used, mapped to [−1, 1]); p₀(x|c) = Σ_k π_k N(m_k(c), s²I) and ε* is exact
(`mixture.mixture_eps`). Classifier-free guidance contrasts the scenes named in the prior string
(conditional) with all built-in scenes at equal weights (unconditional). Because the true
answer is known, a run against this prior measures PSNR, Chamfer distance, marker orientation and
particle spread without any Stable Diffusion weights.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch

from ..cameras import Cameras
from ..diffusion import NoiseSchedule
from ..spec import FieldProblem, JobSpec, SpecError, StageSpec
from .base import Conditioning, Prior, VariationalScore
from .mixture import mixture_eps
from .scene_render import ReferenceScene, SceneRender
from .scenes import BUILTIN_SCENES, builtin_scene

DEFAULT_NOISE_STD = 0.02  # pixel noise s of every mixture component, in [−1, 1] units


def _bad_name(name: str, why: str) -> SpecError:
    allowed = (f"analytic:<scene>[,<scene>…][,s=<noise>] with scenes from {', '.join(BUILTIN_SCENES)}, "
               f"or analytic:mesh=<path to a GLB/OBJ/PLY>")
    return SpecError([FieldProblem("prior", f"analytic:{name}", f"{why}; use {allowed}")])


class AnalyticPrior(Prior):
    """Mixture of K reference scenes with weights π_k and pixel noise s; exact ε*, pixel space."""

    space = "pixel"

    def __init__(self, scenes: Sequence[ReferenceScene], weights: Sequence[float] | None = None,
                 noise_std: float = DEFAULT_NOISE_STD, uncond_scenes: Sequence[ReferenceScene] | None = None,
                 supersample: int | None = None, channel: Literal["rgb", "normal"] = "rgb",
                 device: torch.device | str = "cpu"):
        if not scenes:
            raise ValueError("the analytic prior needs at least one reference scene")
        weights = [1.0] * len(scenes) if weights is None else list(weights)
        if len(weights) != len(scenes) or any(not (w > 0 and math.isfinite(w)) for w in weights):
            raise ValueError(f"weights must be {len(scenes)} positive numbers, got {weights}")
        if not noise_std > 0:
            raise ValueError(f"noise_std must be > 0, got {noise_std}")
        self.scenes = list(scenes)
        self.log_weights = torch.tensor(weights, dtype=torch.float64).log() - math.log(sum(weights))
        self.noise_std = float(noise_std)
        self.supersample = supersample
        self.channel = channel
        self.device = torch.device(device)
        self.schedule = NoiseSchedule.scaled_linear()
        by_name = {s.name: s for s in self.scenes}
        if uncond_scenes is None:  # share instances with the conditional set: one render per scene
            uncond_scenes = [by_name.get(n) or builtin_scene(n) for n in BUILTIN_SCENES]
        self.uncond_scenes = list(uncond_scenes)
        self._memo: tuple[tuple, dict[str, SceneRender]] | None = None

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_spec(cls, spec: JobSpec, device: torch.device | str = "cpu") -> AnalyticPrior:
        """The prior table's factory (registry.py): the scenes after 'analytic:'."""
        return cls.from_name(spec.prior.split(":", 1)[1], device=device)

    @classmethod
    def from_name(cls, name: str, device: torch.device | str = "cpu", **kwargs) -> AnalyticPrior:
        """'marker' | 'marker-red,marker-green,marker-blue' | 'mesh=<path>' (whole rest is the path);
        a token 's=<float>' sets the pixel noise."""
        from .mesh_scene import MeshScene

        name = name.strip()
        if name.startswith("mesh="):
            tokens = [name]
        else:
            tokens = [t.strip() for t in name.split(",") if t.strip()]
        scenes: list[ReferenceScene] = []
        for tok in tokens:
            if tok.startswith("mesh="):
                path = tok[len("mesh="):].strip()
                if not path:
                    raise _bad_name(name, "mesh= needs a file path")
                scenes.append(MeshScene.load(path))
            elif tok.startswith("s="):
                try:
                    kwargs["noise_std"] = float(tok[2:])
                except ValueError:
                    raise _bad_name(name, f"noise {tok!r} is not a number") from None
                if not 0 < kwargs["noise_std"] <= 1:
                    raise _bad_name(name, f"noise {tok!r} must be in (0, 1]")
            elif tok in BUILTIN_SCENES:
                scenes.append(BUILTIN_SCENES[tok]())
            else:
                raise _bad_name(name, f"unknown scene {tok!r}")
        if not scenes:
            raise _bad_name(name, "no scene named")
        return cls(scenes, device=device, **kwargs)

    def for_normal_maps(self) -> AnalyticPrior:
        """The same world seen as normal maps, (n + 1)/2 over the backdrop (the geometry stage's input)."""
        return AnalyticPrior(self.scenes, self.log_weights.exp().tolist(), self.noise_std, self.uncond_scenes,
                             self.supersample, "normal", self.device)

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.scenes]

    def describe(self) -> str:
        return f"AnalyticPrior({'+'.join(self.names)}, s={self.noise_std:g}, {self.channel})"

    # ------------------------------------------------------------------ reference images
    def _renders(self, cameras: Cameras, scenes: Sequence[ReferenceScene]) -> dict[str, SceneRender]:
        """Renders of `scenes`, shared across the two mixtures and repeated calls with the same cameras."""
        key = (cameras.c2w.detach().cpu().numpy().tobytes(), cameras.fov_y.detach().cpu().numpy().tobytes(),
               cameras.width, cameras.height)
        if self._memo is None or self._memo[0] != key:
            self._memo = (key, {})
        cache = self._memo[1]
        for scene in scenes:
            if scene.name not in cache:
                r = scene.render(cameras, self.supersample)
                cache[scene.name] = SceneRender(*(x.to(self.device) for x in (r.rgb, r.alpha, r.depth, r.normal)))
        return {s.name: cache[s.name] for s in scenes}

    def _image(self, r: SceneRender, background: torch.Tensor | None) -> torch.Tensor:
        """(B, H, W, 3) in [0, 1]: colour or (n + 1)/2 normal map composited over the backdrop."""
        if self.channel == "rgb":
            return r.over(background)
        normal_rgb = SceneRender(r.normal * 0.5 + 0.5, r.alpha, r.depth, r.normal)
        return normal_rgb.over(background)

    def reference_render(self, cameras: Cameras, background: torch.Tensor | None = None, k: int = 0) -> torch.Tensor:
        """Scene k seen by `cameras`, over `background` (white if None): (B, H, W, 3) in [0, 1]."""
        scene = self.scenes[k]
        with torch.no_grad():
            return self._image(self._renders(cameras, [scene])[scene.name], background)

    def _means(self, cameras: Cameras, background: torch.Tensor | None, scenes: Sequence[ReferenceScene],
               like: torch.Tensor) -> torch.Tensor:
        renders = self._renders(cameras, scenes)
        imgs = [self._image(renders[s.name], background) for s in scenes]
        return (torch.stack(imgs) * 2.0 - 1.0).permute(0, 1, 4, 2, 3).to(like.dtype)  # (K, B, 3, H, W)

    # ------------------------------------------------------------------ Prior interface
    def encode(self, rgb: torch.Tensor) -> torch.Tensor:
        return rgb.permute(0, 3, 1, 2) * 2.0 - 1.0

    def predict_noise(self, x_t: torch.Tensor, t: torch.Tensor, cond: Conditioning,
                      guidance_scale: float) -> torch.Tensor:
        b, c, h, w = x_t.shape
        cams = cond.cameras
        if cams.batch != b or c != 3:
            raise ValueError(f"x_t must be (B, 3, H, W) with B = {cams.batch} cameras, got {tuple(x_t.shape)}")
        if (cams.width, cams.height) != (w, h):
            cams = cams.with_resolution(w, h)
        bg = cond.background
        if bg is not None and tuple(bg.shape) != (b, h, w, 3):
            raise ValueError(f"cond.background must be (B, H, W, 3) = {(b, h, w, 3)}, got {tuple(bg.shape)}")
        t = t.reshape(-1).expand(b) if t.numel() == 1 else t
        with torch.no_grad():
            x = x_t.detach()
            alpha, sigma = self.schedule.alpha_sigma(t, x)
            m_c = self._means(cams, bg, self.scenes, x)
            eps_c = mixture_eps(x, alpha, sigma, m_c, self.log_weights.to(x.device, x.dtype), self.noise_std)
            if guidance_scale == 1.0:
                return eps_c
            m_u = self._means(cams, bg, self.uncond_scenes, x)
            log_u = torch.full((len(self.uncond_scenes),), -math.log(len(self.uncond_scenes)),
                               dtype=x.dtype, device=x.device)
            eps_u = mixture_eps(x, alpha, sigma, m_u, log_u, self.noise_std)
            return eps_u + guidance_scale * (eps_c - eps_u)

    def make_variational_score(self, stage: StageSpec, gen: torch.Generator) -> VariationalScore:
        from ..distill.phi_unet import PixelEpsPhi
        return PixelEpsPhi(channels=3, stage=stage, schedule=self.schedule, gen=gen).to(self.device)
