"""Engine process housekeeping: stale engines from a crash, the set-up stream, the handshake."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

bpy = pytest.importorskip("bpy")

from blender_addon import engine_process, engine_setup, os_process  # noqa: E402

_FAKE_ENGINE = "import time; time.sleep(120)"


def _fake_engine(tmp_path):
    """A process whose command line looks like our engine server's."""
    return subprocess.Popen([sys.executable, "-c", _FAKE_ENGINE, "-m", "server", "--runs-dir", str(tmp_path)])


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc command lines (Linux)")
def test_stale_engine_of_a_dead_blender_is_stopped(tmp_path):
    proc = _fake_engine(tmp_path)
    try:
        pid_file = tmp_path / "engine.pid"
        pid_file.write_text(json.dumps({"pid": proc.pid, "parent": _dead_pid()}))
        assert engine_process.stop_stale(pid_file) == proc.pid
        assert proc.wait(timeout=10) is not None and not pid_file.exists()
    finally:
        proc.kill()


def test_engine_of_a_live_blender_or_a_stranger_is_left_alone(tmp_path):
    proc = _fake_engine(tmp_path)
    stranger = subprocess.Popen([sys.executable, "-c", _FAKE_ENGINE])
    try:
        pid_file = tmp_path / "engine.pid"
        # the Blender that started it is still running (our parent stands in for it)
        pid_file.write_text(json.dumps({"pid": proc.pid, "parent": os.getppid()}))
        assert engine_process.stop_stale(pid_file) == 0 and proc.poll() is None
        if sys.platform.startswith("linux"):  # a reused pid that is not an engine server
            pid_file.write_text(json.dumps({"pid": stranger.pid, "parent": _dead_pid()}))
            assert engine_process.stop_stale(pid_file) == 0 and stranger.poll() is None
        pid_file.write_text("not json")
        assert engine_process.stop_stale(pid_file) == 0
    finally:
        proc.kill()
        stranger.kill()


def test_handshake_timeout_and_early_exit_name_the_log(tmp_path):
    # an "engine" that exits at once with a message on stderr
    eng = engine_process.EngineProcess(sys.executable, tmp_path / "runs", tmp_path / "engine.log",
                                       tmp_path / "engine.pid")
    eng.command = lambda: [sys.executable, "-c", "import sys; print('boom: no torch', file=sys.stderr); sys.exit(3)"]
    eng.launch()
    with pytest.raises(engine_process.EngineStartError, match=r"exited \(status 3\).*engine.log") as exc:
        eng.wait_ready(30)
    assert "boom: no torch" in str(exc.value)
    eng.stop()
    slow = engine_process.EngineProcess(sys.executable, tmp_path / "runs", tmp_path / "engine2.log",
                                        tmp_path / "engine.pid")
    slow.command = lambda: [sys.executable, "-c", "import time; print('loading', flush=True); time.sleep(60)"]
    slow.launch()
    t0 = time.monotonic()
    with pytest.raises(engine_process.EngineStartError, match="did not report ready within 1 s"):
        slow.wait_ready(1.0)
    assert time.monotonic() - t0 < 10 and not slow.running()  # it was stopped, not left behind
    assert "loading" in (tmp_path / "engine2.log").read_text()


def test_set_up_streams_progress_into_the_preferences(addon, tmp_path):
    from blender_addon import pump
    from blender_addon.paths import venv_python
    from blender_addon.session import SESSION
    venv = tmp_path / "venv"
    py = venv_python(venv)
    script = "print('Collecting torch'); print('Downloading 10%\\r 55%\\r100%', flush=True)"
    rt = bpy.context.window_manager.vsdream
    rt.setup_running = True
    engine_setup.run_setup([[sys.executable, "-m", "venv", "--without-pip", str(venv)],
                            [str(py), "-c", script]], SESSION.inbox).join(60)
    pump.drain()
    log = rt.setup_log.splitlines()
    assert "Collecting torch" in log and "100%" in log and " 55%" in log  # pip's \r progress, line by line
    assert log[-1] == "OK: engine environment ready" and not rt.setup_running
    rt.setup_running = True
    engine_setup.run_setup([[str(py), "-c", "import sys; sys.exit(4)"]], SESSION.inbox).join(60)
    pump.drain()
    assert rt.setup_log.splitlines()[-1].startswith("FAILED:") and "status 4" in rt.setup_log
    assert not rt.setup_running


def test_set_up_commands_use_the_bundled_requirements(tmp_path):
    backend = tmp_path / "backend"
    (backend / "engine").mkdir(parents=True)
    (backend / "requirements.txt").write_text("torch>=2.4\n")
    assert engine_setup.backend_source(backend) == backend
    cmds = engine_setup.setup_commands("/usr/bin/python3", tmp_path / "venv", backend, tmp_path / "venv/bin/python")
    assert cmds[0] == ["/usr/bin/python3", "-m", "venv", str(tmp_path / "venv")]
    assert cmds[2][-2:] == ["-r", str(backend / "requirements.txt")]
    assert cmds[3][-2:] == ["--no-deps", str(backend)]
    assert os_process.pid_alive(os.getpid()) and not os_process.pid_alive(_dead_pid())
