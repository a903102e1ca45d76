"""Device choice and precision rules, Apple's MPS included (pure functions: no Mac needed to test them)."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest
import torch

from engine.devices import pick_device, precision_for


@pytest.mark.parametrize("cuda,mps,expected", [(True, True, "cuda"), (True, False, "cuda"), (False, True, "mps"),
                                               (False, False, "cpu")])
def test_auto_prefers_cuda_then_mps_then_cpu(cuda, mps, expected):
    assert pick_device("auto", cuda, mps) == expected


def test_explicit_devices_and_errors():
    assert pick_device("mps", False, True) == "mps"
    assert pick_device("cuda:1", True, False, cuda_count=2) == "cuda:1"
    assert pick_device("cuda:3", True, False) == "cuda:3"  # count unknown: any index
    assert pick_device("cpu", True, True) == "cpu"
    with pytest.raises(ValueError, match="Apple Silicon"):
        pick_device("mps", True, False)
    with pytest.raises(ValueError, match="use auto, cpu"):
        pick_device("rocm", True, True)
    for bad in ("cpu:999", "mps:1", "cuda:x"):
        with pytest.raises(ValueError, match="use auto, cpu"):
            pick_device(bad, True, True)


@pytest.mark.parametrize("name,cuda_ok,count,says", [
    ("cuda", False, 0, "sees no CUDA GPU"),      # was: AssertionError "Torch not compiled with CUDA enabled"
    ("cuda:0", False, 0, "sees no CUDA GPU"),
    ("cuda:7", True, 2, "has 2 CUDA GPUs (cuda:0 … cuda:1)"),
    ("cuda:1", True, 1, "has 1 CUDA GPU (cuda:0)"),
])
def test_a_missing_cuda_device_is_the_specs_problem_said_before_any_work(name, cuda_ok, count, says):
    from engine.devices import DeviceUnavailable
    from engine.errors import error_code
    with pytest.raises(DeviceUnavailable, match=re.escape(says)) as info:
        pick_device(name, cuda_ok, False, cuda_count=count)
    assert error_code(info.value)[0] == "invalid_spec" and "auto" in str(info.value)


def test_probe_devices_agrees_with_this_torch():
    from engine.devices import probe_devices
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    assert probe_devices()[0] == count


@pytest.mark.parametrize("device,precision,bf16_ok,expected", [
    ("cuda", "auto", True, "fp16"), ("cuda", "fp16", False, "fp16"), ("cuda", "bf16", True, "bf16"),
    ("cuda", "fp32", False, "fp32"),
    ("mps", "auto", False, "fp16"), ("mps", "fp16", False, "fp16"), ("mps", "fp32", False, "fp32"),
    ("mps", "bf16", False, "fp32"), ("mps", "bf16", True, "fp32"),  # bf16 → fp32 on Apple GPUs
    ("cpu", "auto", False, "fp32"), ("cpu", "fp16", True, "fp32"), ("cpu", "bf16", True, "fp32"),
])
def test_precision_rules(device, precision, bf16_ok, expected):
    assert precision_for(device, precision, bf16_ok) == expected


def test_precision_errors_name_the_fix():
    with pytest.raises(ValueError, match="use 'fp16'"):
        precision_for("cuda", "bf16", bf16_ok=False)
    with pytest.raises(ValueError, match="auto, fp16, bf16, fp32"):
        precision_for("mps", "fp8")


def test_sd_dtype_follows_the_rules_on_mps_and_cpu():
    from engine.priors.sd import default_dtype
    assert default_dtype(torch.device("mps")) == torch.float16
    assert default_dtype(torch.device("mps"), "bf16") == torch.float32
    assert default_dtype(torch.device("cpu"), "fp16") == torch.float32


def test_resolve_device_on_this_machine():
    from engine.context import mps_available, resolve_device
    expected = "cuda" if torch.cuda.is_available() else "mps" if mps_available() else "cpu"
    assert resolve_device("auto").type == expected


def test_mps_fallback_is_set_before_torch_loads():
    code = ("import sys, os, engine; print('torch' in sys.modules, os.environ.get('PYTORCH_ENABLE_MPS_FALLBACK'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={k: v for k, v in __import__("os").environ.items() if k != "PYTORCH_ENABLE_MPS_FALLBACK"})
    assert out.stdout.split() == ["False", "1"]


def test_a_cuda_n_device_is_pinned_and_other_devices_are_left_alone():
    """CPU twin of test_cuda_worker_device_is_pinned: which device strings pin which ordinal."""
    from engine.devices import cuda_index, pin_cuda_device
    assert [cuda_index(d) for d in ("cuda:1", "cuda:0", "cuda:12", "cuda", "cpu", "mps", "auto")] == \
        [1, 0, 12, None, None, None, None]
    for name in ("cpu", "mps", "auto", "cuda"):  # nothing to pin: torch.cuda is not touched (no CUDA here)
        assert pin_cuda_device(name) is None
    if not torch.cuda.is_available():  # 'cuda:1' does reach torch.cuda.set_device, which needs CUDA
        with pytest.raises((RuntimeError, AssertionError, AttributeError)):  # CPU-only torch: no _cuda_setDevice
            pin_cuda_device("cuda:1")


@pytest.mark.cuda
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA GPUs; CPU twin: the test above")
def test_cuda_worker_device_is_pinned():
    from engine.context import resolve_device
    before = torch.cuda.current_device()
    try:
        assert resolve_device("cuda:1") == torch.device("cuda:1")
        assert torch.cuda.current_device() == 1
        assert torch.zeros(1, device="cuda").device.index == 1  # what lands on "the current device"
    finally:
        torch.cuda.set_device(before)
