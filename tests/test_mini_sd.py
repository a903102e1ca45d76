"""mini-SD (models/mini-sd): learned weights through the real SD loader, and a short VSD run on them.

The folder is committed (tools/train_mini_sd.py made it; tests never train). It must load exactly
as downloaded SD weights do — `sd:<folder>` and the `mini-sd` row, fp32 on CPU from fp16 files,
one shared text encoder, the v-prediction sibling as ε_φ base. (What VSD on it does to a radiance
field is `vsdream bench learned`'s: a 40-step stage 1 at the fast preset's settings moved held-out
PSNR by 0.1 dB, too little for a test margin.)
"""
from __future__ import annotations

from pathlib import Path

import torch

from engine.bench.learned_model import CAPTIONS
from engine.presets import make_spec
from engine.priors.registry import find_prior, load_prior

FOLDER = Path(__file__).resolve().parents[1] / "models" / "mini-sd"


def _spec(**over):
    base = {"prior": "mini-sd", "prompt": CAPTIONS["marker"], "device": "cpu"}
    return make_spec("fast", {**base, **over})


def test_folder_is_small_fp16_and_not_ignored():
    files = [p for p in FOLDER.rglob("*") if p.is_file()]
    weights = [p for p in files if p.suffix == ".safetensors"]
    assert {p.parent.name for p in weights} == {"unet", "vae", "text_encoder"}
    assert all(p.name.endswith(".fp16.safetensors") for p in weights)
    assert sum(p.stat().st_size for p in files) <= 25 * 2**20
    assert (FOLDER / "README.md").is_file() and "MIT" in (FOLDER / "README.md").read_text(encoding="utf-8")
    import subprocess
    ignored = subprocess.run(["git", "check-ignore", *map(str, weights)], cwd=FOLDER, capture_output=True, text=True)
    assert ignored.stdout.strip() == ""


def test_loads_through_the_real_loader_with_a_v_prediction_phi_base(tmp_path, monkeypatch):
    monkeypatch.setenv("VSDREAM_CACHE", str(tmp_path))  # a cold text-embedding cache: the encoder must load
    row = find_prior("mini-sd")
    assert row is not None and row.factory == find_prior("sd").factory and row.native_size == 64
    prior = load_prior(_spec(), torch.device("cpu"))
    assert prior.prediction_type == "epsilon" and prior.native_size == 64
    assert prior.unet.dtype == prior.vae.dtype == torch.float32  # fp16 files, fp32 compute on CPU
    assert prior.vae.config.scaling_factor != 0.18215  # its own, fitted to unit-variance latents
    prior.make_variational_score(_spec().nerf, torch.Generator().manual_seed(0))
    assert prior._phi_model.prediction_type == "v_prediction"
    assert Path(prior._phi_model.name).resolve() == (FOLDER / "phi").resolve()
    assert prior._phi_text is prior.text and prior.text.encoder_loads == 1  # one shared text encoder
    # sd:<folder> is the same model through the same code
    same = load_prior(make_spec("fast", {"prior": f"sd:{FOLDER}", "prompt": "a snowman"}), torch.device("cpu"))
    a = dict(prior.unet.named_parameters())
    assert all(torch.equal(a[k], v) for k, v in same.unet.named_parameters())
    assert same._phi_source.path.resolve() == (FOLDER / "phi").resolve()
