"""'Download weights': the engine's `models fetch --progress` against a loopback hub (fake_hub.py),
interrupted and resumed for real, and the add-on's reading of its lines into bytes / total / ETA.
Nothing here reaches the internet."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fake_hub import FakeHub, FakeRepo

from engine.fetch_report import PREFIX
from engine.priors.resumable import PART_SUFFIX, RemoteFile, bytes_present, free_bytes, storage_dir
from engine.priors.sd_builder import write_folder

REPO = "someone/tiny-sd"
UNET = "unet/diffusion_pytorch_model.safetensors"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return write_folder("tiny-sd", tmp_path_factory.mktemp("tiny") / "tiny-sd")


def _env(hub: FakeHub, home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE"))}
    env.update(HF_ENDPOINT=hub.url, HF_HOME=str(home), PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1", **extra)
    return env


def _fetch_cmd() -> list[str]:
    return [sys.executable, "-m", "engine.models_cli", "fetch", "--progress", REPO]


def _events(stdout: str) -> list[dict]:
    from blender_addon.weights_download import parse_line
    return [e for e in (parse_line(line) for line in stdout.splitlines()) if e is not None]


def _part(home: Path, data: bytes) -> Path:
    import hashlib
    return storage_dir(home / "hub", REPO) / "blobs" / (hashlib.sha256(data).hexdigest() + PART_SUFFIX)


def test_interrupted_fetch_continues_the_partial_file(tiny, tmp_path):
    pytest.importorskip("bpy")
    # a 24 MiB UNet file: huggingface_hub writes in 10 MiB chunks, so one lands before the link drops
    unet = os.urandom(24 << 20)
    home = tmp_path / "hf"
    with FakeHub() as hub:
        hub.repos[REPO] = FakeRepo.from_folder(tiny)
        hub.repos[REPO].files[UNET] = unet
        hub.stall[UNET] = 12 << 20  # the link drops after 12 MiB
        first = subprocess.Popen(_fetch_cmd(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                 env=_env(hub, home, HF_HUB_DOWNLOAD_TIMEOUT="120"))
        part = _part(home, unet)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not (part.is_file() and part.stat().st_size > 0):
            assert first.poll() is None, first.stdout.read()
            time.sleep(0.05)
        first.kill()  # the user stops it (or Blender quits) mid-file
        out1 = first.communicate()[0]
        kept = part.stat().st_size
        assert 0 < kept <= 12 << 20
        plan = next(e for e in _events(out1) if e["event"] == "plan")
        assert plan["total"] == sum(len(v) for v in hub.repos[REPO].files.values()) and plan["present"] == 0 and plan["need"] == plan["total"]
        assert plan["free"] > 0 and Path(plan["cache"]) == home / "hub"

        hub.stall.clear()
        hub.release.set()
        second = subprocess.run(_fetch_cmd(), capture_output=True, text=True, env=_env(hub, home), timeout=120)
    assert second.returncode == 0, second.stdout + second.stderr
    assert (UNET, kept) in hub.ranges  # continued from the partial file, not from byte 0
    events = _events(second.stdout)
    plan2 = next(e for e in events if e["event"] == "plan")
    assert plan2["present"] >= kept and plan2["need"] == plan2["total"] - plan2["present"]
    progress = [e["done"] for e in events if e["event"] == "progress"]
    assert progress == sorted(progress) and progress[-1] == plan2["total"]
    assert events[-1]["event"] == "done" and not part.exists()
    snap = next((home / "hub" / ("models--" + REPO.replace("/", "--")) / "snapshots").iterdir())
    assert (snap / UNET).read_bytes() == unet  # checksum-verified bytes, linked into the snapshot


def test_fetch_of_a_repo_that_is_not_diffusers_reports_an_error_event(tmp_path):
    pytest.importorskip("bpy")
    with FakeHub() as hub:
        hub.repos[REPO] = FakeRepo({"README.md": b"hello"})
        run = subprocess.run(_fetch_cmd(), capture_output=True, text=True, env=_env(hub, tmp_path / "hf"),
                             timeout=120)
    assert run.returncode == 1
    err = [e for e in _events(run.stdout) if e["event"] == "error"]
    assert err and "not a diffusers" in err[0]["message"] and err[0]["hint"]


def test_bytes_present_counts_finished_and_partial_files(tmp_path):
    storage = tmp_path / "models--a--b"
    (storage / "blobs").mkdir(parents=True)
    files = [RemoteFile("unet/w.safetensors", 100, "aa" * 32, "aa" * 32), RemoteFile("vae/w.safetensors", 50, "bb" * 32,
                                                                                        "bb" * 32),
             RemoteFile("unet/config.json", 10, "c" * 40), RemoteFile("x.bin", 7, "d" * 40, None)]
    (storage / "blobs" / ("aa" * 32)).write_bytes(b"x" * 100)
    (storage / "blobs" / ("bb" * 32 + PART_SUFFIX)).write_bytes(b"x" * 20)
    (storage / "blobs" / ("c" * 40 + ".1a2b3c4d.incomplete")).write_bytes(b"x" * 4)
    snap = storage / "snapshots" / "rev"
    snap.mkdir(parents=True)
    (snap / "x.bin").write_bytes(b"x" * 7)  # a copy in the snapshot (no-symlink caches)
    assert bytes_present(storage, files) == 100 + 20 + 4 + 7
    assert free_bytes(tmp_path / "not" / "yet" / "made") == shutil.disk_usage(tmp_path).free


def test_space_check_refuses_before_downloading():
    from engine.models_cli import space_problem
    assert space_problem(need=10, free=11, cache=Path("/c")) is None
    err = space_problem(need=3_000_000_000, free=1_000_000_000, cache=Path("/c"))
    assert "3.00 GB more, 1.00 GB free" in str(err) and "HF_HOME" in err.hint


def test_download_state_turns_events_into_bytes_total_eta():
    pytest.importorskip("bpy")
    from blender_addon.weights_download import DownloadState, human_time, parse_line
    s = DownloadState()
    s.start()
    s.apply(parse_line(PREFIX + ' {"event": "plan", "total": 4000000000, "present": 1000000000, "need": 3000000000,'
                       ' "free": 50000000000, "cache": "/c", "repos": ["a/b"]}'), now=0.0)
    assert s.lines()[0] == "Needs 3.00 GB (50.00 GB free in /c)" and s.eta_s() is None
    for t in range(1, 11):  # 10 MB/s
        s.apply({"event": "progress", "repo": "a/b", "done": 1_000_000_000 + t * 10_000_000, "total": 4_000_000_000},
                now=float(t))
    assert s.rate() == pytest.approx(10e6) and s.eta_s() == pytest.approx((4e9 - 1.1e9) / 10e6)
    assert s.lines()[1] == "1.10 GB / 4.00 GB (28%), 10.00 MB/s, ETA 4m50s"
    assert human_time(3 * 3600 + 120) == "3h02m" and human_time(9) == "9s"
    for t in range(11, 40):  # the link stalls: the speed over the recent window falls, the ETA grows
        s.apply({"event": "progress", "repo": "a/b", "done": 1_100_000_000, "total": 4_000_000_000}, now=float(t))
    assert s.rate() == 0.0 and s.eta_s() is None
    s.apply({"event": "error", "message": "network down", "hint": "run it again"}, now=41.0)
    assert s.ok is False and s.lines()[-1] == "Failed: network down — run it again"
    assert parse_line("fetching a/b …") is None and parse_line(PREFIX + " {not json") is None


def test_fetch_thread_reports_a_missing_python(tmp_path):
    pytest.importorskip("bpy")
    import queue

    from blender_addon.weights_download import Fetch, engine_env, fetch_command
    box: queue.Queue = queue.Queue()
    Fetch(fetch_command(str(tmp_path / "no-python")), engine_env(), lambda k, d: box.put((k, d))).start().thread.join(10)
    kind, (ok, message) = box.get_nowait()
    assert kind == "weights_done" and not ok and "could not run" in message


def test_check_engine_lists_the_cached_models(tiny, tmp_path, monkeypatch):
    """Check engine's probe, run in this Python against a hub cache holding the default model."""
    sys.path.insert(0, str(ROOT / "blender_addon"))
    try:
        import engine_check  # stdlib only: the add-on's module
    finally:
        sys.path.pop(0)
    from engine.priors.weights import DEFAULT_MODEL, DEFAULT_PHI_MODEL
    storage = storage_dir(tmp_path / "hf" / "hub", DEFAULT_MODEL)
    shutil.copytree(tiny, storage / "snapshots" / "0123abcd")
    (storage / "refs").mkdir()
    (storage / "refs" / "main").write_text("0123abcd")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    info = engine_check.run_check(sys.executable, str(ROOT), timeout_s=300)
    report = engine_check.format_report(info).splitlines()
    assert f"Model {DEFAULT_MODEL} (pretrained score (default)): present (fp32, all parts)" in report, report
    assert any(line.startswith(f"Model {DEFAULT_PHI_MODEL} (ε_φ base (default)): missing") for line in report)
    assert "Stable Diffusion weights: found" in report and info["mps"] is False


