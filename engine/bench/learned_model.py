"""mini-SD checked as a 2D model (`vsdream bench learned --only model`): does it draw what it was taught?

DDIM samples at CFG 7.5 for every training caption and view suffix, through the engine's own
loader (the `mini-sd` prior row). Each sample is matched to its nearest render (pixel MSE) in a bank
of renders of every built-in object scene from the training camera distribution: the sample is right
when that render's scene carries the caption. The front marker (the magenta disc, DESIGN.md §5's
asymmetric reference) must show in "front view" samples and not in "back view" ones; the same
detector on the bank's own renders gives the rate a perfect model would reach.
"""
from __future__ import annotations

from collections import Counter
from typing import Any

import torch

from ..cameras import CameraSampler
from ..spec import CameraSpec

# the training captions (tools/train_mini_sd.py writes them into the model card too)
CAPTIONS = {
    "marker": "an orange toy robot",
    "marker-red": "a toy robot",
    "marker-green": "a toy robot",
    "marker-blue": "a toy robot",
    "snowman": "a snowman",
    "table": "a wooden table with fruit",
}
VIEWS = ("front", "side", "back", "overhead")
MARKED = ("marker", "marker-red", "marker-green", "marker-blue")  # scenes with the front disc


def load_mini_sd(device: str = "cpu", folder: str | None = None):
    """The `mini-sd` row (or `sd:<folder>`) through the real loader: the code SD weights load with."""
    from ..presets import make_spec
    from ..priors.registry import load_prior
    prior = f"sd:{folder}" if folder else "mini-sd"
    # sampling never uses ε_φ: 'shared' skips loading its base
    spec = make_spec("fast", {"prior": prior, "prompt": CAPTIONS["marker"], "device": device, "phi_model": "shared"})
    return load_prior(spec, torch.device(device))


@torch.no_grad()
def ddim_sample(prior, prompts: list[str], gen: torch.Generator, steps: int = 30,
                guidance: float = 7.5) -> torch.Tensor:
    """(N, H, W, 3) in [0, 1]: DDIM (η = 0) with classifier-free guidance, '' as the unconditional prompt."""
    from diffusers import DDIMScheduler
    sched = DDIMScheduler(num_train_timesteps=prior.schedule.num_steps, beta_schedule="scaled_linear",
                          beta_start=0.00085, beta_end=0.012, clip_sample=False, set_alpha_to_one=False,
                          steps_offset=1, prediction_type=prior.prediction_type)
    sched.set_timesteps(steps)
    n, side = len(prompts), int(prior.unet.config.sample_size)
    cond = prior.text(prompts)
    uncond = prior.text([""]).expand(n, -1, -1)
    x = torch.randn(n, prior.unet.config.in_channels, side, side, generator=gen).to(prior.device, prior.dtype)
    for t in sched.timesteps:
        tt = t.expand(2 * n).to(prior.device)
        out = prior.unet(torch.cat([x, x]), tt, encoder_hidden_states=torch.cat([uncond, cond])).sample
        out_u, out_c = out.chunk(2)
        x = sched.step(out_u + guidance * (out_c - out_u), t, x).prev_sample
    img = prior.vae.decode(x / prior.vae.config.scaling_factor).sample.float()
    return (img.permute(0, 2, 3, 1) * 0.5 + 0.5).clamp(0, 1).cpu()


def render_bank(per_scene: int, seed: int = 7) -> tuple[torch.Tensor, list[str], list[str]]:
    """Renders over white of every captioned scene from the training camera distribution, with each
    render's scene and view suffix (CameraSampler's own wording)."""
    from ..priors.scenes import builtin_scene
    sampler = CameraSampler(CameraSpec())
    gen = torch.Generator().manual_seed(seed)
    images, scenes, views = [], [], []
    for name in CAPTIONS:
        cams = sampler.sample(per_scene, 64, gen)
        images.append(builtin_scene(name).render(cams, 2).over(None))
        scenes += [name] * per_scene
        views += [sampler.view_suffix(float(e), float(a)) for e, a in zip(cams.elevation, cams.azimuth, strict=True)]
    return torch.cat(images), scenes, views


def marker_visible(images: torch.Tensor, min_pixels: int = 12) -> torch.Tensor:
    """(N,) bool: at least `min_pixels` pixels close to the front disc's magenta (a colour no other
    part of any training scene comes near)."""
    from ..priors.scenes import MARKER_COLOR
    d = (images - torch.tensor(MARKER_COLOR)).abs().amax(dim=-1)
    return (d < 0.22).flatten(1).sum(1) >= min_pixels


def nearest(samples: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
    """Index of the nearest bank image (pixel MSE) per sample."""
    a, b = samples.flatten(1), bank.flatten(1)
    d = (a * a).sum(1, keepdim=True) - 2 * a @ b.T + (b * b).sum(1)[None]
    return d.argmin(dim=1)


def model_figures(per_prompt: int = 8, bank_per_scene: int = 256, steps: int = 30, seed: int = 0,
                  folder: str | None = None) -> dict[str, Any]:
    """The model's own check: caption → right scene, view suffix → right side."""
    prior = load_mini_sd(folder=folder)
    bank, bank_scene, bank_view = render_bank(bank_per_scene)
    gen = torch.Generator().manual_seed(seed)
    captions = list(dict.fromkeys(CAPTIONS.values()))
    right, total, variants = 0, 0, Counter()
    marker_rate: dict[str, list[int]] = {v: [0, 0] for v in VIEWS}
    per_caption: dict[str, float] = {}
    for caption in captions:
        ok = 0
        for view in VIEWS:
            imgs = ddim_sample(prior, [f"{caption}, {view} view"] * per_prompt, gen, steps)
            hit = [bank_scene[i] for i in nearest(imgs, bank).tolist()]
            good = [CAPTIONS[s] == caption for s in hit]
            ok += sum(good)
            if caption == CAPTIONS["marker-red"]:
                variants.update(hit)
            if any(CAPTIONS[s] == caption for s in MARKED):
                vis = marker_visible(imgs)
                marker_rate[view][0] += int(vis.sum())
                marker_rate[view][1] += len(vis)
        per_caption[caption] = round(ok / (per_prompt * len(VIEWS)), 3)
        right += ok
        total += per_prompt * len(VIEWS)
    # what a perfect model scores on the same detector: the bank's own marker renders per view
    bank_vis = marker_visible(bank)
    reference = {v: round(float(sum(bool(bank_vis[i]) for i in range(len(bank_scene))
                                    if bank_scene[i] in MARKED and bank_view[i] == v)
                                / max(1, sum(1 for i in range(len(bank_scene))
                                             if bank_scene[i] in MARKED and bank_view[i] == v))), 3)
                 for v in VIEWS}
    return {"samples": total, "ddim_steps": steps, "guidance": 7.5,
            "nearest_scene_right": round(right / total, 3), "per_caption": per_caption,
            "marker_visible": {v: round(k / max(n, 1), 3) for v, (k, n) in marker_rate.items()},
            "marker_visible_in_training_renders": reference,
            "shared_caption_variants": dict(variants),
            "targets": {"nearest_scene_right": 0.9, "marker_front_min": 0.8, "marker_back_max": 0.2}}
