"""ε_φ for Stable Diffusion: a rank-4 peft LoRA on the UNet's attention plus a camera embedding.

The LoRA sits on to_q, to_k, to_v and to_out.0 of every attention block (peft's LoraConfig with
lora_alpha = r, so its scale is 1, and B = 0 at init). A camera MLP (flattened 4×4 camera-to-world
→ D → D, D = the UNet's time-embedding width, 1280 for SD) is added to the time embedding through
a forward hook on `unet.time_embedding`; its last layer starts at zero, so at step 0 ε_φ is exactly
the base model. The hook only adds while ε_φ itself runs, which lets ε_φ share the pretrained
UNet: the pretrained pass switches adapters off (`adapters_off`) and sees no camera.

The UNet is not a submodule: `state_dict()`, `parameters()` and `.to()` cover only what φ trains
(LoRA layers, kept in fp32, and the camera MLP), which is what a checkpoint needs.
"""
from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
from diffusers import UNet2DConditionModel
from peft import LoraConfig
from peft.tuners.lora import LoraLayer
from torch import nn
from torch.nn import functional as F

from ..diffusion import NoiseSchedule
from ..spec import StageSpec
from .base import Conditioning, VariationalScore

LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
LORA_RANK = 4


@contextmanager
def adapters_off(unet: UNet2DConditionModel) -> Iterator[None]:
    """Run the plain base model on a UNet that may carry ε_φ's adapter (peft's public switch)."""
    carrying = bool(getattr(unet, "peft_config", None))
    if carrying:
        unet.disable_adapters()
    try:
        yield
    finally:
        if carrying:
            unet.enable_adapters()


def camera_vector(cond: Conditioning, batch: int, device: torch.device) -> torch.Tensor:
    """The camera condition: flattened 4×4 camera-to-world matrices (B, 16), fp32."""
    return cond.cameras.c2w.reshape(-1, 16)[:batch].to(device=device, dtype=torch.float32)


class LoraEpsPhi(VariationalScore):
    """Variational score on an SD UNet; predicts what the base model predicts (ε or v)."""

    _names = itertools.count()

    def __init__(self, unet: UNet2DConditionModel, schedule: NoiseSchedule, prediction_type: str,
                 embed: Callable[[Sequence[str]], torch.Tensor], stage: StageSpec, gen: torch.Generator,
                 rank: int = LORA_RANK):
        super().__init__()
        self.prediction_type = prediction_type
        self.schedule = schedule
        self.camera_dropout = stage.phi_camera_dropout
        self._unet = (unet,)  # a tuple keeps it out of this module's parameters and state_dict
        self._embed = embed
        self.adapter_name = f"vsd_phi_{next(self._names)}"
        device = unet.device
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=gen))
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, lora_dropout=0.0, init_lora_weights=True,
                                        target_modules=LORA_TARGETS), adapter_name=self.adapter_name)
            dim = unet.time_embedding.linear_2.out_features
            self.camera_mlp = nn.Sequential(nn.Linear(16, dim), nn.SiLU(), nn.Linear(dim, dim)).to(device)
        nn.init.zeros_(self.camera_mlp[2].weight)
        nn.init.zeros_(self.camera_mlp[2].bias)
        self.lora = nn.ModuleDict({
            name.replace(".", "__"): nn.ModuleDict({"A": m.lora_A[self.adapter_name], "B": m.lora_B[self.adapter_name]})
            for name, m in unet.named_modules() if isinstance(m, LoraLayer) and self.adapter_name in m.lora_A
        }).float()  # fp32 master weights under an fp16/bf16 UNet; peft casts activations to them
        self._camera: torch.Tensor | None = None
        self._hook = unet.time_embedding.register_forward_hook(self._add_camera)

    @property
    def unet(self) -> UNet2DConditionModel:
        return self._unet[0]

    def _add_camera(self, module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor | None:
        return None if self._camera is None else output + self._camera.to(output.dtype)

    def _forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: Conditioning, camera: torch.Tensor) -> torch.Tensor:
        """Raw model output (ε or v) in fp32 for the view-independent prompt and the given cameras."""
        unet, b = self.unet, x_t.shape[0]
        text = self._embed([cond.prompt]).expand(b, -1, -1)
        self._camera = self.camera_mlp(camera)
        try:
            out = unet(x_t.to(unet.dtype), t.to(unet.device), encoder_hidden_states=text).sample
        finally:
            self._camera = None
        return out.float()

    def predict_noise(self, x_t: torch.Tensor, t: torch.Tensor, cond: Conditioning,
                      use_camera: bool = True) -> torch.Tensor:
        cam = camera_vector(cond, x_t.shape[0], x_t.device)
        if not use_camera:
            cam = torch.zeros_like(cam)
        with torch.no_grad():
            pred = self._forward(x_t, t, cond, cam)
            return self.schedule.to_eps(pred, x_t.float(), t.to(x_t.device), self.prediction_type)

    def training_loss(self, x0: torch.Tensor, cond: Conditioning, gen: torch.Generator) -> torch.Tensor:
        """MSE against ε or v (the base model's own target) at fresh t ∈ [0, T) with fresh noise."""
        b, dev = x0.shape[0], x0.device
        x0 = x0.detach().float()
        t = torch.randint(0, self.schedule.num_steps, (b,), generator=gen)
        eps = torch.randn(x0.shape, generator=gen).to(dev)
        cam = camera_vector(cond, b, dev)
        if float(torch.rand((), generator=gen)) < self.camera_dropout:
            cam = torch.zeros_like(cam)
        t = t.to(dev)
        pred = self._forward(self.schedule.add_noise(x0, eps, t), t, cond, cam)
        return F.mse_loss(pred, self.schedule.target(x0, eps, t, self.prediction_type))

    def trainable_parameters(self) -> list[nn.Parameter]:
        return list(self.parameters())  # adapter switching toggles requires_grad; these are always φ's

    def release(self) -> None:
        """Remove this adapter and the camera hook from the UNet (a later stage builds a fresh ε_φ)."""
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
            self.unet.delete_adapters(self.adapter_name)