def test_download_weights_from_the_preferences_stop_and_continue(addon, tiny, tmp_path, monkeypatch):  # noqa: F811
    """The real add-on in bpy: Download weights returns at once, the pump shows bytes / total, Stop
    kills the fetch mid-file, and the next Download weights continues that file."""
    pytest.importorskip("bpy")
    import bpy
    from addon_helpers import local_engine, pump_until

    from blender_addon import weights_download
    from engine.priors.weights import DEFAULT_MODEL, DEFAULT_PHI_MODEL
    local_engine()
    for name in [k for k in os.environ if k.startswith("HF_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    big = os.urandom(24 << 20)
    state = weights_download.STATE
    with FakeHub() as hub:
        for repo in (DEFAULT_MODEL, DEFAULT_PHI_MODEL):
            hub.repos[repo] = FakeRepo.from_folder(tiny)
        hub.repos[DEFAULT_MODEL].files[UNET] = big
        hub.stall[UNET] = 12 << 20
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        t0 = time.perf_counter()
        assert bpy.ops.vsdream.download_weights() == {"FINISHED"}
        assert time.perf_counter() - t0 < 0.05  # never blocks Blender
        assert not bpy.ops.vsdream.download_weights.poll() and bpy.ops.vsdream.stop_weights.poll()
        assert pump_until(lambda: state.done >= 10 << 20, 90), (state, state.lines())
        assert state.lines()[0].startswith("Needs ") and " / " in state.lines()[1] and state.need == state.total
        assert bpy.ops.vsdream.stop_weights() == {"FINISHED"}
        assert pump_until(lambda: not state.running, 30)
        assert state.ok is False and "continues where it stopped" in state.result
        hub.stall.clear()
        hub.release.set()
        assert bpy.ops.vsdream.download_weights() == {"FINISHED"}
        assert pump_until(lambda: not state.running, 120), state.lines()
    assert state.ok, state.lines()
    assert (UNET, 10 << 20) in hub.ranges and state.lines()[-1] == "Done: weights ready"
    assert state.done == state.total and state.total >= len(big)
