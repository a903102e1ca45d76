"""The server's seams: a connection reaches the rest of the server only through narrow interfaces
(connection_api.JobsApi / ServerLink and config.Config), so it imports without the app, and the
real JobManager and Server provide exactly what those interfaces list."""
from __future__ import annotations

import ast
import inspect
import subprocess
import sys
from pathlib import Path

from server import connection_api
from server.app import Server
from server.config import Config
from server.manager import JobManager

ROOT = Path(__file__).resolve().parents[1]


def _members(proto: type) -> tuple[set[str], set[str]]:
    """(methods, attributes) a Protocol class declares."""
    methods = {n for n, v in vars(proto).items() if callable(v) and not n.startswith("_")}
    return methods, set(proto.__annotations__)


def _same_call(impl: object, proto: type, name: str) -> None:
    want, got = getattr(proto, name), getattr(impl, name)
    assert list(inspect.signature(got).parameters) == list(inspect.signature(want).parameters)[1:], name
    assert inspect.iscoroutinefunction(got) == inspect.iscoroutinefunction(want), name


def test_connection_imports_neither_the_app_nor_the_manager_class():
    tree = ast.parse((ROOT / "server" / "connection.py").read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            imported |= {node.module} if node.module else {a.name for a in node.names}
    assert "protocol" in imported and not imported & {"app", "manager"}, imported
    code = "import sys, server.connection; print('server.app' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0 and out.stdout.split() == ["False"], out.stdout + out.stderr


def test_job_manager_provides_exactly_the_jobs_api(tmp_path):
    manager = JobManager(tmp_path / "runs", ["cpu"], "server.bench:preview_flood")
    methods, attributes = _members(connection_api.JobsApi)
    assert {"get", "submit", "cancel", "subscribe", "artifact_path"} <= methods
    for name in sorted(methods):
        _same_call(manager, connection_api.JobsApi, name)
    for name in attributes:
        assert hasattr(manager, name), name
    assert manager.devices == ["cpu"] and manager.spool_dir.parent == tmp_path / "runs"


def test_server_provides_the_server_link(tmp_path):
    server = Server(Config(runs_dir=tmp_path / "runs", token="t"))
    methods, attributes = _members(connection_api.ServerLink)
    assert methods == {"request_stop", "connection_authenticated", "connection_closed"}
    assert attributes == {"version", "pid"}
    for name in methods:
        _same_call(server, connection_api.ServerLink, name)
    assert isinstance(server.version, str) and server.version and server.pid > 0
    class Conn:  # the server keeps only identity and a pre-auth mark on a connection
        pass

    conn = Conn()
    server.connections.add(conn)  # type: ignore[arg-type]
    server.unauthenticated += 1
    server.connection_closed(conn)  # type: ignore[arg-type]
    assert not server.connections and server.unauthenticated == 0


def test_queue_position_counts_from_the_next_job_to_start(tmp_path):
    manager = JobManager(tmp_path / "runs", ["cpu"], "server.bench:preview_flood")
    first, second, running = object(), object(), object()  # the queue compares jobs by identity only
    manager.queue.extend([first, second])  # type: ignore[list-item]
    assert [manager.queue_position(j) for j in (first, second, running)] == [0, 1, 0]  # type: ignore[arg-type]
