"""`make gpu-check`'s CPU-side logic: its quick refusal without CUDA, its child runner, parsing and summary.

The check itself needs a GPU (and is never part of `make test`); these keep its plumbing honest here.
"""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def _tool():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "tools" / "gpu_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_without_cuda_it_stops_at_once_and_says_why():
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "gpu_check.py")], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    assert "no CUDA device: gpu-check needs a GPU" in proc.stdout


def test_stage1_settings_cover_each_importable_accelerator_and_the_no_build_path():
    gc = _tool()
    both = gc.stage1_configs({"tcnn": "ok", "nerfacc": "ok", "nvdiffrast": "not importable"})
    assert [a for _, a in both] == ["auto", "tcnn", "nerfacc", "none"]
    one = gc.stage1_configs({"tcnn": "not importable", "nerfacc": "ok"})
    assert [a for _, a in one] == ["auto", "none"] and "nerfacc" in one[0][0]
    assert gc.stage1_configs({"tcnn": "not importable", "nerfacc": "probe failed"}) == [("no-build (pure torch)", "none")]


def test_child_runner_limits_time_and_reads_the_last_json_line():
    gc = _tool()
    code, text, _ = gc.run_child(["-c", "print('noise'); print('{\"a\": 1}'); print('{broken')"], 30)
    assert code == 0 and gc.last_json(text) == {"a": 1}
    code, text, secs = gc.run_child(["-c", "import time; print('started', flush=True); time.sleep(30)"], 6)
    assert code is None and "timed out after 6 s" in text and secs < 20
    assert gc.run_child(["-c", "pass"], 1)[0] is None  # no time left: not started
    env = gc.child_env("none")
    assert env["VSDREAM_ACCEL"] == "none" and env["HF_HUB_OFFLINE"] == "1" and str(ROOT) in env["PYTHONPATH"]


def test_cuda_tests_are_found_by_marker_and_their_summary_parsed():
    gc = _tool()
    files = gc.cuda_test_files()
    assert {"tests/test_renderer.py", "tests/test_field.py"} <= set(files)
    assert gc.pytest_summary("..s\n===== 3 passed, 1 skipped in 4.20s =====\n") == "3 passed, 1 skipped"
    assert gc.pytest_summary("garbage") == "no summary (see log)"


def test_summary_prints_one_table_with_failures_named(tmp_path, capsys, monkeypatch):
    gc = _tool()
    monkeypatch.setattr(gc, "ROOT", tmp_path)
    report = {
        "device": "NVIDIA H100", "torch": "2.11.0", "cuda": "13.0", "python": "3.12.3", "nvcc": None,
        "versions": {"torch": "2.11.0", "diffusers": "not importable"}, "wheels": ["none"],
        "accelerators": {"tcnn": "not importable", "nerfacc": "ok"},
        "cuda_tests": {"files": ["tests/test_renderer.py"], "exit": 0, "summary": "3 passed"},
        "bench_step": {"exit": 1, "error": "ModuleNotFoundError: diffusers"},
        "stage1": [{"label": "no-build (pure torch)", "accel": "none", "exit": 0, "ok": True, "hash_grid": "torch",
                    "ray_marching": "batched-torch", "steps": 100, "ms_per_iter_median": 812.5, "total_s": 81.0,
                    "peak_memory_gb": 9.5},
                   {"label": "all importable (nerfacc)", "accel": "auto", "exit": None, "ok": False,
                    "error": "timed out"}]}
    gc.print_summary(report, tmp_path / "out" / "gpu_check.log")
    out = capsys.readouterr().out
    assert "nvcc absent" in out and "tcnn: not importable" in out
    assert "bench step: FAILED (exit 1): ModuleNotFoundError: diffusers" in out
    assert "stage 1 (100 steps)" in out and "812.5" in out and "FAILED (exit None): timed out" in out
