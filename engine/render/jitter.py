"""Stratified jitter for the render paths: one random offset per ray, drawn on the render's device.

Why one per ray: nerfacc (`stratified=True`) and threestudio shift all of a ray's samples by one
uniform offset; one draw per sample (what this repo did before) cost ~25 M host-side draws and a
96 MiB host→device copy per 512² step. Why a device generator seeded by one draw from the stage's
generator: the numbers never leave the device, the same job seed gives the same renders on the
same device (the stage generator is seeded from the job's), a resumed run repeats them (the stage
generator's state is in the checkpoint), and torch's global RNG is never touched.
"""
from __future__ import annotations

import torch

SEED_END = 2 ** 62


def device_generator(gen: torch.Generator | None, device: torch.device | str) -> torch.Generator | None:
    """A generator on `device` seeded by one draw from `gen` (None when `gen` is None: no jitter).

    One scalar draw per render from the stage's (CPU) generator; a fresh device generator is
    cheap to make (Philox on CUDA: a seed and an offset)."""
    if gen is None:
        return None
    seed = int(torch.randint(0, SEED_END, (1,), generator=gen, device=gen.device))
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    return torch.Generator(device=dev).manual_seed(seed)


def ray_offsets(n_rays: int, dgen: torch.Generator | None, device: torch.device | str,
                dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(n_rays,) offsets in [0, 1) as a fraction of a step: U[0, 1) from `dgen`, 0.5 (midpoints) when None."""
    if dgen is None:
        return torch.full((n_rays,), 0.5, device=device, dtype=dtype)
    return torch.rand(n_rays, generator=dgen, device=dgen.device, dtype=dtype)  # made on the rays' device
