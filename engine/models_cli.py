"""`vsdream models fetch [ID ...]` and `vsdream models list`: the diffusion weights on this machine.

Weights go into the Hugging Face hub cache (HF_HOME / HF_HUB_CACHE are respected), which is the
only place the SD prior looks besides an explicit --model folder. Downloads take fp16 variants
where a repo has them; the default fetch takes only the ε_φ base's UNet and scheduler, since it
shares the pretrained model's text encoder and never uses a VAE. Removed ids fetch their mirror.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .errors import EngineError, WeightsMissing
from .fetch_report import PREFIX, FetchReport
from .priors.model_ids import REMOVED, mirror_of
from .priors.resumable import bytes_present, free_bytes, storage_dir
from .priors.weight_files import ALL_PARTS, PHI_PARTS, choose_weights, folder_files, missing_files
from .priors.weights import (
    DEFAULT_MODEL,
    DEFAULT_PHI_MODEL,
    cached_path,
    cached_snapshot,
    download,
    hub_cache_dir,
    phi_parts,
    plan_fetch,
)


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


@dataclass
class _Target:
    model_id: str
    parts: tuple[str, ...]
    note: str = ""
    repo: str = ""
    files: list = field(default_factory=list)


def _gb(n: int) -> str:
    return f"{n / 1e9:.2f} GB"


def space_problem(need: int, free: int, cache: Path) -> WeightsMissing | None:
    """Refuse a fetch the drive cannot hold, before any byte is downloaded."""
    if need <= free:
        return None
    return WeightsMissing(f"not enough disk space: the weights need {_gb(need)} more, {_gb(free)} free in {cache}",
                          hint="free some space, or point HF_HOME at a drive with more room and fetch again")


def _fetch(ids: list[str], progress: bool) -> int:
    """Plan every model first (sizes, disk space), then download them, reporting bytes as they land."""
    report = FetchReport(progress)
    if ids:
        targets = [_Target(i, ALL_PARTS) for i in ids]
    else:
        phi = phi_parts(DEFAULT_MODEL, DEFAULT_PHI_MODEL)
        note = "" if phi == ALL_PARTS else f" [{', '.join(phi)} only: ε_φ reuses {DEFAULT_MODEL}'s text encoder]"
        targets = [_Target(DEFAULT_MODEL, ALL_PARTS), _Target(DEFAULT_PHI_MODEL, phi, note)]
    todo = []
    for t in targets:
        repo = mirror_of(t.model_id)
        if repo != t.model_id:
            report.say(f"{t.model_id} was removed from the Hugging Face hub; fetching its mirror {repo}")
        have = cached_path(repo, parts=t.parts)
        if have is not None:
            report.say(f"ok: {repo} already in the cache -> {have}{t.note}")
            continue
        try:
            t.repo, t.files = plan_fetch(t.model_id, t.parts)
        except EngineError as exc:
            return report.error(repo, exc)
        todo.append(t)
    if not todo:
        report.event("done", total=0)
        return 0
    cache = hub_cache_dir()
    total = sum(f.size for t in todo for f in t.files)
    present = sum(bytes_present(storage_dir(cache, t.repo), t.files) for t in todo)
    free = free_bytes(cache)
    report.event("plan", repos=[t.repo for t in todo], total=total, present=present, need=total - present,
                 free=free, cache=str(cache))
    report.say(f"download {_gb(total - present)} ({_gb(present)} of {_gb(total)} already here); "
               f"{_gb(free)} free in {cache}")
    problem = space_problem(total - present, free, cache)
    if problem is not None:
        return report.error(todo[0].repo, problem)
    done_before = 0
    for t in todo:
        report.say(f"fetching {t.repo} into {cache} (fp16 variants where the repo has them){t.note} …")
        storage = storage_dir(cache, t.repo)
        with report.watch(lambda s=storage, t=t, b=done_before: b + bytes_present(s, t.files), total, t.repo):
            try:
                path = download(t.model_id, t.parts, plan=(t.repo, t.files))
            except EngineError as exc:
                return report.error(t.repo, exc)
        done_before += sum(f.size for f in t.files)
        report.event("progress", repo=t.repo, done=done_before, total=total)
        report.say(f"ok: {t.repo} -> {path} ({_precision(path)})")
    report.event("done", total=total)
    return 0


def model_rows() -> list[dict[str, str]]:
    """The default models and every cached ε_φ-capable repo: id, role, state (Check engine shows these)."""
    cached = _cached_repos()
    rows = [{"id": m, "role": role, "state": _state(m, cached)}
            for m, role in ((DEFAULT_MODEL, "pretrained score (default)"), (DEFAULT_PHI_MODEL, "ε_φ base (default)"))]
    shown = {DEFAULT_MODEL, DEFAULT_PHI_MODEL, *REMOVED}
    rows += [{"id": m, "role": "cached", "state": f"present ({_precision(cached[m])})"}
             for m in sorted(set(cached) - shown)]
    return rows


def _list() -> int:
    print(f"Hugging Face cache: {hub_cache_dir()}")
    for row in model_rows():
        print(f"  {row['id']:<42} {row['role']:<28} {row['state']}")
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
    fetch.add_argument("--progress", action="store_true",
                       help=f"also print machine-readable '{PREFIX} {{json}}' lines: plan (bytes needed and free), "
                            "progress (bytes done / total), done, error (the Blender add-on reads these)")
    sub.add_parser("list", help="show which models are in the cache")
    args = parser.parse_args(argv)
    return _fetch(args.ids, args.progress) if args.action == "fetch" else _list()


if __name__ == "__main__":
    sys.exit(main())
