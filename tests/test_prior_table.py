"""One prior table (engine/priors/registry.py) read by spec validation, the CLI, engine check and load_prior."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from engine.presets import make_spec
from engine.priors.registry import PRIORS, describe_priors, find_prior, load_prior, prior_syntax
from engine.spec import JobSpec, SpecError

ROOT = Path(__file__).resolve().parents[1]


def _addon_prior_values() -> list[str]:
    """The add-on's prior list, read from its source (Blender is not needed to read a literal)."""
    tree = ast.parse((ROOT / "blender_addon" / "properties.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "PRIORS":
            return [item[0] for item in ast.literal_eval(node.value)]
    raise AssertionError("PRIORS not found in blender_addon/properties.py")


@pytest.mark.parametrize("value, name", [("sd", "sd"), ("sd:/models/my-sd", "sd"), ("analytic:marker", "analytic"),
                                         ("analytic:mesh=/a b/c.glb", "analytic"), ("tiny-sd", "tiny-sd"),
                                         ("sd21-random", "sd21-random")])
def test_table_finds_each_written_form(value, name):
    assert find_prior(value).name == name


@pytest.mark.parametrize("value", ["analytic", "analytic:", "sd:", "tiny", "SD", "", None, 3, ["sd"]])
def test_table_refuses_what_no_row_accepts_and_validation_says_so(value):
    assert find_prior(value) is None
    with pytest.raises(SpecError) as info:
        JobSpec(prior=value).validate()
    problem = next(p for p in info.value.problems if p.field == "prior")
    assert isinstance(value, str) is False or prior_syntax() in problem.allowed


def test_needs_prompt_comes_from_the_table():
    needing = [e.name for e in PRIORS if e.needs_prompt]
    assert needing == ["sd", "mini-sd"]  # mini-SD draws its captions (models/mini-sd)
    with pytest.raises(SpecError, match="prompt"):
        JobSpec(prior="sd:/somewhere").validate()
    JobSpec(prior="tiny-sd").validate()  # random weights: a prompt is optional


def test_engine_check_reports_the_table_and_the_addon_list_is_in_it():
    sys.path.insert(0, str(ROOT / "blender_addon"))
    try:
        import engine_check  # stdlib only: the add-on's module, run against this Python
    finally:
        sys.path.pop(0)
    info = engine_check.run_check(sys.executable, str(ROOT), timeout_s=300)
    assert "error" not in info, info
    assert info["priors"] == describe_priors()
    report = engine_check.format_report(info)
    for entry in PRIORS:
        assert f"Prior {entry.name}:" in report
    for value in _addon_prior_values():
        assert engine_check.engine_knows_prior(info, value) is True, value
        assert find_prior(value) is not None, value
    assert engine_check.engine_knows_prior(info, "no-such-prior") is False
    assert engine_check.engine_knows_prior({}, "sd") is None


def test_cli_help_lists_the_table():
    out = subprocess.run([sys.executable, "-m", "engine.cli", "run", "--help"], capture_output=True, text=True,
                         timeout=120, cwd=ROOT).stdout
    for entry in PRIORS:
        assert entry.name in out


def test_load_prior_builds_from_the_row_and_native_size_matches():
    analytic = load_prior(make_spec("cpu-smoke"), torch.device("cpu"))
    assert type(analytic).__name__ == "AnalyticPrior" and analytic.native_size is None
    assert find_prior("analytic:marker").native_size is None
    rendered = torch.rand(1, 24, 24, 3)
    assert analytic.encode(rendered).shape == (1, 3, 24, 24)  # pixel prior: judged at the render's size


def test_frozen_sd_precision_is_fp16_on_cuda_unless_asked():
    """fp16, not bf16, for the frozen UNets/VAE on CUDA (CFG amplifies bf16's rounding); the CPU
    always computes in fp32. Decided without touching a GPU, so it runs here."""
    from engine.priors.sd import default_dtype
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert default_dtype(cuda) == default_dtype(cuda, "auto") == default_dtype(cuda, "fp16") == torch.float16
    assert default_dtype(cuda, "fp32") == torch.float32
    assert all(default_dtype(cpu, p) == torch.float32 for p in ("auto", "fp16", "bf16", "fp32"))
    assert JobSpec().precision == "auto"
    with pytest.raises(SpecError, match="precision"):
        JobSpec(precision="fp8").validate()
