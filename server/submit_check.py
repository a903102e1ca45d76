"""Refusals a submit gets before its run folder exists: what the worker would otherwise find late.

- An uploaded or named re-texture mesh goes through the engine's own loader (the one `vsdream
  retexture` runs up front) in a child process: no faces, NaN vertices, indices past the end,
  bytes that are no mesh, triangles without area → `invalid_mesh` naming the upload, no traceback.
- A device the machine lacks (`cuda` on a CPU-only torch, `cuda:7` with two GPUs, `mps` off a Mac)
  → `invalid_spec` naming `device`, instead of an AssertionError from torch in the job.
Both run off the event loop; the device inventory is asked once per server (engine/devices.py).
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from engine.devices import device_problem, probe_devices

from .protocol import ProtocolError, problem

log = logging.getLogger("vsdream.server")
MAX_UPLOADS = 1000            # uploaded meshes kept in run folders (docs/protocol.md, "Uploads")
MAX_UPLOAD_BYTES = 20 << 30   # their bytes
MIN_FREE_BYTES = 1 << 30      # the runs disk keeps this much free after an upload
UPLOAD_LIMIT_ENV = "VSDREAM_UPLOAD_LIMIT"  # "<count>,<MiB>[,<free MiB>]" overrides the three
MESH_CHECK_TIMEOUT_S = 300.0  # a 256 MiB OBJ parses in well under a minute; a stuck parse is refused
UNLIMITED_FACES = 1 << 40     # input_mesh_decimate: any face count is fine, the job decimates it


async def check_submit(spec: Any, mesh: bytes, mesh_file: Path | None, mesh_name: Any, spool_dir: Path,
                       uploads: UploadQuota | None = None) -> None:
    """Raise ProtocolError (invalid_spec / invalid_mesh / busy) for a job that could only fail later."""
    await asyncio.to_thread(_check_device, spec.device)
    uploaded = bool(mesh) or mesh_file is not None
    if uploaded and uploads is not None:
        size = len(mesh) if mesh_file is None else mesh_file.stat().st_size
        await asyncio.to_thread(uploads.admit, size)
    if spec.mode != "retexture" or not spec.input_mesh:
        return
    limit = UNLIMITED_FACES if spec.input_mesh_decimate else None
    if uploaded:
        shown = str(mesh_name) if isinstance(mesh_name, str) else "the uploaded mesh"
        await asyncio.to_thread(_check_upload, mesh, mesh_file, Path(spec.input_mesh).name, shown, spool_dir, limit)
    else:
        await asyncio.to_thread(_check_mesh_file, Path(spec.input_mesh), spec.input_mesh, limit)


class UploadQuota:
    """How many uploaded meshes, and how many bytes of them, the run folders may hold, plus free space
    the runs disk keeps. An upload that would pass a bound answers `busy` before it is stored. The
    figures are counted from disk (run folders' input/) when first needed and again before any
    refusal, so run folders deleted since free their share."""

    def __init__(self, runs_dir: Path, max_count: int = MAX_UPLOADS, max_bytes: int = MAX_UPLOAD_BYTES,
                 min_free_bytes: int = MIN_FREE_BYTES):
        env = os.environ.get(UPLOAD_LIMIT_ENV, "")
        if env:  # "<count>,<MiB>[,<free MiB>]": for tests and small disks
            parts = [int(x) for x in env.split(",")]
            max_count, max_bytes = parts[0], parts[1] << 20
            min_free_bytes = parts[2] << 20 if len(parts) > 2 else min_free_bytes
        self.runs_dir, self.max_count, self.max_bytes, self.min_free = Path(runs_dir), max_count, max_bytes, \
            min_free_bytes
        self.count: int | None = None
        self.bytes = 0
        self._lock = threading.Lock()

    def admit(self, size: int) -> None:
        """Count an upload of `size` bytes in, or raise ProtocolError("busy") naming the bound."""
        with self._lock:
            if self.count is None or not self._fits(size):
                self.count, self.bytes = self._scan()
            if self.count + 1 > self.max_count:
                raise _busy(f"the server already keeps {self.count} uploaded meshes (limit {self.max_count})")
            if self.bytes + size > self.max_bytes:
                raise _busy(f"uploaded meshes would take {(self.bytes + size) / 2**20:.0f} MiB on the server "
                            f"(limit {self.max_bytes / 2**20:.0f} MiB)")
            free = shutil.disk_usage(self.runs_dir).free
            if free - size < self.min_free:
                raise _busy(f"the runs folder's disk has {free / 2**20:.0f} MiB free; a {size / 2**20:.1f} MiB "
                            f"upload would leave less than {self.min_free / 2**20:.0f} MiB")
            self.count += 1
            self.bytes += size

    def _fits(self, size: int) -> bool:
        return self.count is not None and self.count + 1 <= self.max_count and self.bytes + size <= self.max_bytes

    def _scan(self) -> tuple[int, int]:
        count = total = 0
        for folder in self.runs_dir.glob("*/input"):
            for f in folder.iterdir():
                try:
                    total += f.stat().st_size
                    count += 1
                except OSError:
                    pass
        return count, total


def _busy(why: str) -> ProtocolError:
    return ProtocolError("busy", why, hint="delete old run folders from the server's runs folder, or ask its "
                                           "operator for more room")


def _check_device(name: str) -> None:
    if name in ("auto", "cpu"):
        return
    found = probe_devices()
    if found is None:  # torch could not be asked: the worker reports it
        log.warning("could not list this machine's devices; device %r is passed on unchecked", name)
        return
    count, mps = found
    why = device_problem(name, count > 0, mps, count)
    if why is not None:
        raise ProtocolError("invalid_spec", why, hint="set device to 'auto' (the best device this machine has) "
                            "or 'cpu'", problems=[problem("device", name, why.split(": ", 1)[-1])])


def _check_upload(mesh: bytes, mesh_file: Path | None, file_name: str, shown: str, spool_dir: Path,
                  face_limit: int | None) -> None:
    """The loader reads the upload under its own file name (the suffix picks the format)."""
    spool_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=spool_dir, prefix="check-") as tmp:
        path = Path(tmp) / file_name
        if mesh_file is None:
            path.write_bytes(mesh)
        else:
            try:
                os.link(mesh_file, path)  # same file system: no copy of up to 256 MiB
            except OSError:
                shutil.copyfile(mesh_file, path)
        _check_mesh_file(path, shown, face_limit)


def _check_mesh_file(path: Path, shown: str, face_limit: int | None) -> None:
    args = [sys.executable, "-m", "engine.mesh.mesh_check", str(path)]
    if face_limit is not None:
        args += ["--face-limit", str(face_limit)]
    got = _verdict(args, path)
    if got.get("ok"):
        return
    message = str(got.get("message", "")).replace(repr(str(path)), repr(shown))
    raise ProtocolError("invalid_mesh", message, hint=got.get("hint") or None,
                        problems=[problem("input_mesh", shown, "a GLB, glTF, OBJ or PLY with at least one "
                                                               "triangle of non-zero area")])


def _verdict(args: list[str], path: Path) -> dict[str, Any]:
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=MESH_CHECK_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return {"ok": False, "message": f"input_mesh {str(path)!r} could not be read within "
                                        f"{MESH_CHECK_TIMEOUT_S:g} s", "hint": "send a smaller mesh"}
    try:
        return json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):  # the checker itself died (out of memory, killed)
        log.warning("mesh check of %s gave no verdict (exit %s); stderr: %s", path, done.returncode,
                    done.stderr[-2000:])
        return {"ok": False, "message": f"input_mesh {str(path)!r} could not be read (the mesh check stopped)",
                "hint": "send a smaller mesh, or re-export it from Blender"}
