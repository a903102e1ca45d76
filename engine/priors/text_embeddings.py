"""Prompt → CLIP hidden states, computed once per (text encoder, prompt) and cached on disk.

The text encoder (340M parameters for SD-2.x) is only needed for prompts never seen before: it is
loaded for those, run, and freed right away, so a job whose prompts are cached never loads it.
Cache: <VSDREAM_CACHE or ~/.cache/vsdream>/text_embeddings/<sha256(key, prompt)>.pt (fp32, CPU).
"""
from __future__ import annotations

import gc
import hashlib
import io
import os
from collections.abc import Sequence
from pathlib import Path

import torch

from ..run_dir import atomic_write_bytes
from .sd_components import TextEncoderLoader


def default_cache_dir() -> Path:
    env = os.environ.get("VSDREAM_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "vsdream"


class TextEmbeddings:
    """`embeddings(prompts)` → (N, 77, D) on the model's device and dtype."""

    def __init__(self, key: str, load_encoder: TextEncoderLoader, device: torch.device, dtype: torch.dtype,
                 cache_dir: Path | None = None):
        self.key, self.device, self.dtype = key, device, dtype
        self._load_encoder = load_encoder
        self.folder = Path(cache_dir or default_cache_dir()) / "text_embeddings"
        self._memory: dict[str, torch.Tensor] = {}
        self.encoder_loads = 0  # how often the text encoder had to be built (0 when all prompts were cached)

    def path_for(self, prompt: str) -> Path:
        digest = hashlib.sha256(f"{self.key}\n{prompt}".encode()).hexdigest()[:40]
        return self.folder / f"{digest}.pt"

    def __call__(self, prompts: Sequence[str]) -> torch.Tensor:
        self.precompute(prompts)
        return torch.stack([self._memory[p] for p in prompts])

    def precompute(self, prompts: Sequence[str]) -> None:
        """Make every prompt available, loading the encoder at most once for all missing ones."""
        missing = []
        for p in dict.fromkeys(prompts):
            if p not in self._memory and not self._read(p):
                missing.append(p)
        if missing:
            self._encode(missing)

    def _read(self, prompt: str) -> bool:
        path = self.path_for(prompt)
        if not path.is_file():
            return False
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 - a damaged cache file (any unpickling error) is recomputed, never trusted
            return False
        if not isinstance(data, dict) or data.get("key") != self.key or data.get("prompt") != prompt:
            return False
        self._memory[prompt] = data["hidden"].to(self.device, self.dtype)
        return True

    def _encode(self, prompts: list[str]) -> None:
        self.encoder_loads += 1
        tokenizer, encoder = self._load_encoder()
        try:
            ids = tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length,
                            truncation=True, return_tensors="pt").input_ids.to(encoder.device)
            with torch.no_grad():
                hidden = encoder(ids)[0].float().cpu()
        finally:
            del tokenizer, encoder
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        for prompt, h in zip(prompts, hidden, strict=True):
            buf = io.BytesIO()
            torch.save({"key": self.key, "prompt": prompt, "hidden": h.clone()}, buf)
            atomic_write_bytes(self.path_for(prompt), buf.getvalue())
            self._memory[prompt] = h.to(self.device, self.dtype)
