"""Where Stable Diffusion weights come from: a local folder, the Hugging Face cache, or the hub.

Offline and not cached is one clear `WeightsMissing` naming the model, the cache folder looked in
and the command that fetches it. There is never a silent fallback to another model or prior.
Environment variables are read at call time (HF_HOME, HF_HUB_CACHE, HF_HUB_OFFLINE), so a
process can point at another cache without re-importing huggingface_hub.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import WeightsMissing

DEFAULT_MODEL = "stabilityai/stable-diffusion-2-1-base"  # ε-prediction: the pretrained score
DEFAULT_PHI_MODEL = "stabilityai/stable-diffusion-2-1"  # v-prediction: the ε_φ base
# what the SD prior reads from a diffusers repo (skips .ckpt files and duplicate variants)
FETCH_PATTERNS = [
    "model_index.json", "scheduler/*.json", "tokenizer/*", "text_encoder/config.json",
    "text_encoder/model.safetensors", "unet/config.json", "unet/diffusion_pytorch_model.safetensors",
    "vae/config.json", "vae/diffusion_pytorch_model.safetensors",
]
_REQUIRED = ["unet/config.json", "scheduler/scheduler_config.json"]
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass
class ResolvedModel:
    name: str  # as the user wrote it
    path: Path  # a diffusers-format folder
    key: str  # stable identity for caches: 'id@revision' or the folder's absolute path


def hub_cache_dir() -> Path:
    """The hub cache huggingface_hub would use right now (HF_HUB_CACHE, else HF_HOME/hub)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "huggingface" / "hub"


def is_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def fetch_command(model_id: str) -> str:
    return f"vsdream models fetch {model_id}"


def missing_files(folder: Path) -> list[str]:
    """Required files absent from a diffusers folder (the UNet weights in either format)."""
    missing = [f for f in _REQUIRED if not (folder / f).is_file()]
    unet = folder / "unet"
    if not any((unet / n).is_file() for n in ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")):
        missing.append("unet/diffusion_pytorch_model.safetensors")
    return missing


def _looks_like_path(name: str) -> bool:
    return not _HUB_ID.match(name) or name.startswith((".", "~"))


def cached_path(model_id: str, cache: Path | None = None) -> Path | None:
    """The cached snapshot folder of `model_id` when it holds a usable model, else None (no network)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError
    try:
        folder = Path(snapshot_download(model_id, cache_dir=cache or hub_cache_dir(), local_files_only=True,
                                        allow_patterns=FETCH_PATTERNS))
    except LocalEntryNotFoundError:
        return None
    return folder if not missing_files(folder) else None


def download(model_id: str) -> Path:
    """Download `model_id` into the hub cache (the `vsdream models fetch` path)."""
    cache = hub_cache_dir()
    if is_offline():
        raise WeightsMissing(
            f"cannot fetch '{model_id}': HF_HUB_OFFLINE is set (cache: {cache})",
            hint=f"unset HF_HUB_OFFLINE on a machine with internet access and run: {fetch_command(model_id)}")
    from huggingface_hub import snapshot_download
    try:
        folder = Path(snapshot_download(model_id, cache_dir=cache, allow_patterns=FETCH_PATTERNS))
    except Exception as exc:  # network, auth, unknown repo: say which and how to retry
        raise WeightsMissing(
            f"could not download '{model_id}' into {cache} ({type(exc).__name__}: {exc})",
            hint=f"check the model id and your connection (gated models need `hf auth login`), "
                 f"then run: {fetch_command(model_id)}") from exc
    if missing_files(folder):
        raise WeightsMissing(f"'{model_id}' has no diffusers UNet/scheduler (missing {missing_files(folder)})",
                             hint="use a diffusers-format Stable Diffusion repository or folder")
    return folder


def resolve_model(name: str) -> ResolvedModel:
    """A diffusers folder for a model id or local path; downloads only when online and not cached."""
    local = Path(name).expanduser()
    if local.is_dir():
        if missing_files(local):
            raise WeightsMissing(f"model folder {local} is not a diffusers Stable Diffusion folder "
                                 f"(missing {', '.join(missing_files(local))})",
                                 hint="point --model at a folder with unet/, vae/, scheduler/, tokenizer/, text_encoder/")
        return ResolvedModel(name, local, str(local.resolve()))
    if _looks_like_path(name):
        raise WeightsMissing(f"no model folder at {local}",
                             hint="pass an existing diffusers folder or a hub id like " + DEFAULT_MODEL)
    cache = hub_cache_dir()
    folder = cached_path(name, cache)
    if folder is None:
        if is_offline():
            raise WeightsMissing(
                f"Stable Diffusion weights for '{name}' are not in the Hugging Face cache ({cache}) "
                f"and HF_HUB_OFFLINE is set. Fetch them once with: {fetch_command(name)}",
                hint=f"run `{fetch_command(name)}` on a machine with internet access (it respects HF_HOME), "
                     "or pass --model PATH to a local diffusers folder")
        folder = download(name)
    return ResolvedModel(name, folder, f"{name}@{folder.name}")
