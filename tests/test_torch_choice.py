"""Set up engine's torch choice: nvidia-smi parsing and the build for every OS × hardware case.

The detection runs real subprocesses: this machine's own (no nvidia-smi here) and small Python
scripts that print what nvidia-smi prints, since no NVIDIA driver runs on the test machine.
"""
from __future__ import annotations

import sys

import pytest

pytest.importorskip("bpy")  # blender_addon/__init__ imports bpy

from blender_addon import torch_choice as tc  # noqa: E402
from blender_addon.torch_choice import Hardware  # noqa: E402

SMI_LINUX = """Mon Nov 23 23:30:01 2026
+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI 570.86.15              Driver Version: 570.86.15      CUDA Version: 12.8     |
|-----------------------------------------+------------------------+----------------------+
| GPU  Name                 Persistence-M | Bus-Id          Disp.A | Volatile Uncorr. ECC |
|   0  NVIDIA GeForce RTX 4090        Off |   00000000:01:00.0  On |                  Off |
+-----------------------------------------+------------------------+----------------------+
"""
SMI_WINDOWS_OLD = """+---------------------------------------------------------------------------------------+
| NVIDIA-SMI 531.14                 Driver Version: 531.14       CUDA Version: 12.1     |
|-----------------------------------------+----------------------+----------------------+
"""
SMI_CUDA13 = "| NVIDIA-SMI 580.65.06   Driver Version: 580.65.06   CUDA Version: 13.0   |\n"
SMI_ANCIENT = "| NVIDIA-SMI 470.82.01    Driver Version: 470.82.01    CUDA Version: 11.4     |\n"
LIST = ("GPU 0: NVIDIA GeForce RTX 4090 (UUID: GPU-5c1b2f4e-1111-2222-3333-444455556666)\n"
        "GPU 1: NVIDIA RTX A6000 (UUID: GPU-0a0b0c0d-1111-2222-3333-444455556666)\n")


def test_parse_driver_cuda_and_names():
    assert tc.parse_driver_cuda(SMI_LINUX) == (12, 8)
    assert tc.parse_driver_cuda(SMI_WINDOWS_OLD) == (12, 1)
    assert tc.parse_driver_cuda(SMI_CUDA13) == (13, 0)
    assert tc.parse_driver_cuda("NVIDIA-SMI has failed because it couldn't communicate with the driver") is None
    assert tc.parse_gpu_names(LIST) == ("NVIDIA GeForce RTX 4090", "NVIDIA RTX A6000")
    assert tc.parse_gpu_names("No devices were found\n") == ()


@pytest.mark.parametrize("platform_name,kind", [("linux", "linux"), ("win32", "windows"), ("cygwin", "windows"),
                                                ("darwin", "darwin"), ("freebsd14", "linux")])
def test_os_name(platform_name, kind):
    assert tc.os_name(platform_name) == kind


@pytest.mark.parametrize("driver,build", [((11, 4), None), ((12, 1), None), ((12, 6), "cu126"), ((12, 7), "cu126"),
                                          ((12, 8), "cu128"), ((12, 9), "cu128"), ((13, 0), "cu130"),
                                          ((13, 2), "cu130"), ((14, 0), "cu130")])
def test_cuda_build_never_newer_than_the_driver(driver, build):
    assert tc.cuda_build_for(driver) == build


RTX = ("NVIDIA GeForce RTX 4090",)
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
# (hardware, override) -> (build, index_url or None, ok)
CASES = [
    (Hardware("linux", "x86_64"), "auto", ("cpu", CPU_INDEX, True)),
    (Hardware("windows", "AMD64"), "auto", ("cpu", CPU_INDEX, True)),
    (Hardware("linux", "x86_64", RTX, (12, 8)), "auto", ("cu128", "https://download.pytorch.org/whl/cu128", True)),
    (Hardware("windows", "AMD64", RTX, (13, 0)), "auto", ("cu130", "https://download.pytorch.org/whl/cu130", True)),
    (Hardware("windows", "AMD64", RTX, (12, 6)), "auto", ("cu126", "https://download.pytorch.org/whl/cu126", True)),
    (Hardware("linux", "aarch64", RTX, (12, 9)), "auto", ("cu128", "https://download.pytorch.org/whl/cu128", True)),
    (Hardware("windows", "AMD64", RTX, (11, 4)), "auto", ("cpu", CPU_INDEX, True)),  # driver too old
    (Hardware("linux", "x86_64", RTX, None), "auto", ("cpu", CPU_INDEX, True)),  # smi without a version
    (Hardware("darwin", "arm64"), "auto", ("mps", None, True)),
    (Hardware("darwin", "arm64"), "cpu", ("mps", None, True)),  # one macOS wheel serves MPS and CPU
    (Hardware("darwin", "arm64"), "cu128", ("", None, False)),
    (Hardware("darwin", "x86_64"), "auto", ("", None, False)),
    (Hardware("linux", "x86_64", RTX, (12, 8)), "cpu", ("cpu", CPU_INDEX, True)),
    (Hardware("linux", "x86_64"), "cu126", ("cu126", "https://download.pytorch.org/whl/cu126", True)),
    (Hardware("windows", "AMD64", RTX, (12, 8)), "default", ("default", None, True)),
    (Hardware("linux", "x86_64"), "cu999", ("", None, False)),
]


