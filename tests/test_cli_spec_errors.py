"""The real `vsdream` CLI turns every spec, --set and run-folder problem into a message and exit 2.

Issue 14 (defect 3): `--set device=null`, `--set prompt=null` and `--resume` of a missing folder
printed tracebacks. Each case runs `python -m engine.cli` as a subprocess and checks the exit status,
that stderr names the field and what is allowed, and that no traceback and no run folder appear.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def vsdream(*args, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], capture_output=True, timeout=120,
                          cwd=cwd or ROOT, env=env)


def assert_usage_error(proc: subprocess.CompletedProcess, *names: str) -> str:
    err = proc.stderr.decode("utf-8", "replace")
    assert "Traceback" not in err, err
    assert proc.returncode == 2, f"exit status {proc.returncode}, stderr:\n{err}"
    for name in names:
        assert name in err, f"{name!r} not named in:\n{err}"
    return err


@pytest.mark.parametrize("setting,field,words", [
    ("device=null", "device = None", "'cuda:N'"),
    ("prompt=null", "prompt = None", "a string"),
    ('nerf.enabled="no"', "nerf.enabled = 'no'", "true or false"),
    ("nerf.lambda_sparsity=x", "nerf.lambda_sparsity = 'x'", "a number"),
    ("camera.front_threshold_deg=[1]", "camera.front_threshold_deg", "a number"),
    ("export.enabled=0", "export.enabled = 0", "true or false"),
    ("output_dir=7", "output_dir = 7", "null or a string"),
    ("nerf.steps=NaN", "nerf.steps = nan", "an integer"),
    ("colour=red", "colour", "not a known field"),
])
def test_run_with_a_bad_set_value_names_the_field(tmp_path, setting, field, words):
    out = tmp_path / "run"
    proc = vsdream("run", "--out", str(out), "--set", setting)
    assert_usage_error(proc, field, words)
    assert not out.exists(), "a refused job must leave no run folder behind"


@pytest.mark.parametrize("setting", ["nerf.steps", "=3", "nerf..steps=3"])
def test_malformed_set_is_a_usage_error(tmp_path, setting):
    assert_usage_error(vsdream("run", "--out", str(tmp_path / "r"), "--set", setting), "--set", "KEY=VALUE")


def test_a_section_set_twice_is_a_usage_error(tmp_path):
    proc = vsdream("run", "--out", str(tmp_path / "r"), "--set", "nerf=5", "--set", "nerf.steps=3")
    assert_usage_error(proc, "nerf.steps=3", "not both")


def test_resume_of_a_missing_folder(tmp_path):
    missing = tmp_path / "no-such-run"
    assert_usage_error(vsdream("run", "--resume", str(missing)), "--resume", str(missing), "no such folder")


def test_resume_of_a_folder_without_spec(tmp_path):
    assert_usage_error(vsdream("run", "--resume", str(tmp_path)), "--resume", "spec.json")


@pytest.mark.parametrize("content,names", [
    (b"{not json", ["<json>", "valid JSON"]),
    (b"\xff\xfe{}", ["spec.json", "UTF-8"]),
    (b'{"prompt": 3, "nerf": {"lambda_sparsity": "x"}}', ["prompt = 3", "nerf.lambda_sparsity = 'x'"]),
    (b'{"device": null}', ["device = None"]),
])
def test_resume_and_export_of_an_unreadable_spec(tmp_path, content, names):
    (tmp_path / "spec.json").write_bytes(content)
    assert_usage_error(vsdream("run", "--resume", str(tmp_path)), *names)
    assert_usage_error(vsdream("export", str(tmp_path)), *names)


def test_spec_json_that_is_a_folder(tmp_path):
    (tmp_path / "spec.json").mkdir()
    assert_usage_error(vsdream("run", "--resume", str(tmp_path)), "--resume", "spec.json")


def test_export_of_a_missing_folder(tmp_path):
    assert_usage_error(vsdream("export", str(tmp_path / "gone")), "RUN_DIR", "no such folder")


def test_unknown_preset(tmp_path):
    assert_usage_error(vsdream("run", "--out", str(tmp_path / "r"), "--preset", "nope"), "--preset", "nope")


def test_retexture_with_a_null_device(tmp_path):
    proc = vsdream("retexture", str(tmp_path / "m.glb"), "--prompt", "owl", "--out", str(tmp_path / "r"),
                   "--set", "device=null")
    assert_usage_error(proc, "device = None")


@pytest.mark.skipif(os.name == "nt", reason="argv bytes that are not UTF-8 exist on POSIX only")
def test_a_prompt_that_is_not_utf8_names_the_prompt(tmp_path):
    # Python turns undecodable argv bytes into lone surrogates; they must not reach spec.json
    proc = subprocess.run([sys.executable, "-m", "engine.cli", "run", "--out", str(tmp_path / "r"),
                           "--prompt", b"owl \xff"], capture_output=True, timeout=120, cwd=ROOT,
                          env={**os.environ, "PYTHONIOENCODING": "utf-8", "LC_ALL": "C.UTF-8"})
    assert_usage_error(proc, "prompt", "UTF-8")
    assert not (tmp_path / "r").exists()
