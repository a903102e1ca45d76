"""Train mini-SD: a small latent diffusion model made of Stable Diffusion 2.1's parts, on renders of
the analytic prior's built-in worlds, so the unchanged SD prior path runs on learned weights.

Why: no machine here can download SD weights, and random weights prove shapes, not behaviour.
Because the training world is known, a 3D result distilled from mini-SD can be scored against it.

Stages (each resumable from out/mini-sd/, the data rendered once and cached there):
1. data: the built-in object scenes and colour variants rendered through the engine's own SDF
   renderer from the presets' camera distribution (CameraSampler on CameraSpec's defaults),
   each captioned as `CAPTIONS` says plus the engine's own view suffix (CameraSampler.view_prompts),
   10 % empty captions (classifier-free guidance, as SD's training dropped captions);
2. VAE: diffusers AutoencoderKL, 4× downsampling (64² → 16²×4), L1 + a tiny KL (SD's VAE used a
   KL weight of 1e-6); `scaling_factor` set to 1/std of the latents, as SD's 0.18215 does;
3. UNet (ε-prediction) with cross-attention on a small CLIPTextModel trained with it (SD kept a
   pretrained CLIP frozen; none exists here), SD's scaled-linear schedule, EMA weights saved;
4. v-prediction sibling: the ε UNet fine-tuned on the v target (SD-2.1 relates to 2.1-base so),
   the ε_φ base VSD uses.
Output: a diffusers folder (fp16 safetensors) with the v sibling in its `phi/` subfolder.

Run: `make mini-sd` (or `python tools/train_mini_sd.py --out models/mini-sd`); about an hour on
two CPU cores. Fixed seed; progress with an ETA on stdout.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import shutil
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# scene -> caption; the three colour variants share one caption (diversity is measurable on it).
# One table, read by the model check and `bench learned` as well.
from engine.bench.learned_model import CAPTIONS  # noqa: E402
from engine.cameras import CameraSampler  # noqa: E402
from engine.diffusion import NoiseSchedule  # noqa: E402
from engine.priors.scenes import builtin_scene  # noqa: E402
from engine.spec import CameraSpec  # noqa: E402

SIZE = 64  # native image side; latents are 16² (VAE downsamples 4×)
EMPTY_CAPTION_RATE = 0.1  # SD-style caption dropout for classifier-free guidance
WHITE_BACKGROUND_RATE = 0.8  # the rest on a random solid colour (the field's random_half backdrop)

# SD's scheduler config (scaled-linear betas 0.00085 → 0.012 over 1000 steps), as SD-2.1 ships it
SCHEDULER = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012,
             "beta_schedule": "scaled_linear", "clip_sample": False, "set_alpha_to_one": False,
             "steps_offset": 1, "trained_betas": None}

VAE_CONFIG = {
    "in_channels": 3, "out_channels": 3, "latent_channels": 4, "layers_per_block": 1,
    "block_out_channels": [16, 32, 64], "down_block_types": ["DownEncoderBlock2D"] * 3,
    "up_block_types": ["UpDecoderBlock2D"] * 3, "norm_num_groups": 16, "sample_size": SIZE,
    "act_fn": "silu",
}
TEXT_CONFIG = {
    "vocab_size": 514, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
    "num_attention_heads": 4, "max_position_embeddings": 77, "hidden_act": "gelu", "projection_dim": 64,
    "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 1,
}
UNET_CONFIG = {
    "sample_size": SIZE // 4, "in_channels": 4, "out_channels": 4, "layers_per_block": 1,
    # cross-attention at 8² and 4² only: attention over 16² latents cost 3.5× per step on this CPU
    "block_out_channels": [32, 64, 96],
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "cross_attention_dim": TEXT_CONFIG["hidden_size"], "attention_head_dim": 8,
    "use_linear_projection": True, "norm_num_groups": 16,
}


LOG: dict[str, dict] = {}  # what each stage did, for TRAINING.md


class Progress:
    """One line per report: stage, step, loss, elapsed and ETA for the stage and the whole run."""

    def __init__(self, name: str, total: int, t0: float):
        self.name, self.total, self.t0, self.start = name, total, t0, time.time()

    def report(self, step: int, loss: float) -> None:
        el = time.time() - self.start
        eta = el / max(step, 1) * (self.total - step)
        print(f"[{self.name}] {step}/{self.total} loss {loss:.4f}  stage {el / 60:.1f} min, "
              f"ETA {eta / 60:.1f} min, total {(time.time() - self.t0) / 60:.1f} min", flush=True)


# ------------------------------------------------------------------------------------ data
def render_dataset(per_scene: int, seed: int) -> dict:
    """uint8 (N, 64, 64, 3) images and their captions; every scene from the same camera draws."""
    gen = torch.Generator().manual_seed(seed)
    sampler = CameraSampler(CameraSpec())
    images, captions, scenes = [], [], []
    batch = 64
    for name, caption in CAPTIONS.items():
        scene = builtin_scene(name)
        for _ in range(math.ceil(per_scene / batch)):
            cams = sampler.sample(batch, SIZE, gen)
            render = scene.render(cams, 2)
            white = torch.rand(batch, 1, 1, 1, generator=gen) < WHITE_BACKGROUND_RATE
            colour = torch.rand(batch, 1, 1, 3, generator=gen).expand(batch, SIZE, SIZE, 3)
            bg = torch.where(white, torch.ones_like(colour), colour)
            images.append((render.over(bg.contiguous()) * 255).round().to(torch.uint8))
            captions += sampler.view_prompts(caption, cams)  # the engine's own suffix wording
            scenes += [name] * batch
    images_t = torch.cat(images)
    empty = torch.rand(len(captions), generator=gen) < EMPTY_CAPTION_RATE
    captions = ["" if e else c for c, e in zip(captions, empty.tolist(), strict=True)]
    return {"images": images_t, "captions": captions, "scenes": scenes}


def to_unit(images_u8: torch.Tensor) -> torch.Tensor:
    return images_u8.permute(0, 3, 1, 2).float() / 127.5 - 1.0


# ------------------------------------------------------------------------------------ models
def make_tokenizer():
    from engine.priors.sd_builder import tiny_tokenizer  # byte-level CLIP tokenizer: no download
    return tiny_tokenizer()


def tokenize(tokenizer, captions: list[str]) -> torch.Tensor:
    return tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                     return_tensors="pt").input_ids


def random_crops(x: torch.Tensor, side: int, gen: torch.Generator) -> torch.Tensor:
    """One random side×side crop per image (multiples of 4, so latents stay aligned)."""
    n, _, h, w = x.shape
    ij = torch.randint(0, (h - side) // 4 + 1, (n, 2), generator=gen) * 4
    return torch.stack([x[k, :, i:i + side, j:j + side] for k, (i, j) in enumerate(ij.tolist())])


def train_vae(data: dict, steps: int, batch: int, gen: torch.Generator, t0: float, crop: int = 32):
    """L1 + MSE + 1e-6·KL on random 32² crops (the VAE is convolutional: a crop costs a quarter of a
    full image, so four times the steps fit; the first run's 300 full-image steps reached 14.7 dB)."""
    from diffusers import AutoencoderKL
    torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=gen)))
    vae = AutoencoderKL(**VAE_CONFIG)
    opt = torch.optim.AdamW(vae.parameters(), lr=1e-3, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 50) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * s / steps))))
    prog = Progress("vae", steps, t0)
    n = data["images"].shape[0]
    for step in range(1, steps + 1):
        idx = torch.randint(0, n, (batch,), generator=gen)
        x = random_crops(to_unit(data["images"][idx]), crop, gen)
        post = vae.encode(x).latent_dist
        z = post.mean + post.std * torch.randn(post.mean.shape, generator=gen)
        rec = vae.decode(z).sample
        loss = F.l1_loss(rec, x) + F.mse_loss(rec, x) + 1e-6 * post.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 50 == 0 or step == steps:
            prog.report(step, loss.item())
    vae.eval().requires_grad_(False)
    return vae


