"""`vsdream models fetch [ID ...]` and `vsdream models list`: the diffusion weights on this machine.

Weights go into the Hugging Face hub cache (HF_HOME / HF_HUB_CACHE are respected), which is the
only place the SD prior looks besides an explicit --model folder. Downloads take fp16 variants
where a repo has them; the default fetch takes only the ε_φ base's UNet and scheduler, since it
shares the pretrained model's text encoder and never uses a VAE. Removed ids fetch their mirror.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import EngineError
from .priors.model_ids import REMOVED, mirror_of
from .priors.weight_files import ALL_PARTS, PHI_PARTS, choose_weights, folder_files, missing_files
from .priors.weights import (DEFAULT_MODEL, DEFAULT_PHI_MODEL, cached_path, cached_snapshot, download,
                             hub_cache_dir, phi_parts)


def _precision(folder: Path) -> str:
    """'fp16', 'fp32' or 'fp16+fp32': which UNet weights a snapshot holds."""
    files = folder_files(folder)
    half = choose_weights("unet", files, prefer_half=True)
    full = choose_weights("unet", files, prefer_half=False)
    kinds = {"fp16" if c[1] else "fp32" for c in (half, full) if c}
    return "+".join(sorted(kinds)) or "no weights"


def _cached_repos() -> dict[str, Path]:
    """repo id -> newest snapshot folder holding at least a UNet and scheduler (an ε_φ base)."""
    cache = hub_cache_dir()
    found: dict[str, Path] = {}
    for storage in sorted(cache.glob("models--*--*")) if cache.is_dir() else []:
        repo_id = storage.name.removeprefix("models--").replace("--", "/", 1)
        folder = cached_snapshot(repo_id, PHI_PARTS, cache)
        if folder is not None:
            found[repo_id] = folder
    return found


def _state(model_id: str, cached: dict[str, Path]) -> str:
    for repo in (model_id, *[old for old, mirror in REMOVED.items() if mirror == model_id]):
        folder = cached.get(repo)
        if folder is None:
            continue
        via = "" if repo == model_id else f" as {repo}"
        parts = "all parts" if not missing_files(folder, ALL_PARTS) else "UNet + scheduler"
        return f"present{via} ({_precision(folder)}, {parts})"
    return f"missing  (vsdream models fetch {model_id})"


def _fetch_one(model_id: str, parts: tuple[str, ...], note: str = "") -> bool:
    repo = mirror_of(model_id)
    if repo != model_id:
        print(f"{model_id} was removed from the Hugging Face hub; fetching its mirror {repo}")
    have = cached_path(repo, parts=parts)
    if have is not None:
        print(f"ok: {repo} already in the cache -> {have}{note}")
        return True
    print(f"fetching {repo} into {hub_cache_dir()} (fp16 variants where the repo has them){note} …", flush=True)
    try:
        path = download(repo, parts)
    except EngineError as exc:
        print(f"error: {exc}\nhint: {exc.hint}", file=sys.stderr)
        return False
    print(f"ok: {repo} -> {path} ({_precision(path)})")
    return True


def _fetch(ids: list[str]) -> int:
    if ids:
        return 0 if all(_fetch_one(i, ALL_PARTS) for i in ids) else 1
    phi = phi_parts(DEFAULT_MODEL, DEFAULT_PHI_MODEL)
    note = "" if phi == ALL_PARTS else f" [{', '.join(phi)} only: ε_φ reuses {DEFAULT_MODEL}'s text encoder]"
    ok = _fetch_one(DEFAULT_MODEL, ALL_PARTS) and _fetch_one(DEFAULT_PHI_MODEL, phi, note)
    return 0 if ok else 1


def _list() -> int:
    cached = _cached_repos()
    print(f"Hugging Face cache: {hub_cache_dir()}")
    for model_id, role in ((DEFAULT_MODEL, "pretrained score (default)"), (DEFAULT_PHI_MODEL, "ε_φ base (default)")):
        print(f"  {model_id:<42} {role:<28} {_state(model_id, cached)}")
    shown = {DEFAULT_MODEL, DEFAULT_PHI_MODEL, *REMOVED}
    for model_id in sorted(set(cached) - shown):
        print(f"  {model_id:<42} {'cached':<28} present ({_precision(cached[model_id])})")
    print("aliases (removed from the hub in November 2025; a cached copy under either name serves both):")
    for old, mirror in REMOVED.items():
        print(f"  {old:<42} -> {mirror}")
    print("random-weight builds (no download): tiny-sd, sd21-random")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vsdream models", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="action", required=True)
    fetch = sub.add_parser("fetch", help="download model weights (default: the two SD-2.1 models VSD uses, "
                                         f"{DEFAULT_MODEL} and {DEFAULT_PHI_MODEL})")
    fetch.add_argument("ids", nargs="*", metavar="ID", help="hub model ids, e.g. " + DEFAULT_MODEL)
    sub.add_parser("list", help="show which models are in the cache")
    args = parser.parse_args(argv)
    return _fetch(args.ids) if args.action == "fetch" else _list()


if __name__ == "__main__":
    sys.exit(main())
