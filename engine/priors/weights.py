"""Where Stable Diffusion weights come from: a local folder, the Hugging Face cache, or the hub.

Offline and not cached is one clear `WeightsMissing` naming the model, the cache folder looked in
and the command that fetches it; hub failures say which one it was (hub_errors.py). There is
never a silent fallback to another model or prior — except that a removed id and its mirror are
one model (model_ids.py): whichever of the two is cached serves, and downloads go to the mirror.
Environment variables are read at call time (HF_HOME, HF_HUB_CACHE, HF_HUB_OFFLINE, HF_ENDPOINT),
so a process can point at another cache or hub without re-importing huggingface_hub.
"""
from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..errors import WeightsMissing
from .hub_errors import from_hub_error
from .model_ids import (
    DEFAULT_MODEL,
    DEFAULT_PHI_MODEL,
    REMOVED,
    equivalent_ids,
    fetch_command,
    known_text_family,
    mirror_of,
)
from .resumable import RemoteFile, list_remote, prefetch_large
from .weight_files import (
    ALL_PARTS,
    PHI_PARTS,
    TEXT_PARTS,
    fetch_files,
    missing_files,
    missing_parts,
    text_encoder_identity,
)

__all__ = ["DEFAULT_MODEL", "DEFAULT_PHI_MODEL", "ResolvedModel", "cached_path", "download", "fetch_command",
           "hub_cache_dir", "is_offline", "missing_files", "phi_parts", "plan_fetch", "resolve_model"]
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass
class ResolvedModel:
    name: str  # as the user wrote it
    path: Path  # a diffusers-format folder
    key: str  # stable identity for caches: 'repo@revision' or the folder's absolute path
    repo: str | None = None  # the hub repo whose files these are (the mirror or the old id), None for folders
    text_key: str = ""  # identity of the text encoder: equal keys embed prompts identically

    def __post_init__(self) -> None:
        if not self.text_key:
            self.text_key = (known_text_family(self.repo) or text_encoder_identity(self.path) or self.key)

    @property
    def label(self) -> str:
        """The name for messages, saying which cache served an alias."""
        return self.name if self.repo in (None, self.name) else f"{self.name} (files of {self.repo})"


def hub_cache_dir() -> Path:
    """The hub cache huggingface_hub would use right now (HF_HUB_CACHE, else HF_HOME/hub)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "huggingface" / "hub"


def hub_endpoint() -> str | None:
    return os.environ.get("HF_ENDPOINT", "").rstrip("/") or None


def is_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def _looks_like_path(name: str) -> bool:
    return not _HUB_ID.match(name) or name.startswith((".", "~"))


def _snapshots(repo_id: str, cache: Path) -> list[Path]:
    """Cached snapshot folders of a repo, the one refs/main names first (the hub cache layout)."""
    storage = cache / ("models--" + repo_id.replace("/", "--"))
    snaps = storage / "snapshots"
    if not snaps.is_dir():
        return []
    folders = sorted((p for p in snaps.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime, reverse=True)
    ref = storage / "refs" / "main"
    main = snaps / ref.read_text(encoding="utf-8").strip() if ref.is_file() else None
    return ([main] if main in folders else []) + [p for p in folders if p != main]


def cached_snapshot(repo_id: str, parts: Iterable[str] = ALL_PARTS, cache: Path | None = None) -> Path | None:
    """The cached snapshot of exactly `repo_id` holding `parts` (either precision), else None."""
    parts = tuple(parts)
    return next((p for p in _snapshots(repo_id, cache or hub_cache_dir()) if not missing_files(p, parts)), None)


def _cached(name: str, parts: Iterable[str], cache: Path) -> tuple[str, Path] | None:
    """(repo, snapshot) of the first of `name`'s equivalent ids that is cached with `parts`."""
    for repo in equivalent_ids(name):
        folder = cached_snapshot(repo, parts, cache)
        if folder is not None:
            return repo, folder
    return None


def cached_path(model_id: str, cache: Path | None = None, parts: Iterable[str] = ALL_PARTS) -> Path | None:
    """The cached folder that serves `model_id` (itself or its removed-id/mirror twin); no network."""
    found = _cached(model_id, tuple(parts), cache or hub_cache_dir())
    return found[1] if found else None


def phi_parts(pretrained_repo: str | None, phi_id: str) -> tuple[str, ...]:
    """What the ε_φ base needs on disk: UNet and scheduler, plus a text encoder unless both are
    repos known to share one (then ε_φ reuses the pretrained model's; see model_ids.py)."""
    family = known_text_family(pretrained_repo)
    shared = family is not None and family == known_text_family(phi_id)
    return PHI_PARTS if shared else PHI_PARTS + TEXT_PARTS


