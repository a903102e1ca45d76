"""Shared set-up for the Blender add-on tests: enable it the way Blender does, isolate its files."""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ADDON = "blender_addon"
if str(ROOT) not in sys.path:  # the add-on is imported from the source tree as `blender_addon`
    sys.path.insert(0, str(ROOT))


def enable():
    import addon_utils
    mod = addon_utils.enable(ADDON, default_set=True, handle_error=_raise)
    assert mod is not None, "the add-on did not enable"
    return mod


def disable() -> None:
    import addon_utils
    addon_utils.disable(ADDON, default_set=True, handle_error=_raise)


def _raise(exc: BaseException) -> None:
    raise exc


@pytest.fixture
def addon(tmp_path, monkeypatch):
    """The enabled add-on with its user folder in tmp; disabled (engine stopped) afterwards."""
    import bpy
    monkeypatch.setenv("VSDREAM_USER_DIR", str(tmp_path / "user"))
    bpy.ops.wm.read_factory_settings(use_empty=True)
    mod = enable()
    from blender_addon.job_state import EngineView, JobView
    from blender_addon.session import SESSION
    SESSION.job, SESSION.engine_view = JobView(), EngineView()
    try:
        yield mod
    finally:
        disable()


def local_engine(context=None) -> None:
    """Point the preferences at this interpreter: the repo's .venv has the engine installed."""
    import bpy
    prefs = (context or bpy.context).preferences.addons[ADDON].preferences
    prefs.connection_mode = "LOCAL"
    prefs.engine_python = sys.executable
    prefs.device = "cpu"


def pump_until(predicate, timeout_s: float) -> bool:
    from blender_addon import pump
    return pump.run_until(predicate, timeout_s)


def write_finished_run(run: Path, spec: dict, artifacts: list[Path]) -> None:
    """A finished job's spec.json and events.jsonl (queued, started, one artifact per file, done), as
    a server would have left them; the job id is the folder's name."""
    events = [{"type": "queued"}, {"type": "started"}]
    events += [{"type": "artifact", "name": p.name, "path": str(p), "size": p.stat().st_size} for p in artifacts]
    events.append({"type": "done", "result": {}})
    (run / "spec.json").write_text(json.dumps(spec))
    (run / "events.jsonl").write_text("".join(json.dumps({**e, "seq": seq, "job_id": run.name, "time": 1.0}) + "\n"
                                              for seq, e in enumerate(events, start=1)))


@contextlib.contextmanager
def remote_server(runs: Path, token: str, log: Path, *extra: str) -> Iterator[dict]:
    """A real `--allow-remote` server on loopback over `runs`; yields its parsed ready line and stops it."""
    from blender_addon._protocol_import import protocol
    env = {**os.environ, "VSDREAM_TOKEN": token, "PYTHONPATH": str(ROOT)}
    with open(log, "wb") as err:
        server = subprocess.Popen([sys.executable, "-m", "server", "--port", "0", "--runs-dir", str(runs),
                                   "--allow-remote", "--device", "cpu", *extra], stdout=subprocess.PIPE, stderr=err,
                                  env=env, cwd=str(ROOT))
        try:
            yield protocol.parse_ready_line(server.stdout.readline())
        finally:
            server.terminate()
            server.wait(timeout=30)
            server.stdout.close()
