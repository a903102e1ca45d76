"""Hash-grid encoding as one autograd function that saves only the points for backward.

Why: autograd through the corner gather keeps, per sample and level, 8 corner indices and 8
weights (about 1 KB per sample at 16 levels, more with the gathered features), and a 512² view
has millions of samples. This function saves the normalised points u (12 bytes per sample) and
recomputes the corners and trilinear weights in backward, where the table gradient is scattered
with one 1-D `index_add_` per feature. Forward and backward run in slices of `chunk` points, so
the recomputed indices and weights are transient and bounded whatever N is.

Gradients w.r.t. the points are not produced here (the table is what training moves); the
encoding falls back to plain autograd when the points need a gradient (normals from ∇σ).
"""
from __future__ import annotations

import torch

from .hashgrid_index import corner_indices_weights, gather_features

DEFAULT_CHUNK = 1 << 18  # points per slice: ~256 MB of transient indices + weights at 16 levels


class HashEncode(torch.autograd.Function):
    """(table (F, L·T), u (N, 3) in [0, 1]) → (N, L·F); saves u only."""

    @staticmethod
    def forward(ctx, table: torch.Tensor, u: torch.Tensor, res: torch.Tensor, dense: torch.Tensor | int,
                table_size: int, chunk: int) -> torch.Tensor:
        n_levels, f = res.numel(), table.shape[0]
        out = table.new_empty(u.shape[0], n_levels * f)
        for start in range(0, u.shape[0], chunk):
            part = u[start:start + chunk]
            idx, w = corner_indices_weights(part, res, dense, table_size)
            out[start:start + part.shape[0]] = gather_features(table, idx, w.to(table.dtype))
        ctx.save_for_backward(u)
        ctx.grid = (res, dense, table_size, chunk, tuple(table.shape), table.dtype)
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        (u,) = ctx.saved_tensors
        res, dense, table_size, chunk, (f, rows), dtype = ctx.grid
        grad_table = None
        if ctx.needs_input_grad[0]:
            grad_table = torch.zeros(f, rows, dtype=dtype, device=grad_out.device)
            n_levels = res.numel()
            for start in range(0, u.shape[0], chunk):
                part = u[start:start + chunk]
                idx, w = corner_indices_weights(part, res, dense, table_size)
                g = grad_out[start:start + part.shape[0]].reshape(part.shape[0], n_levels, f).permute(2, 1, 0)
                flat = idx.reshape(-1)
                for k in range(f):
                    grad_table[k].index_add_(0, flat, (w * g[k]).reshape(-1).to(dtype))
        return grad_table, None, None, None, None, None


def hash_encode(table: torch.Tensor, u: torch.Tensor, res: torch.Tensor, dense: torch.Tensor | int, table_size: int,
                chunk: int = DEFAULT_CHUNK) -> torch.Tensor:
    """Encode points u (N, 3) in [0, 1] with a gradient for `table` only (u must not need one)."""
    if u.requires_grad:
        raise ValueError("hash_encode gives no gradient w.r.t. the points: use gather_features for that")
    if chunk < 1:
        raise ValueError(f"chunk = {chunk}: must be ≥ 1")
    return HashEncode.apply(table, u, res, dense, table_size, int(chunk))
