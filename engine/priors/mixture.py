"""Exact noise prediction of a diffused Gaussian mixture (DESIGN.md §5).

p₀ = Σ_k π_k N(m_k, s²I) diffuses to Σ_k π_k N(α m_k, v I) with v = α²s² + σ²; then
ε*(x_t) = −σ ∇ log p_t(x_t) = σ Σ_k w_k (x_t − α m_k) / v, w = softmax_k(log π_k − ‖x_t − α m_k‖²/2v).
"""
from __future__ import annotations

import torch


def mixture_eps(x_t: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor, means: torch.Tensor,
                log_pi: torch.Tensor, s: float) -> torch.Tensor:
    """x_t (B, …); alpha, sigma broadcastable to x_t (B, 1, …); means (K, B, …) per batch element;
    log_pi (K,) or (K, B). Responsibilities via log-sum-exp, stable for thousands of dimensions."""
    v = alpha * alpha * (s * s) + sigma * sigma  # (B, 1, …)
    diff = x_t.unsqueeze(0) - alpha.unsqueeze(0) * means  # (K, B, …)
    dims = tuple(range(2, diff.dim()))
    sq = (diff * diff).sum(dim=dims) if dims else diff * diff  # (K, B)
    v_b = v.reshape(v.shape[0], -1)[:, 0]  # (B,)
    logits = (log_pi if log_pi.dim() == 2 else log_pi[:, None]) - sq / (2.0 * v_b[None])
    w = torch.softmax(logits, dim=0).reshape(*logits.shape, *([1] * (diff.dim() - 2)))
    return sigma * (w * diff).sum(dim=0) / v
