"""`vsdream bench memory`: peak GPU memory of one step of each stage, estimated on any machine.

Why: whether a preset fits a 12/16/24 GB card must be known before anyone owns one. Each stage's
step runs at its largest resolution under FakeTensorMode (shapes and dtypes, no data, no compute)
with the real modules: the SD-2.1 architecture (`sd21-random`) in fp16 as on CUDA, LoRA ε_φ as
sd_lora.py builds it (fp32 adapters), the radiance field and the packed renderer of this repo,
AdamW states. LiveMemory counts every live storage, so the peak includes weights, gradients,
optimiser states, saved activations and transients. The field's sample count comes from a real
occupancy state: the preset's field at initialisation, its grid refreshed as at step 0, sampled
from the preset's cameras at `--probe-resolution` and scaled to the stage's resolution (no
early stop counted: an upper bound). Split per part: SD weights, VAE-encode activations (kept
for backward), UNet transients (CFG, ε_φ estimate), field + renderer (kept for backward), ε_φ
training backward, optimiser states; `peak_gb` per stage, for 1 and 4 particles. Stage 1 also
reports its preview (`preview_peak_gb`: what stays resident between steps plus one preview
render at the last resolution with its chunked normal pass; `--reference` models the earlier
preview, which kept the RGB graph and took normals on all samples at once).

What the CPU estimate cannot see: which attention kernel CUDA picks (flash / memory-efficient:
no N² scores, like the CPU flash kernel the fake dispatch shapes here), cuDNN/cuBLAS workspaces,
allocator rounding and fragmentation, and the CUDA context (~0.3–0.6 GB outside PyTorch's count).
The mesh rasteriser of the geometry and texture stages is not run (its per-pixel buffers are a
few tens of MB at 512²); their DMTet / field parameters and the field's albedo pass are counted.
On a CUDA machine `--real` (default there) also runs stage 1 for real (bench step) and prints
`torch.cuda.max_memory_allocated` beside the estimate.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode

from ..cameras import CameraSampler
from ..field import Background, OccupancyGrid, RadianceField
from ..render.geometry import sphere_intersect
from ..render.jitter import device_generator
from ..render.packed import (
    DEFAULT_CHUNK,
    NORMAL_CHUNK,
    PackedSamples,
    accumulate,
    render_samples,
    run_field,
    sample_normals,
    transmittance_weights,
)
from ..spec import JobSpec, StageSpec
from .live_memory import LiveMemory

GOAL_GB = 16.0
GIB = 2 ** 30


def samples_per_pixel(spec: JobSpec, probe_resolution: int = 64, views: int = 4, seed: int = 0) -> dict[str, float]:
    """Samples per pixel the full pass evaluates for the preset's field at initialisation (step-0
    occupancy refresh): the occupied bins, plus the importance samples of the rays that get them."""
    gen = torch.Generator().manual_seed(seed)
    field = RadianceField(spec.field, gen=gen, backend="torch")
    occupancy = OccupancyGrid(radius=spec.field.radius)
    occupancy.update(field, 0, force=True)
    cams = CameraSampler(spec.camera).sample(views, probe_resolution, gen)
    o, d = (a.reshape(-1, 3) for a in cams.rays())
    t0, t1, hit = sphere_intersect(o, d, spec.field.radius)
    with torch.no_grad():
        s = render_samples(field, o[hit], d[hit], t0[hit], t1[hit], spec.nerf.samples_per_ray,
                           device_generator(gen, o.device), occupancy, 0.0, fine=spec.nerf.importance_samples)
    return {"samples_per_pixel": s.count / o.shape[0], "occupied_fraction": occupancy.occupied_fraction(),
            "probe_resolution": probe_resolution, "views": views}


def fake_module(module: nn.Module, mode: FakeTensorMode) -> nn.Module:
    """Replace a meta-device module's parameters and buffers by fake CPU tensors (same shapes, dtypes)."""
    for m in module.modules():
        for name, p in list(m._parameters.items()):
            if p is not None:
                with mode:
                    m._parameters[name] = nn.Parameter(torch.empty(p.shape, dtype=p.dtype),
                                                       requires_grad=p.requires_grad)
        for name, b in list(m._buffers.items()):
            if b is not None and b.device.type == "meta":
                with mode:
                    m._buffers[name] = torch.empty(b.shape, dtype=b.dtype)
    return module


