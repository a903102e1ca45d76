"""A Hugging Face hub stand-in on loopback: real HTTP, real huggingface_hub client code, no internet.

It answers the few routes `list_repo_files` / `snapshot_download` use, the way the hub does,
including its error replies (404 + `X-Error-Code: RepoNotFound`, 401 + `GatedRepo`), and
records which files were downloaded.
"""
from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

COMMIT = "c0ffee" + "0" * 34


@dataclass
class FakeRepo:
    files: dict[str, bytes] = field(default_factory=dict)
    state: str = "ok"  # 'ok' | 'gone' | 'gated'

    @classmethod
    def from_folder(cls, folder: Path, skip: tuple[str, ...] = ()) -> FakeRepo:
        files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in Path(folder).rglob("*") if p.is_file()}
        return cls({k: v for k, v in files.items() if not any(k.startswith(s) for s in skip)})


def _is_lfs(path: str) -> bool:
    return path.endswith((".safetensors", ".bin", ".ckpt"))


class FakeHub:
    def __init__(self) -> None:
        self.repos: dict[str, FakeRepo] = {}
        self.downloaded: list[tuple[str, str]] = []  # (repo, file) of every GET of a file
        self.ranges: list[tuple[str, int]] = []  # (file, first byte) of every GET with a Range header
        self.stall: dict[str, int] = {}  # file -> send only this many bytes, then hold the connection
        self.release = threading.Event()  # set: stalled replies end (their client then sees a short read)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakeHub:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()

    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def _reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
                       content_type: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _repo(self, repo_id: str) -> FakeRepo | None:
                repo = hub.repos.get(repo_id)
                if repo is None or repo.state == "gone":
                    self._reply(404, b'{"error":"Repository not found"}', {"X-Error-Code": "RepoNotFound",
                                                                            "X-Error-Message": "Repository not found"})
                    return None
                if repo.state == "gated":
                    self._reply(401, b'{"error":"Access to model is restricted."}', {
                        "X-Error-Code": "GatedRepo", "X-Error-Message": "Access to model is restricted."})
                    return None
                return repo

            def _route(self) -> None:
                parts = [unquote(p) for p in urlsplit(self.path).path.split("/") if p]
                if parts[:2] == ["api", "models"] and len(parts) >= 6 and parts[4] in ("revision", "tree"):
                    repo = self._repo("/".join(parts[2:4]))
                    if repo is None:
                        return
                    if parts[4] == "revision":
                        body = {"id": "/".join(parts[2:4]), "sha": COMMIT, "private": False,
                                "siblings": [{"rfilename": f} for f in repo.files]}
                    else:
                        body = [self._tree_entry(f, data) for f, data in repo.files.items()]
                    return self._reply(200, json.dumps(body).encode())
                if len(parts) >= 5 and parts[2] == "resolve":
                    repo = self._repo("/".join(parts[:2]))
                    if repo is None:
                        return
                    name = "/".join(parts[4:])
                    if name not in repo.files:
                        return self._reply(404, b"{}", {"X-Error-Code": "EntryNotFound"})
                    data = repo.files[name]
                    if self.command == "GET":
                        hub.downloaded.append(("/".join(parts[:2]), name))
                    etag = hashlib.sha256(data).hexdigest() if _is_lfs(name) else hashlib.sha1(data).hexdigest()
                    headers = {"X-Repo-Commit": COMMIT, "ETag": f'"{etag}"', "Accept-Ranges": "bytes"}
                    first = self._range_start(name)
                    if first is None and name in hub.stall and self.command == "GET":
                        return self._stalled(data, hub.stall[name], headers)
                    if first is not None:  # bytes=N- : the rest of the file, as a 206
                        headers["Content-Range"] = f"bytes {first}-{len(data) - 1}/{len(data)}"
                        self.send_response(206)
                        self.send_header("Content-Length", str(len(data) - first))
                        for k, v in headers.items():
                            self.send_header(k, v)
                        self.end_headers()
                        self.wfile.write(data[first:])
                        return
                    return self._reply(200, data, headers, content_type="application/octet-stream")
                self._reply(404, b"{}")

            def _range_start(self, name: str) -> int | None:
                spec = self.headers.get("Range", "")
                if self.command != "GET" or not spec.startswith("bytes=") or not spec.endswith("-"):
                    return None
                first = int(spec[len("bytes="):-1])
                hub.ranges.append((name, first))
                return first

            def _stalled(self, data: bytes, keep: int, headers: dict[str, str]) -> None:
                """Announce the whole file, send `keep` bytes, then hang until released (a dropped link)."""
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data[:keep])
                self.wfile.flush()
                hub.release.wait(60)

            @staticmethod
            def _tree_entry(name: str, data: bytes) -> dict:
                entry = {"type": "file", "path": name, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
                if _is_lfs(name):
                    entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data),
                                    "pointerSize": 134}
                return entry

            do_GET = do_HEAD = _route

        return Handler
