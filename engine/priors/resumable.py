"""Large weight files fetched so that an interrupted download picks up where it stopped.

huggingface_hub writes each download to a process-unique temporary file and deletes it when the
download fails, so a fetch stopped at 1.5 of 1.7 GB starts that file from zero. Here the large
(LFS) files go first into `blobs/<sha256>.vsdream-part` of the repo's hub-cache folder, continued
with an HTTP Range request on the next run, checked against the sha256 the hub lists and then
renamed to `blobs/<sha256>`: the hub cache's own name for that file, so snapshot_download finds it
there and only links it into the snapshot. Sizes and names also give the fetch its byte progress.
"""
from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from ..errors import WeightsMissing

PART_SUFFIX = ".vsdream-part"


@dataclass(frozen=True)
class RemoteFile:
    """One file of a hub repo as its tree listing gives it."""
    path: str
    size: int
    blob: str  # the hub cache's blob name: the LFS sha256, else the git object id
    sha256: str | None = None  # LFS files only


def list_remote(repo: str, endpoint: str | None) -> list[RemoteFile]:
    """Every file of `repo` with its size and blob name (one tree listing, no downloads)."""
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import RepoFile
    out = []
    for entry in HfApi(endpoint=endpoint).list_repo_tree(repo, recursive=True):
        if isinstance(entry, RepoFile):
            sha = entry.lfs.sha256 if entry.lfs is not None else None
            out.append(RemoteFile(entry.path, int(entry.size or 0), sha or entry.blob_id, sha))
    return out


def storage_dir(cache: Path, repo: str) -> Path:
    """The hub cache's folder of one repo (models--org--name)."""
    return Path(cache) / ("models--" + repo.replace("/", "--"))


def _in_snapshot(storage: Path, path: str) -> bool:
    snaps = storage / "snapshots"
    return snaps.is_dir() and any((s / path).is_file() for s in snaps.iterdir())


def bytes_present(storage: Path, files: Iterable[RemoteFile]) -> int:
    """Bytes of `files` already on disk: finished blobs (or snapshot files) in full, partial ones
    as far as they got (ours and huggingface_hub's temporary `*.incomplete`)."""
    blobs = storage / "blobs"
    total = 0
    for f in files:
        blob = blobs / f.blob
        if blob.is_file() or _in_snapshot(storage, f.path):
            total += f.size
            continue
        partial = [blob.with_name(f.blob + PART_SUFFIX), *blobs.glob(f"{f.blob}*.incomplete")] if blobs.is_dir() else []
        total += min(f.size, max((p.stat().st_size for p in partial if p.is_file()), default=0))
    return total


def free_bytes(folder: Path) -> int:
    """Free space on the drive that holds (or will hold) `folder`."""
    probe = Path(folder).resolve()
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    return shutil.disk_usage(probe).free


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 23), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch_blob(url: str, storage: Path, f: RemoteFile, headers: dict[str, str] | None = None) -> Path:
    """Download one LFS file into its blob, continuing a `.vsdream-part` left by an earlier run."""
    from huggingface_hub.file_download import http_get
    blobs = storage / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    blob, part = blobs / f.blob, blobs / (f.blob + PART_SUFFIX)
    if blob.is_file():
        return blob
    have = part.stat().st_size if part.is_file() else 0
    if have > f.size:  # not this file's bytes: start over
        part.unlink()
        have = 0
    with part.open("ab") as fh:
        http_get(url, fh, resume_size=have, headers=headers, expected_size=f.size, displayed_filename=f.path)
    if f.sha256 and _sha256(part) != f.sha256:
        part.unlink()
        raise WeightsMissing(f"the download of {f.path} does not match the hub's checksum (removed the partial file)",
                             hint="run the fetch again; if it repeats, check the network or proxy")
    os.replace(part, blob)
    return blob


def prefetch_large(repo: str, files: list[RemoteFile], cache: Path, endpoint: str | None,
                   on_file: Callable[[RemoteFile], None] | None = None) -> None:
    """Fetch every LFS file of `files` not yet cached, resumably (the rest is left to snapshot_download)."""
    from huggingface_hub import hf_hub_url
    from huggingface_hub.utils import build_hf_headers
    storage = storage_dir(cache, repo)
    headers = build_hf_headers()
    for f in files:
        if not f.sha256 or (storage / "blobs" / f.blob).is_file() or _in_snapshot(storage, f.path):
            continue
        if on_file is not None:
            on_file(f)
        fetch_blob(hf_hub_url(repo, f.path, endpoint=endpoint), storage, f, headers)
