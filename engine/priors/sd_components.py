"""One Stable Diffusion model's parts as the SD prior uses them, loaded from a diffusers folder.

The text encoder is not loaded here: it is needed once per prompt, so `load_text_encoder` builds
it on demand and the text-embedding cache frees it again (engine/priors/text_embeddings.py).
Each part reads its fp16 variant file when that is the one present, or the preferred one for a
half-precision load (weight_files.load_variant); the loaders cast to the requested dtype.
"""
from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel

from ..diffusion import NoiseSchedule
from .weight_files import load_variant

TextEncoderLoader = Callable[[], tuple[Any, torch.nn.Module]]  # () -> (tokenizer, CLIPTextModel)


@dataclass
class SDComponents:
    name: str  # hub id, folder path or builder name (for messages)
    text_key: str  # identity of the text encoder: the text-embedding cache is keyed by it
    unet: UNet2DConditionModel
    vae: AutoencoderKL | None
    schedule: NoiseSchedule
    prediction_type: str  # 'epsilon' | 'v_prediction'
    load_text_encoder: TextEncoderLoader


def cast(module: torch.nn.Module, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """Move and cast a frozen module (nn.Module's own casts: diffusers' `.to(dtype)` warns needlessly)."""
    module = module.to(device)
    module = {torch.float16: module.half, torch.bfloat16: module.bfloat16}.get(dtype, module.float)()
    return module.requires_grad_(False).eval()


def schedule_from_config(config: dict[str, Any]) -> tuple[NoiseSchedule, str]:
    """ᾱ_t and the prediction type from any diffusers scheduler config (DDIM, PNDM, DDPM, …)."""
    accepted = set(inspect.signature(DDPMScheduler.__init__).parameters)
    sched = DDPMScheduler.from_config({k: v for k, v in config.items() if k in accepted})
    prediction = sched.config.prediction_type
    if prediction not in ("epsilon", "v_prediction"):
        raise ValueError(f"unsupported prediction_type {prediction!r} in the scheduler config "
                         "(the SD prior handles 'epsilon' and 'v_prediction' models)")
    return NoiseSchedule(sched.alphas_cumprod.detach().float().clone()), prediction


def load_folder(folder: Path, name: str, text_key: str, device: torch.device, dtype: torch.dtype,
                with_vae: bool) -> SDComponents:
    """UNet (+ VAE) and schedule from a diffusers-format folder; the text encoder on demand."""
    folder = Path(folder)
    half = dtype in (torch.float16, torch.bfloat16)
    unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet", torch_dtype=dtype,
                                                variant=load_variant(folder, "unet", half))
    vae = AutoencoderKL.from_pretrained(folder, subfolder="vae", torch_dtype=dtype,
                                        variant=load_variant(folder, "vae", half)) if with_vae else None
    config = json.loads((folder / "scheduler" / "scheduler_config.json").read_text(encoding="utf-8"))
    schedule, prediction = schedule_from_config(config)

    def load_text_encoder() -> tuple[Any, torch.nn.Module]:
        from transformers import CLIPTextModel, CLIPTokenizer
        tokenizer = CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer")
        encoder = CLIPTextModel.from_pretrained(folder, subfolder="text_encoder", torch_dtype=dtype,
                                                variant=load_variant(folder, "text_encoder", half))
        return tokenizer, cast(encoder, device, dtype)

    return SDComponents(name, text_key, cast(unet, device, dtype), cast(vae, device, dtype) if vae is not None else None,
                        schedule, prediction, load_text_encoder)
