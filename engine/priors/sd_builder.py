"""Random-weight Stable Diffusion models: no download, the exact diffusers/peft code path.

- `tiny-sd` / `tiny-sd-v`: small UNet, VAE (8× downsampling like SD's) and CLIP text model with
  a byte-level tokenizer written on the fly: tests run the whole SD prior in seconds on a CPU.
- `sd21-random` / `sd21-random-v`: Stable Diffusion 2.1-base (ε) and 2.1 (v) with their real
  configs, written out below, and random weights: true per-step cost on a GPU (bench step).
Weights are seeded per model name, so a name always means the same weights (text caches rely on it).
"""
from __future__ import annotations

import json
import tempfile
import zlib
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel

from .sd_components import SDComponents, cast, schedule_from_config

_SCHEDULER = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012,
              "beta_schedule": "scaled_linear", "clip_sample": False, "set_alpha_to_one": False,
              "steps_offset": 1}

_SD21_UNET: dict[str, Any] = {
    "act_fn": "silu", "attention_head_dim": [5, 10, 20, 20], "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False, "cross_attention_dim": 1024,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "downsample_padding": 1, "dual_cross_attention": False, "flip_sin_to_cos": True, "freq_shift": 0,
    "in_channels": 4, "layers_per_block": 2, "mid_block_scale_factor": 1, "norm_eps": 1e-05,
    "norm_num_groups": 32, "num_class_embeds": None, "only_cross_attention": False, "out_channels": 4,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "use_linear_projection": True,
}
_SD21_VAE: dict[str, Any] = {
    "act_fn": "silu", "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4,
    "in_channels": 3, "out_channels": 3, "latent_channels": 4, "layers_per_block": 2,
    "norm_num_groups": 32, "sample_size": 768, "scaling_factor": 0.18215,
}
_SD21_TEXT: dict[str, Any] = {  # OpenCLIP ViT-H/14 text tower as diffusers ships it (23 layers)
    "vocab_size": 49408, "hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 23,
    "num_attention_heads": 16, "max_position_embeddings": 77, "hidden_act": "gelu", "layer_norm_eps": 1e-05,
    "projection_dim": 512, "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1,
}

_TINY_UNET: dict[str, Any] = {
    "sample_size": 8, "in_channels": 4, "out_channels": 4, "layers_per_block": 1,
    "block_out_channels": [32, 64], "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"], "cross_attention_dim": 32,
    "attention_head_dim": [2, 4], "use_linear_projection": True, "norm_num_groups": 8,
}
_TINY_VAE: dict[str, Any] = {
    "block_out_channels": [8, 16, 16, 16], "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4, "latent_channels": 4, "layers_per_block": 1,
    "norm_num_groups": 8, "sample_size": 64, "scaling_factor": 0.18215,
}
_TINY_TEXT: dict[str, Any] = {
    "vocab_size": 514, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
    "num_attention_heads": 4, "max_position_embeddings": 77, "hidden_act": "gelu", "projection_dim": 32,
    "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 1,
}

# name -> (unet config, prediction type, text config); the -v twins are the ε_φ bases
RANDOM_MODELS: dict[str, tuple[dict[str, Any], str, dict[str, Any]]] = {
    "tiny-sd": (_TINY_UNET, "epsilon", _TINY_TEXT),
    "tiny-sd-v": (_TINY_UNET, "v_prediction", _TINY_TEXT),
    "sd21-random": ({**_SD21_UNET, "sample_size": 64, "upcast_attention": False}, "epsilon", _SD21_TEXT),
    "sd21-random-v": ({**_SD21_UNET, "sample_size": 96, "upcast_attention": True}, "v_prediction", _SD21_TEXT),
}


def _byte_symbols() -> list[str]:
    """The 256 printable stand-ins byte-level BPE uses for bytes (GPT-2/CLIP convention)."""
    printable = set(range(ord("!"), ord("~") + 1)) | set(range(0xA1, 0xAD)) | set(range(0xAE, 0x100))
    out, extra = [], 0
    for b in range(256):
        if b in printable:
            out.append(chr(b))
        else:
            out.append(chr(256 + extra))
            extra += 1
    return out


def tiny_tokenizer() -> Any:
    """A CLIP tokenizer over single bytes (no merges), written into a temp folder and loaded back."""
    from transformers import CLIPTokenizer
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for suffix in ("", "</w>"):
        for sym in _byte_symbols():
            vocab[sym + suffix] = len(vocab)
    with tempfile.TemporaryDirectory(prefix="vsdream-tok-") as tmp:
        (Path(tmp) / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
        (Path(tmp) / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
        return CLIPTokenizer.from_pretrained(tmp, model_max_length=77)


def _seeded(name: str, part: str, device: torch.device, make: Any) -> Any:
    """Build `make()` directly on `device` with weights fixed by (name, part)."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.device(device):
        torch.manual_seed(zlib.crc32(f"{name}/{part}".encode()))
        return make()


def build_random(name: str, device: torch.device, dtype: torch.dtype, with_vae: bool) -> SDComponents:
    """One of RANDOM_MODELS with seeded random weights; the VAE only when `with_vae`."""
    if name not in RANDOM_MODELS:
        raise ValueError(f"unknown random model {name!r}; one of {', '.join(RANDOM_MODELS)}")
    unet_cfg, prediction, text_cfg = RANDOM_MODELS[name]
    family = name.removesuffix("-v")  # the ε and v twins share VAE and text encoder, like SD-2.1 and 2.1-base
    vae_cfg = _TINY_VAE if family == "tiny-sd" else _SD21_VAE
    unet = _seeded(name, "unet", device, lambda: UNet2DConditionModel(**unet_cfg))
    vae = _seeded(family, "vae", device, lambda: AutoencoderKL(**vae_cfg)) if with_vae else None
    schedule, prediction = schedule_from_config({**_SCHEDULER, "prediction_type": prediction})

    def load_text_encoder() -> tuple[Any, torch.nn.Module]:
        from transformers import CLIPTextConfig, CLIPTextModel
        encoder = _seeded(family, "text", device, lambda: CLIPTextModel(CLIPTextConfig(**text_cfg)))
        return tiny_tokenizer(), cast(encoder, device, dtype)

    return SDComponents(name, family, cast(unet, device, dtype),
                        cast(vae, device, dtype) if vae is not None else None, schedule, prediction,
                        load_text_encoder)


def write_folder(name: str, folder: Path) -> Path:
    """Save a random build as a diffusers-format folder (what `--model PATH` reads)."""
    folder = Path(folder)
    model = build_random(name, torch.device("cpu"), torch.float32, with_vae=True)
    model.unet.save_pretrained(folder / "unet")
    model.vae.save_pretrained(folder / "vae")
    (folder / "scheduler").mkdir(parents=True, exist_ok=True)
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(
        {"_class_name": "DDIMScheduler", **_SCHEDULER, "prediction_type": model.prediction_type}), encoding="utf-8")
    tokenizer, encoder = model.load_text_encoder()
    tokenizer.save_pretrained(folder / "tokenizer")
    encoder.save_pretrained(folder / "text_encoder")
    return folder
