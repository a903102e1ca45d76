"""`vsdream bench upload [--mib 250]`: the server's memory while it receives a large mesh upload.

The upload is streamed to a file as it arrives (server/frame_stream.py), so the server's resident
memory should rise by a few MiB whatever the payload, and fall back afterwards. This samples the
server process's RSS every few milliseconds during a real submit with a `--mib` MiB payload.
"""
from __future__ import annotations

import argparse
import json
import os
import struct
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from . import protocol as P
from .launcher import ServerProcess

SERVER_ARGS = ("--device", "cpu", "--job-fn", "server.bench:preview_flood")
PIECE = 1 << 20


def rss_bytes(pid: int) -> int | None:
    """Resident set size of a process: /proc on Linux, psutil elsewhere when installed, else None."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import psutil
        return int(psutil.Process(pid).memory_info().rss)
    except Exception:  # noqa: BLE001 - not installed, or the process is gone
        return None


class _Sampler(threading.Thread):
    def __init__(self, pid: int, every_s: float = 0.003):
        super().__init__(daemon=True)
        self.pid, self.every_s, self.peak, self._halt = pid, every_s, 0, threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            self.peak = max(self.peak, rss_bytes(self.pid) or 0)
            time.sleep(self.every_s)

    def stop(self) -> int:
        self._halt.set()
        self.join()
        return self.peak


def glb_start(size: int) -> tuple[bytes, int]:
    """The first bytes of a valid GLB of exactly `size` bytes (a tetrahedron) and how many filler bytes
    follow: its binary chunk is padded with bytes no accessor reads, so any filler content is valid."""
    pos = struct.pack("<12f", 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1)
    idx = struct.pack("<12H", 0, 2, 1, 0, 1, 3, 0, 3, 2, 1, 2, 3)
    doc = {"asset": {"version": "2.0", "generator": "vsdream bench upload"}, "scene": 0,
           "scenes": [{"nodes": [0]}], "nodes": [{"mesh": 0}],
           "meshes": [{"primitives": [{"attributes": {"POSITION": 0}, "indices": 1}]}],
           "accessors": [{"bufferView": 0, "componentType": 5126, "count": 4, "type": "VEC3",
                          "min": [0, 0, 0], "max": [1, 1, 1]},
                         {"bufferView": 1, "componentType": 5123, "count": 12, "type": "SCALAR"}],
           "bufferViews": [{"buffer": 0, "byteOffset": 0, "byteLength": 48},
                           {"buffer": 0, "byteOffset": 48, "byteLength": 24}]}
    for _ in range(2):  # the buffer's byteLength depends on the JSON's length, which depends on it
        js = json.dumps({**doc, "buffers": [{"byteLength": doc.get("_bin", 72)}]}).encode()
        js += b" " * (-len(js) % 4)
        binary = size - 12 - 8 - len(js) - 8
        binary -= binary % 4
        doc["_bin"] = binary
    js = json.dumps({**{k: v for k, v in doc.items() if k != "_bin"}, "buffers": [{"byteLength": binary}]}).encode()
    js += b" " * (size - 28 - binary - len(js))
    if binary < 72 or len(js) % 4:
        raise ValueError(f"an upload of {size} bytes cannot hold the mesh (sizes are multiples of 4, ≥ 2 KiB)")
    start = (struct.pack("<4sII", b"glTF", 2, size) + struct.pack("<I4s", len(js), b"JSON") + js
             + struct.pack("<I4s", binary, b"BIN\0") + pos + idx)
    return start, size - len(start)


def upload(srv: ServerProcess, mib: int, settle_s: float = 1.0) -> dict[str, Any]:
    """Submit a `mib` MiB mesh over a raw socket, sent in 1 MiB pieces (the client never holds it all)."""
    pid = srv.proc.pid
    chan = srv.connect()
    chan.request(P.ping(), timeout=30)
    time.sleep(0.3)
    base = rss_bytes(pid)
    if base is None:
        raise RuntimeError("cannot read the server's memory on this system (no /proc, no psutil)")
    size = mib * PIECE
    header = {"type": "submit", "id": "up", "preset": "cpu-smoke", "mesh_name": "big.glb", "attach": False,
              "overrides": {"nerf": {"steps": 1, "resolution_schedule": [[0, 16]]}}}
    raw = json.dumps({**header, "payload_bytes": size}).encode("utf-8")
    head = P.PREFIX.pack(len(raw)) + raw  # encode_frame_parts would want the payload in memory
    sampler = _Sampler(pid)
    sampler.start()
    t0 = time.perf_counter()
    chan.sock.sendall(head)
    start, filler = glb_start(size)  # a real GLB: the server checks an upload before it keeps it
    chan.sock.sendall(start)
    piece = os.urandom(PIECE)
    for _ in range(filler // PIECE):
        chan.sock.sendall(piece)
    chan.sock.sendall(piece[:filler % PIECE])
    reply = P.raise_for_error(_reply(chan, "up"))
    seconds = time.perf_counter() - t0
    peak = sampler.stop()
    time.sleep(settle_s)
    after = rss_bytes(pid) or 0
    chan.close()
    saved = Path(reply["run_dir"]) / "input" / "big.glb"
    return {"mib": mib, "seconds": seconds, "mib_per_s": mib / seconds, "baseline_mib": base / 2**20,
            "peak_delta_mib": (peak - base) / 2**20, "after_delta_mib": (after - base) / 2**20,
            "saved_bytes": saved.stat().st_size if saved.exists() else 0, "chunk_mib": 1}


def _reply(chan: P.Channel, rid: str) -> P.Frame:
    """The reply to request `rid` (heartbeats and other frames are skipped)."""
    while True:
        f = chan.recv(timeout=600)
        if f is None:
            raise ConnectionError("the server closed the connection during the upload")
        if f.get("re") == rid:
            return f


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="vsdream bench upload", description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=250, help="payload size in MiB (at most 256)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if not 1 <= args.mib <= P.MAX_PAYLOAD_BYTES >> 20:
        ap.error(f"--mib {args.mib}: use 1..{P.MAX_PAYLOAD_BYTES >> 20}")
    with tempfile.TemporaryDirectory(prefix="vsdream-upload-") as tmp:
        with ServerProcess(Path(tmp) / "runs", *SERVER_ARGS) as srv:
            out = upload(srv, args.mib)
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"upload {out['mib']} MiB in {out['seconds']:.2f} s ({out['mib_per_s']:.0f} MiB/s); server RSS "
              f"{out['baseline_mib']:.0f} MiB before, peak +{out['peak_delta_mib']:.1f} MiB, "
              f"+{out['after_delta_mib']:.1f} MiB after; saved {out['saved_bytes']} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