def _nbytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


class _Models:
    """The prior's UNet + VAE and ε_φ (LoRA on its own base, or on the same UNet when shared), faked."""

    def __init__(self, model: str, phi_model: str | None, vsd: bool, mode: FakeTensorMode):
        from peft import LoraConfig
        from peft.tuners.lora import LoraLayer

        from ..priors.sd import native_image_size
        from ..priors.sd_builder import build_random
        from ..priors.sd_lora import LORA_RANK, LORA_TARGETS
        meta, fp16 = torch.device("meta"), torch.float16
        pre = build_random(model, meta, fp16, with_vae=True)
        self.unet, self.vae = pre.unet, pre.vae
        self.native = native_image_size(pre.unet, pre.vae)
        self.phi_unet: nn.Module | None = None
        self.phi_camera: nn.Module | None = None
        if vsd:
            self.phi_unet = pre.unet if phi_model == "shared" else build_random(model + "-v", meta, fp16, False).unet
            self.phi_unet.add_adapter(LoraConfig(r=LORA_RANK, lora_alpha=LORA_RANK, lora_dropout=0.0,
                                                 init_lora_weights=True, target_modules=LORA_TARGETS),
                                      adapter_name="phi")
            for m in self.phi_unet.modules():
                if isinstance(m, LoraLayer):  # fp32 masters under the fp16 UNet, as sd_lora.LoraEpsPhi
                    m.lora_A["phi"].float()
                    m.lora_B["phi"].float()
            dim = self.phi_unet.time_embedding.linear_2.out_features
            self.phi_camera = nn.Sequential(nn.Linear(16, dim, device=meta), nn.SiLU(), nn.Linear(dim, dim, device=meta))
        self.modules = [m for m in (self.unet, self.vae, self.phi_unet, self.phi_camera) if m is not None]
        for m in {id(m): m for m in self.modules}.values():
            fake_module(m, mode)
        self.text_dim = pre.unet.config.cross_attention_dim

    def frozen_bytes(self) -> int:
        seen = {id(p): p for m in self.modules for p in m.parameters() if not p.requires_grad}
        return _nbytes(seen.values())

    def phi_params(self) -> list[nn.Parameter]:
        if self.phi_unet is None:
            return []
        return [p for p in self.phi_unet.parameters() if p.requires_grad] + list(self.phi_camera.parameters())

    def text(self, batch: int) -> torch.Tensor:
        return torch.zeros(batch, 77, self.text_dim, dtype=torch.float16)

    def phi_forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]  # (the camera MLP's output joins the time embedding: its size is negligible)
        return self.phi_unet(x.half(), torch.zeros(b, dtype=torch.long), encoder_hidden_states=self.text(b)).sample