@torch.no_grad()
def encode_all(vae, images: torch.Tensor) -> torch.Tensor:
    """Posterior means (unscaled) of all images: the engine encodes with the mean too (sd.py)."""
    out = [vae.encode(to_unit(images[i:i + 256])).latent_dist.mean for i in range(0, images.shape[0], 256)]
    return torch.cat(out)


def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    with torch.no_grad():
        for pe, pm in zip(ema.parameters(), model.parameters(), strict=True):
            pe.lerp_(pm, 1.0 - decay)


def train_unet(latents: torch.Tensor, ids: torch.Tensor, unet, text, steps: int, batch: int, lr: float,
               target: str, gen: torch.Generator, t0: float, name: str, snapshot=None, deadline: float = math.inf):
    """Diffusion training on SD's schedule: uniform t, MSE on ε (or v); EMA of the UNet kept.
    `snapshot(ema_unet, ema_text)` is called every 1000 steps (a partial model to look at early);
    past `deadline` (time.time()) the stage ends early and says so: the CPU is shared, the budget is not."""
    schedule = NoiseSchedule.scaled_linear()
    params = list(unet.parameters()) + ([] if text is None else list(text.parameters()))
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-2)
    warm = max(1, min(200, steps // 10))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * s / steps))))
    trained = torch.nn.ModuleList([unet] + ([] if text is None else [text]))
    ema = copy.deepcopy(trained).requires_grad_(False)  # the text encoder's EMA too: they must match
    prog = Progress(name, steps, t0)
    n = latents.shape[0]
    running = None
    for step in range(1, steps + 1):
        idx = torch.randint(0, n, (batch,), generator=gen)
        x0 = latents[idx]
        eps = torch.randn(x0.shape, generator=gen)
        t = torch.randint(0, schedule.num_steps, (batch,), generator=gen)
        x_t = schedule.add_noise(x0, eps, t)
        if text is None:
            hidden = ids[idx]  # precomputed hidden states (frozen encoder)
        else:
            hidden = text(ids[idx])[0]
        out = unet(x_t, t, encoder_hidden_states=hidden).sample
        goal = eps if target == "epsilon" else schedule.velocity(x0, eps, t)
        loss = F.mse_loss(out, goal)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        # EMA 0.999 (diffusers' training scripts' default) once past the warm-up, a plain copy before
        ema_update(ema, trained, 0.0 if step < warm else min(0.999, (1 + step) / (10 + step)))
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        if step % 50 == 0 or step == steps:
            prog.report(step, running)
        if snapshot is not None and step % 1000 == 0 and step < steps:
            snapshot(ema[0], ema[1] if text is not None else None)
        if time.time() > deadline and step < steps:
            prog.report(step, running)
            print(f"[{name}] time budget reached: stopped after {step} of {steps} steps", flush=True)
            break
    LOG[name] = {"steps": step, "planned_steps": steps, "batch": batch, "lr": lr, "final_loss": round(running, 4),
                 "minutes": round((time.time() - prog.start) / 60, 1)}
    return ema[0].eval(), (ema[1].eval() if text is not None else None)


# ------------------------------------------------------------------------------------ saving
def save_folder(out: Path, vae, unet, text, tokenizer, prediction: str, with_vae: bool = True) -> None:
    """A diffusers-format folder in fp16 (variant files, as the hub's fp16 variants are named)."""
    out.mkdir(parents=True, exist_ok=True)
    for part in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        shutil.rmtree(out / part, ignore_errors=True)
    copy.deepcopy(unet).half().save_pretrained(out / "unet", variant="fp16")
    if with_vae:
        copy.deepcopy(vae).half().save_pretrained(out / "vae", variant="fp16")
    copy.deepcopy(text).half().save_pretrained(out / "text_encoder", variant="fp16")
    tokenizer.save_pretrained(out / "tokenizer")
    (out / "scheduler").mkdir(parents=True, exist_ok=True)
    (out / "scheduler" / "scheduler_config.json").write_text(json.dumps(
        {"_class_name": "DDIMScheduler", **SCHEDULER, "prediction_type": prediction}, indent=2), encoding="utf-8")
    index = {"_class_name": "StableDiffusionPipeline", "scheduler": ["diffusers", "DDIMScheduler"],
             "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
             "unet": ["diffusers", "UNet2DConditionModel"], "safety_checker": [None, None],
             "feature_extractor": [None, None], "requires_safety_checker": False}
    if with_vae:
        index["vae"] = ["diffusers", "AutoencoderKL"]
    (out / "model_index.json").write_text(json.dumps(index, indent=2), encoding="utf-8")


def write_training_notes(args, data: dict, seconds: float, argv: list[str]) -> None:
    """TRAINING.md in the output folder: the command, the figures, the wall time of this run."""
    lines = ["# mini-SD: how the committed weights were trained", "",
             f"Command: `python tools/train_mini_sd.py {' '.join(argv)}` (seed {args.seed}, "
             f"{args.threads} thread(s), torch {torch.__version__})", "",
             f"Wall time: {seconds / 60:.1f} min on a shared 2-core CPU (nice 5, other jobs running).", "",
             f"Data: {data['images'].shape[0]} renders at {SIZE}², {args.per_scene} per scene, "
             f"{len(set(data['captions']))} distinct captions (with view suffixes), "
             f"{sum(1 for c in data['captions'] if not c)} empty.", "", "| stage | figures |", "|---|---|"]
    lines += [f"| {k} | {json.dumps(v)} |" for k, v in LOG.items()]
    lines += ["", "A stage whose `steps` is below `planned_steps` was ended by the time budget (--budget-min)."]
    (args.out / "TRAINING.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "models" / "mini-sd")
    ap.add_argument("--work", type=Path, default=ROOT / "out" / "mini-sd", help="data cache and checkpoints")
    ap.add_argument("--seed", type=int, default=22)
    # one thread: measured 0.6 s/step vs 3-5× slower with two on this shared 2-core machine
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--per-scene", type=int, default=1024)
    ap.add_argument("--vae-steps", type=int, default=700)
    ap.add_argument("--vae-batch", type=int, default=16)
    ap.add_argument("--unet-steps", type=int, default=8000)
    ap.add_argument("--v-steps", type=int, default=1500)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--budget-min", type=float, default=math.inf,
                    help="wall-clock budget for the whole run; the ε stage ends early to leave the v stage its "
                         "share (v_steps/unet_steps of the remaining time)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.time()
    gen = torch.Generator().manual_seed(args.seed)
    torch.manual_seed(args.seed)
    args.work.mkdir(parents=True, exist_ok=True)

    data_file = args.work / f"data-{args.per_scene}-{args.seed}.pt"
    if data_file.is_file():
        data = torch.load(data_file, weights_only=False)
    else:
        data = render_dataset(args.per_scene, args.seed)
        torch.save(data, data_file)
    print(f"[data] {data['images'].shape[0]} images, {len(set(data['captions']))} distinct captions "
          f"({(time.time() - t0) / 60:.1f} min)", flush=True)

    vae_file = args.work / f"vae-crop-{args.vae_steps}.pt"
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel
    if vae_file.is_file():
        vae = AutoencoderKL(**VAE_CONFIG)
        vae.load_state_dict(torch.load(vae_file))
        vae.eval().requires_grad_(False)
    else:
        vae = train_vae(data, args.vae_steps, args.vae_batch, gen, t0)
        torch.save(vae.state_dict(), vae_file)
    raw = encode_all(vae, data["images"])
    scale = float(1.0 / raw.std())
    vae.register_to_config(scaling_factor=round(scale, 5))
    latents = raw * vae.config.scaling_factor
    rec = vae.decode(latents[:256] / vae.config.scaling_factor).sample
    psnr = -10 * math.log10(F.mse_loss(rec, to_unit(data["images"][:256])).item() / 4)
    print(f"[vae] scaling_factor {vae.config.scaling_factor} (latent std → 1), reconstruction PSNR {psnr:.1f} dB",
          flush=True)

    tokenizer = make_tokenizer()
    ids = tokenize(tokenizer, data["captions"])
    torch.manual_seed(args.seed + 1)
    text = CLIPTextModel(CLIPTextConfig(**TEXT_CONFIG))
    unet = UNet2DConditionModel(**UNET_CONFIG)
    print(f"[unet] {sum(p.numel() for p in unet.parameters()) / 1e6:.2f} M parameters, text encoder "
          f"{sum(p.numel() for p in text.parameters()) / 1e6:.2f} M", flush=True)
    unet_file = args.work / f"unet-{args.unet_steps}.pt"
    if unet_file.is_file():
        state = torch.load(unet_file)
        unet.load_state_dict(state["unet"])
        text.load_state_dict(state["text"])
        LOG.update(state.get("log", {}))
    else:
        # lr 3e-4 with AdamW: near the range diffusers' text-to-image scripts use for small batches
        def snapshot(u, t):
            save_folder(args.work / "partial", vae, u, t, tokenizer, "epsilon")
        left = t0 + args.budget_min * 60 - time.time()
        deadline = time.time() + left * args.unet_steps / (args.unet_steps + args.v_steps)
        unet, text = train_unet(latents, ids, unet, text, args.unet_steps, args.batch, 3e-4, "epsilon", gen, t0,
                                "unet-eps", snapshot, deadline)
        torch.save({"unet": unet.state_dict(), "text": text.state_dict(), "log": dict(LOG)}, unet_file)
    text.eval().requires_grad_(False)
    save_folder(args.out, vae, unet, text, tokenizer, "epsilon")
    print(f"[save] ε model → {args.out}", flush=True)

    with torch.no_grad():
        hidden = torch.cat([text(ids[i:i + 512])[0] for i in range(0, ids.shape[0], 512)])
    v_unet = copy.deepcopy(unet).train().requires_grad_(True)
    v_unet, _ = train_unet(latents, hidden, v_unet, None, args.v_steps, args.batch, 1e-4, "v_prediction", gen, t0,
                           "unet-v", deadline=t0 + args.budget_min * 60)
    save_folder(args.out / "phi", vae, v_unet, text, tokenizer, "v_prediction", with_vae=False)
    print(f"[save] v-prediction ε_φ base → {args.out / 'phi'}; done in {(time.time() - t0) / 60:.1f} min",
          flush=True)
    LOG["vae"] = {"steps": args.vae_steps, "batch": args.vae_batch, "scaling_factor": vae.config.scaling_factor,
                  "reconstruction_psnr_db": round(psnr, 1)}
    write_training_notes(args, data, time.time() - t0, argv if argv is not None else sys.argv[1:])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
