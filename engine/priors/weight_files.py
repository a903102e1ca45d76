"""Which files of a diffusers Stable Diffusion folder or repo the SD prior reads.

A model has parts (unet, vae, text_encoder, tokenizer, scheduler); the ε_φ base needs only some of
them. Weights may come as fp16 variants (`<name>.fp16.safetensors`, diffusers' and transformers'
`variant="fp16"` naming) next to or instead of the full-precision files: downloads take the fp16
variant where a repo has one (half the bytes), loading picks the file matching the load precision
when both are present (fp16 files load fine into fp32: the loaders cast to `torch_dtype`).
"""
from __future__ import annotations

import fnmatch
import hashlib
import json
import re
from collections.abc import Iterable
from pathlib import Path

VARIANT = "fp16"
ALL_PARTS = ("scheduler", "unet", "vae", "text_encoder", "tokenizer")
TEXT_PARTS = ("text_encoder", "tokenizer")
PHI_PARTS = ("scheduler", "unet")  # the ε_φ base: no VAE, and the text encoder only when not shared
_WEIGHTS = {  # part -> (safetensors name, pickle name) as diffusers / transformers save them
    "unet": ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin"),
    "vae": ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin"),
    "text_encoder": ("model.safetensors", "pytorch_model.bin"),
}
_CONFIGS = {  # part -> files it needs besides weights (glob patterns relative to the model root)
    "scheduler": ["scheduler/scheduler_config.json"], "unet": ["unet/config.json"],
    "vae": ["vae/config.json"], "text_encoder": ["text_encoder/config.json"],
    "tokenizer": ["tokenizer/*"],
}
_PROVENANCE = {"name_or_path", "transformers_version", "torch_dtype", "dtype"}
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def add_variant(name: str, variant: str = VARIANT) -> str:
    """`model.safetensors` -> `model.fp16.safetensors` (the naming both loaders resolve `variant` to)."""
    stem, ext = name.rsplit(".", 1)
    return f"{stem}.{variant}.{ext}"


def weight_candidates(part: str, prefer_half: bool) -> list[tuple[str, str | None]]:
    """(path relative to the model root, variant) in order of preference; safetensors before pickles."""
    safe, pickled = _WEIGHTS[part]
    out: list[tuple[str, str | None]] = []
    for name in (safe, pickled):
        pair = [(add_variant(name), VARIANT), (name, None)]
        out += pair if prefer_half else pair[::-1]
    return [(f"{part}/{name}", variant) for name, variant in out]


def choose_weights(part: str, available: Iterable[str], prefer_half: bool) -> tuple[str, str | None] | None:
    """The weights file of `part` to use among `available` relative paths, and its variant."""
    have = set(available)
    return next((c for c in weight_candidates(part, prefer_half) if c[0] in have), None)


def folder_files(folder: Path) -> list[str]:
    """Every file under `folder` as a posix path relative to it (symlinks into a hub cache count)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()]


def missing_parts(available: Iterable[str], parts: Iterable[str] = ALL_PARTS) -> list[str]:
    """What `parts` lack among `available` files: '<part>/…' entries naming the first missing file."""
    have = list(available)
    missing = []
    for part in parts:
        for pattern in _CONFIGS[part]:
            if not fnmatch.filter(have, pattern):
                missing.append(pattern)
        if part in _WEIGHTS and choose_weights(part, have, prefer_half=False) is None:
            missing.append(f"{part}/{_WEIGHTS[part][0]}")
    return missing


def missing_files(folder: Path, parts: Iterable[str] = ALL_PARTS) -> list[str]:
    return missing_parts(folder_files(folder), parts)


def fetch_files(repo_files: Iterable[str], parts: Iterable[str] = ALL_PARTS) -> list[str]:
    """The repo files to download for `parts`: configs, tokenizer, and one weights file per part,
    the fp16 variant where the repo has one (never both precisions, never .ckpt files)."""
    files = list(repo_files)
    wanted = [f for f in files if f == "model_index.json"]
    for part in parts:
        for pattern in _CONFIGS[part]:
            wanted += fnmatch.filter(files, pattern)
        if part in _WEIGHTS:
            chosen = choose_weights(part, files, prefer_half=True)
            if chosen is not None:
                wanted.append(chosen[0])
    return list(dict.fromkeys(wanted))


def load_variant(folder: Path, part: str, prefer_half: bool) -> str | None:
    """`variant` to pass to `from_pretrained(folder, subfolder=part)`: 'fp16' when that file is the
    one to read (the only one, or the preferred one for a half-precision load), else None."""
    files = [f"{part}/{name}" for name in folder_files(Path(folder) / part)]
    chosen = choose_weights(part, files, prefer_half)
    return chosen[1] if chosen else None


def _file_digest(path: Path) -> str:
    """sha256 of a file; free for hub-cache files, whose blob is named by its LFS sha256."""
    blob = path.resolve().name
    if _SHA256.match(blob):
        return blob
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 23), b""):
            h.update(chunk)
    return h.hexdigest()


def text_encoder_identity(folder: Path) -> str | None:
    """A content identity of a folder's text encoder + tokenizer (None when it has none).

    Two models with the same identity embed prompts identically, so one loaded encoder and one
    embedding cache serve both. Config keys that only record who saved the file are ignored.
    """
    folder = Path(folder)
    files = folder_files(folder)
    weights = choose_weights("text_encoder", files, prefer_half=False)
    if weights is None or missing_parts(files, TEXT_PARTS):
        return None
    h = hashlib.sha256(_json_digest(folder / "text_encoder" / "config.json").encode())
    h.update(_file_digest(folder / weights[0]).encode())
    for name in sorted(f for f in files if f.startswith("tokenizer/")):
        digest = _json_digest(folder / name) if name.endswith(".json") else _file_digest(folder / name)
        h.update(f"{name}:{digest}".encode())
    return "text:" + h.hexdigest()[:24]


def _json_digest(path: Path) -> str:
    """sha256 of a JSON config without the keys that only record who saved it and from where."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(data, dict):
        data = {k: v for k, v in data.items() if not k.startswith("_") and k not in _PROVENANCE}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
