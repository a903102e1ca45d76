"""Set up engine: pinned versions, the torch step, progress while pip is quiet, no setuptools noise,
and a closing summary. Real subprocesses throughout; the full install is `make setup-check`."""
from __future__ import annotations

import queue
import sys
from pathlib import Path

import pytest

pytest.importorskip("bpy")  # blender_addon/__init__ imports bpy

import build_addon  # noqa: E402
from blender_addon import engine_setup, torch_choice  # noqa: E402
from blender_addon.torch_choice import Hardware  # noqa: E402

SETUPTOOLS_BANNER = """Collecting vsdream
  /tmp/pip-build-env-x/overlay/lib/python3.11/site-packages/setuptools/config/_apply_pyprojecttoml.py:82: SetuptoolsDeprecationWarning: `project.license` as a TOML table is deprecated
  !!

          ********************************************************************************
          Please use a simple string containing a SPDX expression for `project.license`.

          By 2026-Feb-18, you need to update your project and remove deprecated calls
          or your builds will no longer be supported.
          ********************************************************************************

  !!
    corresp(dist, value, root_dir)
  Preparing metadata (pyproject.toml): started
  /tmp/pip-build-env-6r/overlay/lib/python3.11/site-packages/setuptools/config/_apply_pyprojecttoml.py:82: BuildBackendWarning: `project.license` as a TOML table is deprecated
Building wheels for collected packages: vsdream
Successfully installed vsdream-0.1.0"""


def test_constraints_pin_what_the_tests_ran():
    from importlib import metadata
    pins = dict(line.split("==") for line in build_addon.constraints())
    assert pins["torch"] == metadata.version("torch").split("+")[0] == "2.13.0"  # no '+cpu': CUDA wheels match too
    assert pins["numpy"].startswith("1.26.")
    assert pins["diffusers"] == metadata.version("diffusers")
    assert "huggingface-hub" in pins and "safetensors" in pins  # pulled in by the requirements
    assert not {"bpy", "pytest", "hypothesis", "ruff"} & set(pins)  # test tools are not engine requirements


def test_staged_bundle_carries_the_constraints(tmp_path):
    dest = build_addon.stage(tmp_path / "vsdream")
    lines = (dest / "backend" / "constraints.txt").read_text(encoding="utf-8").split()
    assert lines == build_addon.constraints()
    assert engine_setup.torch_requirement(dest / "backend" / "constraints.txt") == "torch==2.13.0"
    assert engine_setup.torch_requirement(tmp_path / "none.txt") == "torch"


def test_commands_install_the_chosen_torch_first_then_the_rest_pinned(tmp_path):
    backend = tmp_path / "backend"
    (backend / "engine").mkdir(parents=True)
    (backend / "requirements.txt").write_text("torch>=2.4\nnumpy>=1.26\n")
    (backend / "constraints.txt").write_text("numpy==1.26.4\ntorch==2.13.0\n")
    choice = torch_choice.choose(Hardware("windows", "AMD64", ("NVIDIA GeForce RTX 4090",), (12, 8)))
    py = tmp_path / "venv" / "python"
    cmds = engine_setup.setup_commands("base", tmp_path / "venv", backend, py, choice)
    pip = [str(py), "-m", "pip", "install"]
    cons = ["-c", str(backend / "constraints.txt")]
    assert cmds[2] == pip + ["torch==2.13.0", "--index-url", "https://download.pytorch.org/whl/cu128",
                             "--extra-index-url", torch_choice.PYPI] + cons
    assert cmds[3] == pip + cons + ["-r", str(backend / "requirements.txt")]
    assert cmds[4] == pip + ["--no-deps", str(backend)]
    mac = engine_setup.setup_commands("base", tmp_path / "venv", backend, py, torch_choice.choose(Hardware("darwin",
                                                                                                          "arm64")))
    assert mac[2] == pip + ["torch==2.13.0"] + cons  # PyPI's macOS wheel


def test_noise_filter_drops_setuptools_banners_only():
    noise = engine_setup.NoiseFilter()
    kept = [line for line in SETUPTOOLS_BANNER.splitlines() if noise.keep(line)]
    assert kept == ["Collecting vsdream", "  Preparing metadata (pyproject.toml): started",
                    "Building wheels for collected packages: vsdream",
                    "Successfully installed vsdream-0.1.0"]
    assert noise.hidden == 10  # two warnings, 7 box lines, the source line
    assert engine_setup.NoiseFilter().keep("ERROR: No matching distribution found for torch==2.13.0")


def _drain(box: queue.Queue) -> list:
    out = []
    while not box.empty():
        out.append(box.get_nowait())
    return out


def test_quiet_pip_gets_a_heartbeat_with_the_environment_size(tmp_path):
    """A command silent for 1.6 s while 'installing' 2 MB gets heartbeat lines naming elapsed time and size."""
    env = tmp_path / "env"
    env.mkdir()
    script = ("import time, pathlib\n"
              f"p = pathlib.Path({str(env)!r})\n"
              "print('Collecting torch', flush=True)\n"
              "time.sleep(0.8); (p / 'a.bin').write_bytes(b'x' * 2_000_000); time.sleep(0.8)\n"
              "print(SETUP_NOISE)\n".replace("SETUP_NOISE", repr(SETUPTOOLS_BANNER)))
    box: queue.Queue = queue.Queue()
    engine_setup.run_setup([[sys.executable, "-c", script]], box, venv=env, heartbeat_s=0.3).join(60)
    items = _drain(box)
    lines = [d for k, d in items if k == "setup_line"]
    beats = [line for line in lines if line.startswith("… still working")]
    assert len(beats) >= 2 and any("environment 2 MB" in b for b in beats), lines
    assert "Collecting torch" in lines and "Successfully installed vsdream-0.1.0" in lines
    assert not any("Deprecat" in line or line.strip() == "!!" for line in lines if not line.startswith("$ "))
    assert "(10 lines of setuptools deprecation warnings left out)" in lines
    assert items[-1] == ("setup_done", (True, "engine environment ready"))


def test_closing_summary_names_build_device_and_size(tmp_path):
    """This very interpreter stands in for the new environment: a CPU torch, so 'device cpu'."""
    venv = tmp_path / "venv"
    (venv / "lib").mkdir(parents=True)
    (venv / "lib" / "blob").write_bytes(b"x" * 3_000_000)
    hw = Hardware("linux", "x86_64")
    ok, text = engine_setup.summarize(Path(sys.executable), venv, torch_choice.choose(hw), hw, 42.4)
    assert ok and text.startswith("engine environment ready: torch 2.13.0")
    assert "(no CUDA), device cpu, environment 3 MB, 42 s; hardware: no NVIDIA GPU" in text and "WARNING" not in text
    cuda = torch_choice.choose(Hardware("linux", "x86_64", ("RTX",), (12, 8)))
    assert "WARNING: cu128 was chosen" in engine_setup.summarize(Path(sys.executable), venv, cuda)[1]
    bad = engine_setup.summarize(tmp_path / "no-python", venv)
    assert not bad[0] and "torch does not import" in bad[1]


def test_folder_size_counts_nested_files(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "f").write_bytes(b"x" * 1234)
    (tmp_path / "g").write_bytes(b"x" * 10)
    assert engine_setup.folder_size(tmp_path) == 1244
    assert engine_setup.folder_size(tmp_path / "missing") == 0