def plan_fetch(model_id: str, parts: Iterable[str] = ALL_PARTS) -> tuple[str, list[RemoteFile]]:
    """(repo, files to fetch with sizes) for `parts` of `model_id` (its mirror for a removed id):
    configs, tokenizer and one weights file per part, fp16 variants where the repo has them."""
    parts = tuple(parts)
    cache, repo = hub_cache_dir(), mirror_of(model_id)
    if is_offline():
        raise WeightsMissing(
            f"cannot fetch '{repo}': HF_HUB_OFFLINE is set (cache: {cache})",
            hint=f"unset HF_HUB_OFFLINE on a machine with internet access and run: {fetch_command(repo)}")
    try:
        listing = list_remote(repo, hub_endpoint())
    except Exception as exc:  # gone, gated, network, other: each with its own message and fix
        raise from_hub_error(repo, exc, cache) from exc
    wanted = fetch_files([f.path for f in listing], parts)
    lacking = missing_parts(wanted, parts)
    if lacking:
        raise WeightsMissing(f"'{repo}' is not a diffusers Stable Diffusion repository "
                             f"(it has no {', '.join(lacking)})",
                             hint="use a diffusers-format Stable Diffusion repository or --model PATH")
    keep = set(wanted)
    return repo, [f for f in listing if f.path in keep]


def download(model_id: str, parts: Iterable[str] = ALL_PARTS,
             plan: tuple[str, list[RemoteFile]] | None = None) -> Path:
    """Download `parts` of `model_id` (its mirror for a removed id) into the hub cache, fp16
    variants where the repo has them; files already cached are not fetched again, and a large
    file an earlier run left half-done continues where it stopped (resumable.py)."""
    parts = tuple(parts)
    repo, files = plan or plan_fetch(model_id, parts)
    cache = hub_cache_dir()
    from huggingface_hub import snapshot_download
    try:
        prefetch_large(repo, files, cache, hub_endpoint())
        folder = Path(snapshot_download(repo, cache_dir=cache, allow_patterns=[f.path for f in files],
                                        endpoint=hub_endpoint()))
    except WeightsMissing:
        raise
    except Exception as exc:  # gone, gated, network, other: each with its own message and fix
        raise from_hub_error(repo, exc, cache) from exc
    if missing_files(folder, parts):
        raise WeightsMissing(f"the download of '{repo}' into {folder} is incomplete "
                             f"(missing {', '.join(missing_files(folder, parts))})",
                             hint=f"run it again: {fetch_command(repo)}")
    return folder


def _offline_missing(name: str, parts: tuple[str, ...], cache: Path) -> WeightsMissing:
    partial = next((p for repo in equivalent_ids(name) for p in _snapshots(repo, cache)), None)
    what = (f"are only partly in the Hugging Face cache ({partial}: missing "
            f"{', '.join(missing_files(partial, parts))})" if partial else
            f"are not in the Hugging Face cache ({cache})")
    removed = name.lower() in REMOVED
    alias = f" ('{name}' was removed from the hub; its mirror is '{mirror_of(name)}')" if removed else ""
    return WeightsMissing(
        f"Stable Diffusion weights for '{name}' {what} and HF_HUB_OFFLINE is set{alias}. "
        f"Fetch them once with: {fetch_command(name)}",
        hint=f"run `{fetch_command(name)}` on a machine with internet access (it respects HF_HOME), "
             "or pass --model PATH to a local diffusers folder")


def resolve_model(name: str, parts: Iterable[str] = ALL_PARTS) -> ResolvedModel:
    """A diffusers folder holding `parts` for a model id or local path; downloads only when online
    and not cached. A removed id and its mirror serve each other from the cache."""
    parts = tuple(parts)
    local = Path(name).expanduser()
    if local.is_dir():
        if missing_files(local, parts):
            raise WeightsMissing(f"model folder {local} is not a diffusers Stable Diffusion folder "
                                 f"(missing {', '.join(missing_files(local, parts))})",
                                 hint="point --model at a folder with unet/, vae/, scheduler/, tokenizer/, "
                                      "text_encoder/")
        return ResolvedModel(name, local, str(local.resolve()))
    if _looks_like_path(name):
        raise WeightsMissing(f"no model folder at {local}",
                             hint="pass an existing diffusers folder or a hub id like " + DEFAULT_MODEL)
    cache = hub_cache_dir()
    found = _cached(name, parts, cache)
    if found is None:
        if is_offline():
            raise _offline_missing(name, parts, cache)
        found = mirror_of(name), download(name, parts)
    repo, folder = found
    return ResolvedModel(name, folder, f"{repo}@{folder.name}", repo=repo)