def estimate_stage(spec: JobSpec, stage_name: str, particles: int, model: str = "sd21-random",
                   spp: float | None = None, chunk: int = DEFAULT_CHUNK, field_backend: str = "torch") -> dict[str, Any]:
    """Peak and split (GB) of one step of `stage_name` ('nerf', 'geometry', 'texture') at its largest resolution.

    field_backend "torch-reference" with a chunk ≥ the sample count gives the earlier field path
    (corner indices and weights saved for backward, no checkpointing) for comparison."""
    from ..priors.base import resize_square
    from ..priors.sd import encode_latents
    cfg: StageSpec = getattr(spec, stage_name)
    res = max(r for _, r in cfg.resolution_schedule)
    vsd = cfg.method == "vsd"
    mode = FakeTensorMode()
    models = _Models(model, spec.phi_model, vsd, mode)
    n_samples = int(round((spp or 0.0) * res * res * cfg.batch_size))
    with mode:
        fields = [RadianceField(spec.field, backend=field_backend) for _ in range(particles)] \
            if stage_name != "geometry" else []
        backgrounds = [Background() for _ in range(particles)] if stage_name == "nerf" else []
        trainable: list[torch.Tensor] = [p for f in fields + backgrounds for p in f.parameters()]
        if stage_name == "geometry":  # DMTet: SDF + deformation per grid vertex, per particle
            verts = (cfg.grid_resolution + 1) ** 3
            trainable += [nn.Parameter(torch.zeros(verts, 4)) for _ in range(particles)]
        opt = torch.optim.AdamW(trainable, betas=(0.9, 0.99), eps=1e-15, weight_decay=0.0)
        phi_params = models.phi_params()
        opt_phi = torch.optim.AdamW(phi_params) if phi_params else None
        lm = LiveMemory()
        lm.track(*models.modules, trainable)
        with lm:
            latents = []
            for i in range(particles):
                with lm.phase("render"):
                    image = _render(stage_name, fields[i] if fields else None, res, cfg, n_samples, chunk)
                with lm.phase("vae_encode"):
                    x0 = encode_latents(models.vae, resize_square(image, models.native), torch.float16)
                with lm.phase("unet"), torch.no_grad():
                    b = x0.shape[0] * (2 if cfg.guidance_scale != 1.0 else 1)
                    eps_pre = models.unet(x0.repeat(b // x0.shape[0], 1, 1, 1).half(), torch.zeros(b, dtype=torch.long),
                                          encoder_hidden_states=models.text(b)).sample
                    eps_phi = models.phi_forward(x0) if vsd else eps_pre[:1]
                    grad = (eps_pre[: x0.shape[0]].float() - eps_phi.float())
                with lm.phase("backward"):
                    (0.5 * (x0 - (x0 - grad).detach()) ** 2).sum().backward()
                latents.append(x0.detach())
                del image, x0, eps_pre, eps_phi, grad
            with lm.phase("optimiser"):
                for p in trainable:  # DMTet's parameters: the rasteriser that gives them gradients is not run
                    if p.grad is None and stage_name == "geometry":
                        p.grad = torch.zeros_like(p)
                opt.step()
            if vsd:
                with lm.phase("phi_training"):
                    loss = sum(models.phi_forward(x).float().square().mean() for x in latents)
                    loss.backward()
                    del loss
                with lm.phase("phi_optimiser"):
                    opt_phi.step()
    ph = lm.phases

    def rise(name: str, key: str = "end_gb") -> float:
        return round(ph[name][key] - ph[name]["start_gb"], 3) if name in ph else 0.0

    split = {
        "sd_weights_gb": round(models.frozen_bytes() / GIB, 3),
        "trainable_weights_gb": round(_nbytes(trainable + phi_params) / GIB, 3),
        "vae_encode_activations_gb": rise("vae_encode"),
        "unet_transient_gb": rise("unet", "peak_gb"),
        "field_renderer_gb": rise("render"),
        "field_renderer_peak_gb": rise("render", "peak_gb"),
        "phi_backward_gb": rise("phi_training", "peak_gb"),
        "optimiser_states_gb": round(rise("optimiser") + rise("phi_optimiser"), 3),
    }
    return {"stage": stage_name, "resolution": res, "particles": particles, "method": cfg.method,
            "field_samples": n_samples if stage_name == "nerf" else (res * res if fields else 0),
            "peak_gb": round(lm.peak / GIB, 3), "split": split,
            "phase_peak_gb": {k: round(v["peak_gb"], 3) for k, v in ph.items()}}


def _render(stage_name: str, field: RadianceField | None, res: int, cfg: StageSpec, n_samples: int,
            chunk: int) -> torch.Tensor:
    """The stage's differentiable image (B, res, res, 3), on fake tensors."""
    b = cfg.batch_size
    if stage_name == "nerf":  # packed samples of the real sizes; positions are irrelevant to memory
        n_rays = b * res * res
        s = PackedSamples(torch.zeros(n_samples, dtype=torch.long), torch.zeros(n_samples, dtype=torch.long),
                          torch.zeros(n_samples), torch.zeros(n_samples), torch.zeros(n_samples),
                          torch.zeros(n_samples, 3), n_rays, cfg.samples_per_ray + cfg.importance_samples)
        sigma, rgb = run_field(field, s.points, chunk)
        weights, _ = transmittance_weights(sigma, s)
        opacity = accumulate(weights, None, s)
        out = accumulate(weights, rgb, s) + (1.0 - opacity) * torch.rand(n_rays, 3)
        return out.view(b, res, res, 3)
    if stage_name == "texture":  # one albedo lookup per rasterised pixel
        return field.albedo(torch.zeros(b * res * res, 3)).view(b, res, res, 3)
    # geometry: normal map from the DMTet surface; the rasteriser's buffers are not modelled
    normals = torch.zeros(b, res, res, 3, requires_grad=True)
    return normals * 0.5 + 0.5


def estimate_preview(spec: JobSpec, spp: float, resident_gb: float = 0.0, reference: bool = False,
                     chunk: int = DEFAULT_CHUNK, normal_chunk: int = NORMAL_CHUNK) -> dict[str, Any]:
    """Peak (GB) of one stage-1 preview (one view with its normal map at the last training resolution)
    on top of `resident_gb` (weights and optimiser states that stay between steps).

    The preview renders without autograd and takes normals `normal_chunk` samples at a time.
    reference: the earlier preview instead: under enable_grad, so the RGB graph of every sample stays
    alive (nerfacc's path: one field call), while the normals run on all samples at once."""
    cfg = spec.nerf
    res = max(r for _, r in cfg.resolution_schedule)
    n_rays, n = res * res, int(round(spp * res * res))
    if reference:
        chunk = normal_chunk = 1 << 40
    mode = FakeTensorMode()
    with mode:
        field = RadianceField(spec.field, backend="torch")
        lm = LiveMemory()
        lm.track(field)
        with lm, (torch.enable_grad() if reference else torch.no_grad()):
            s = PackedSamples(torch.zeros(n, dtype=torch.long), torch.zeros(n, dtype=torch.long), torch.zeros(n),
                              torch.zeros(n), torch.zeros(n), torch.zeros(n, 3), n_rays,
                              cfg.samples_per_ray + cfg.importance_samples)
            with lm.phase("rgb"):
                sigma, rgb = run_field(field, s.points, chunk)
                weights, _ = transmittance_weights(sigma, s)
                out_rgb = accumulate(weights, rgb, s)
            with lm.phase("normals"):
                normal = accumulate(weights.detach(), sample_normals(field, s.points, normal_chunk), s)
            del out_rgb, normal, sigma, rgb, weights
        params = sum(p.numel() * p.element_size() for p in field.parameters()) / GIB
    ph = lm.phases
    return {"resolution": res, "samples": n, "graph_kept": reference,
            "rgb_kept_gb": round(ph["rgb"]["end_gb"] - ph["rgb"]["start_gb"], 3),
            "normals_peak_gb": round(ph["normals"]["peak_gb"] - ph["normals"]["start_gb"], 3),
            "peak_gb": round(resident_gb + lm.peak / GIB - params, 3)}


def resident_gb(step: dict[str, Any]) -> float:
    """What a step leaves alive for the preview that follows it: weights (frozen and trained) and optimiser states."""
    sp = step["split"]
    return sp["sd_weights_gb"] + sp["trainable_weights_gb"] + sp["optimiser_states_gb"]


def estimate(spec: JobSpec, particles: list[int], model: str, probe_resolution: int,
             stages: list[str], reference: bool = False) -> dict[str, Any]:
    probe = samples_per_pixel(spec, probe_resolution)
    out: dict[str, Any] = {"preset": spec.preset, "model": model, "dtype": "float16 (as on CUDA)",
                           "field_path": "reference hash grid, no checkpointing" if reference else
                           "memory-light hash grid, packed renderer, checkpointed chunks",
                           "occupancy_probe": probe, "goal_gb": GOAL_GB, "stages": []}
    extra = {"field_backend": "torch-reference", "chunk": 1 << 40} if reference else {}
    for name in stages:
        if not getattr(spec, name).enabled:
            continue
        for n in particles:
            step = estimate_stage(spec, name, n, model, probe["samples_per_pixel"], **extra)
            if name == "nerf":
                step["preview"] = estimate_preview(spec, probe["samples_per_pixel"], resident_gb(step), reference)
                step["preview_peak_gb"] = step["preview"]["peak_gb"]
            out["stages"].append(step)
    return out


def real_peak(model: str, resolution: int) -> dict[str, Any]:
    """Stage 1 for real on CUDA (bench step): torch.cuda.max_memory_allocated after a few steps."""
    from .step import run_bench
    r = run_bench(model, resolution, torch.device("cuda"), iters=2, warmup=1)
    return {"resolution": resolution, "max_memory_allocated_gb": r["peak_memory_gb"], "ms_per_iter": r["ms_per_iter"]}


def _print_table(r: dict[str, Any]) -> None:
    p = r["occupancy_probe"]
    print(f"{r['preset']}: {r['model']} in {r['dtype']}; {r['field_path']}; field at init: {p['samples_per_pixel']:.1f} occupied "
          f"samples per pixel (occupied cells {100 * p['occupied_fraction']:.1f} %)")
    for s in r["stages"]:
        mark = "≤" if s["peak_gb"] <= r["goal_gb"] else ">"
        print(f"  {s['stage']:<9} {s['resolution']}² × {s['particles']} particle(s): peak {s['peak_gb']:.2f} GB "
              f"{mark} {r['goal_gb']:.0f}")
        if "preview" in s:
            pv = s["preview"]
            mark = "≤" if pv["peak_gb"] <= r["goal_gb"] else ">"
            print(f"  {'preview':<9} {pv['resolution']}² with normals: peak {pv['peak_gb']:.2f} GB {mark} "
                  f"{r['goal_gb']:.0f} (RGB graph kept {pv['rgb_kept_gb']:.3f} GB, normal pass {pv['normals_peak_gb']:.3f} GB)")
        for k, v in s["split"].items():
            print(f"      {k:<28} {v:8.3f}")
    if "cuda" in r:
        print(f"  CUDA, stage 1 for real: max_memory_allocated {r['cuda']['max_memory_allocated_gb']:.2f} GB")


def main(argv: list[str] | None = None) -> int:
    from ..presets import PRESETS, make_spec
    ap = argparse.ArgumentParser(prog="vsdream bench memory", description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="paper", choices=sorted(PRESETS))
    ap.add_argument("--model", default="sd21-random", choices=["sd21-random", "tiny-sd"],
                    help="architecture to account (tiny-sd: a quick check of the bench itself)")
    ap.add_argument("--particles", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--stages", nargs="+", default=["nerf", "geometry", "texture"],
                    choices=["nerf", "geometry", "texture"])
    ap.add_argument("--probe-resolution", type=int, default=64, help="render side for the occupied-sample count")
    ap.add_argument("--real", choices=["auto", "yes", "no"], default="auto",
                    help="also run stage 1 on CUDA and report max_memory_allocated (auto: when CUDA is present)")
    ap.add_argument("--reference", action="store_true",
                    help="account the earlier field path (reference hash grid, no checkpointing) instead")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)
    if any(n < 1 for n in args.particles):
        print("vsdream bench memory: --particles must be ≥ 1", file=sys.stderr)
        return 2
    spec = make_spec(args.preset, {"prompt": "a ceramic teapot"} if args.preset != "cpu-smoke" else None)
    result = estimate(spec, sorted(set(args.particles)), args.model, args.probe_resolution, args.stages,
                      args.reference)
    if args.real == "yes" or (args.real == "auto" and torch.cuda.is_available()):
        res = max(r for _, r in spec.nerf.resolution_schedule)
        result["cuda"] = real_peak("sd21-random" if args.model == "sd21-random" else "tiny", res)
    if args.json:
        print(json.dumps(result))
    else:
        _print_table(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