@pytest.mark.parametrize("hw,override,expected", CASES)
def test_choice_for_every_os_and_hardware(hw, override, expected):
    choice = tc.choose(hw, override)
    assert (choice.build, choice.index_url, choice.ok) == expected, choice.reason
    assert choice.reason


def test_choice_reasons_tell_what_to_do():
    old = tc.choose(Hardware("windows", "AMD64", RTX, (11, 4)))
    assert "11.4" in old.reason and "update the driver" in old.reason
    forced = tc.choose(Hardware("linux", "x86_64", RTX, (12, 6)), "cu130")
    assert forced.ok and "12.6 only" in forced.reason
    assert "Remote engine" in tc.choose(Hardware("darwin", "x86_64")).reason
    assert "auto, cpu" in tc.choose(Hardware("linux", "x86_64"), "rocm").reason


def test_pip_args_keep_pypi_for_dependencies():
    cuda = tc.choose(Hardware("windows", "AMD64", RTX, (12, 8)))
    assert cuda.pip_args("torch==2.13.0") == ["torch==2.13.0", "--index-url", "https://download.pytorch.org/whl/cu128",
                                              "--extra-index-url", tc.PYPI]
    assert tc.choose(Hardware("darwin", "arm64")).pip_args("torch==2.13.0") == ["torch==2.13.0"]


def test_describe_names_what_was_found():
    assert "RTX 4090" in Hardware("linux", "x86_64", RTX, (12, 8)).describe()
    assert "CUDA 12.8" in Hardware("linux", "x86_64", RTX, (12, 8)).describe()
    assert "Apple Silicon" in Hardware("darwin", "arm64").describe()
    assert "no NVIDIA GPU" in Hardware("linux", "x86_64", smi_error="driver not loaded").describe()


def _fake_smi(tmp_path, header: str, listing: str, code: int = 0) -> list[str]:
    """A script that answers like nvidia-smi (plain: the header; -L: the GPU list)."""
    script = tmp_path / "smi.py"
    script.write_text("import sys\n"
                      f"sys.stdout.write({listing!r} if sys.argv[1:] == ['-L'] else {header!r})\n"
                      f"sys.exit({code})\n", encoding="utf-8")
    return [sys.executable, str(script)]


def test_detect_runs_nvidia_smi(tmp_path):
    hw = tc.detect("linux", "x86_64", smi=_fake_smi(tmp_path, SMI_LINUX, LIST))
    assert hw.gpus == ("NVIDIA GeForce RTX 4090", "NVIDIA RTX A6000") and hw.driver_cuda == (12, 8)
    assert tc.choose(hw).build == "cu128"


def test_detect_survives_a_broken_driver(tmp_path):
    msg = "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."
    hw = tc.detect("win32", "AMD64", smi=_fake_smi(tmp_path, msg, "", code=9))
    assert hw.gpus == () and "couldn't communicate" in hw.smi_error
    assert tc.choose(hw).build == "cpu"
    missing = tc.detect("linux", "x86_64", smi=[str(tmp_path / "no-such-smi")])
    assert missing.gpus == () and "FileNotFoundError" in missing.smi_error


def test_detect_on_this_machine():
    """This machine: whatever it is, detection answers and the choice is installable here."""
    import platform
    hw = tc.detect(sys.platform, platform.machine())
    choice = tc.choose(hw)
    assert hw.os == tc.os_name(sys.platform) and choice.reason
    if not hw.gpus and hw.os == "linux":
        assert choice.build == "cpu"
