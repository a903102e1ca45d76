"""`vsdream models fetch [ID ...]` and `vsdream models list`: the diffusion weights on this machine.

Weights go into the Hugging Face hub cache (HF_HOME / HF_HUB_CACHE are respected), which is the
only place the SD prior looks besides an explicit --model folder.
"""
from __future__ import annotations

import argparse
import sys

from .errors import EngineError
from .priors.weights import DEFAULT_MODEL, DEFAULT_PHI_MODEL, download, hub_cache_dir, missing_files


def _cached_models() -> dict[str, str]:
    """repo id -> snapshot folder, for cached repos that hold a usable diffusers SD model."""
    from huggingface_hub import scan_cache_dir
    cache = hub_cache_dir()
    if not cache.is_dir():
        return {}
    found: dict[str, str] = {}
    for repo in scan_cache_dir(cache).repos:
        if repo.repo_type != "model":
            continue
        for rev in sorted(repo.revisions, key=lambda r: r.last_modified, reverse=True):
            if not missing_files(rev.snapshot_path):
                found[repo.repo_id] = str(rev.snapshot_path)
                break
    return found


def _fetch(ids: list[str]) -> int:
    for model_id in ids or [DEFAULT_MODEL, DEFAULT_PHI_MODEL]:
        print(f"fetching {model_id} into {hub_cache_dir()} …", flush=True)
        try:
            path = download(model_id)
        except EngineError as exc:
            print(f"error: {exc}\nhint: {exc.hint}", file=sys.stderr)
            return 1
        print(f"ok: {model_id} -> {path}")
    return 0


def _list() -> int:
    cached = _cached_models()
    print(f"Hugging Face cache: {hub_cache_dir()}")
    for model_id, role in ((DEFAULT_MODEL, "pretrained score (default)"), (DEFAULT_PHI_MODEL, "ε_φ base (default)")):
        state = "present" if model_id in cached else f"missing  (vsdream models fetch {model_id})"
        print(f"  {model_id:<42} {role:<28} {state}")
    others = sorted(set(cached) - {DEFAULT_MODEL, DEFAULT_PHI_MODEL})
    for model_id in others:
        print(f"  {model_id:<42} {'cached':<28} present")
    print("random-weight builds (no download): tiny-sd, sd21-random")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vsdream models", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="action", required=True)
    fetch = sub.add_parser("fetch", help="download model weights (default: the two SD-2.1 models VSD uses)")
    fetch.add_argument("ids", nargs="*", metavar="ID", help="hub model ids, e.g. " + DEFAULT_MODEL)
    sub.add_parser("list", help="show which models are in the cache")
    args = parser.parse_args(argv)
    return _fetch(args.ids) if args.action == "fetch" else _list()


if __name__ == "__main__":
    sys.exit(main())
