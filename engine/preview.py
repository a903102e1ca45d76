"""Image helpers at the edges: tensors in [0, 1] → 8-bit RGB, PNG files, the contact sheet."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .run_dir import atomic_write_bytes


def to_uint8(img: torch.Tensor) -> np.ndarray:
    """(H, W, 3) float in [0, 1] → (H, W, 3) uint8, top row first."""
    return (img.detach().float().clamp(0, 1).cpu().numpy() * 255.0 + 0.5).astype(np.uint8)


def normal_to_uint8(normal: torch.Tensor) -> np.ndarray:
    """World-space unit normals (H, W, 3) → the usual (n + 1) / 2 colour coding."""
    return to_uint8((normal + 1.0) * 0.5)


def save_png(path: Path, rgb: np.ndarray) -> Path:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    atomic_write_bytes(Path(path), buf.getvalue())
    return Path(path)


def contact_sheet(images: list[np.ndarray], columns: int = 4, pad: int = 2) -> np.ndarray:
    """Tile equally sized uint8 images into one sheet on a white background."""
    h, w = images[0].shape[:2]
    rows = (len(images) + columns - 1) // columns
    sheet = np.full((rows * (h + pad) + pad, columns * (w + pad) + pad, 3), 255, dtype=np.uint8)
    for i, img in enumerate(images):
        r, c = divmod(i, columns)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        sheet[y:y + h, x:x + w] = img
    return sheet


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of two images in [0, 1]."""
    mse = torch.mean((a.float() - b.float()) ** 2).clamp_min(1e-12)
    return float(-10.0 * torch.log10(mse))


def psnr_by_path(rgb: torch.Tensor, ref: torch.Tensor, orbit: int) -> dict[str, float]:
    """PSNR over all held-out views; with a centre pan after the first `orbit` views (scenes,
    CameraSampler.held_out_views), also over the orbit and the pan separately."""
    out = {"psnr": psnr(rgb, ref)}
    if orbit < rgb.shape[0]:
        out.update(psnr_orbit=psnr(rgb[:orbit], ref[:orbit]), psnr_pan=psnr(rgb[orbit:], ref[orbit:]))
    return out


def mean_over_particles(entries: list[dict], keys: tuple[str, ...] = ("psnr", "psnr_orbit", "psnr_pan")) -> dict:
    """The particles' mean of each of `keys` that they report."""
    return {k: float(np.mean([e[k] for e in entries])) for k in keys if entries and k in entries[0]}
