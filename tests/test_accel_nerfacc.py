"""nerfacc's first-use kernel build is announced before it starts, not run silently inside step 1."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine import accel

pytestmark = pytest.mark.skipif(os.name == "nt", reason="the stand-in nvcc below is a POSIX shell script")

PROBE = ("import json; from engine import accel; msgs = []; pending = accel.nerfacc_build_pending(); "
         "ok = accel.nerfacc_kernels(msgs.append); print(json.dumps([pending, ok, msgs]))")


def _machine_with_nvcc(tmp_path: Path) -> dict[str, str]:
    """An environment whose PATH has an `nvcc` (and nothing else: no ninja, so the build fails fast)
    and an empty torch extension folder: what a first run on an artist's machine with a CUDA toolkit sees."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    nvcc = bin_dir / "nvcc"
    nvcc.write_text("#!/bin/sh\nexit 0\n")
    nvcc.chmod(0o755)
    return {**os.environ, "PATH": str(bin_dir), "TORCH_EXTENSIONS_DIR": str(tmp_path / "ext")}


def test_a_pending_nerfacc_build_is_announced_before_it_runs(tmp_path):
    env = _machine_with_nvcc(tmp_path)
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=300,
                         cwd=Path(__file__).resolve().parents[1])
    pending, ok, msgs = json.loads(out.stdout.strip().splitlines()[-1])
    assert pending and not ok
    assert msgs[0] == accel.NERFACC_BUILD_MESSAGE and "minutes" in msgs[0]
    assert "pure-PyTorch" in msgs[1]  # and what happens when the build fails


def test_no_build_is_announced_when_one_exists_or_there_is_no_nvcc(tmp_path, monkeypatch):
    env = _machine_with_nvcc(tmp_path)
    monkeypatch.setenv("PATH", env["PATH"])
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", env["TORCH_EXTENSIONS_DIR"])
    assert accel.nerfacc_build_pending()
    from torch.utils.cpp_extension import _get_build_directory
    (Path(_get_build_directory("nerfacc_cuda", verbose=False)) / "nerfacc_cuda.so").write_bytes(b"built before")
    assert not accel.nerfacc_build_pending()  # nerfacc loads the earlier build: nothing to announce
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert not accel.nerfacc_build_pending()  # no CUDA toolkit: nerfacc never builds


def test_a_cpu_job_neither_loads_nor_announces_nerfacc():
    msgs: list[str] = []
    assert accel.load_nerfacc("cpu", msgs.append) is False and msgs == []
