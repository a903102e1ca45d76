"""The one place ε_φ is built and trained (DESIGN.md §3 step 6), for every stage, bench and test.

Optimiser: AdamW at the stage's `lr_phi` with PHI_WEIGHT_DECAY = 0.01, torch's AdamW default,
which is what both reference implementations run on the LoRA and camera MLP. The decay is kept
on purpose: it pulls a LoRA that stops being trained (a view the cameras rarely visit) back
toward the base model rather than leaving stale updates in place.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..priors.base import Conditioning, Prior, VariationalScore
from ..spec import StageSpec

PHI_WEIGHT_DECAY = 0.01


@dataclass
class PhiTrainer:
    """ε_φ with its optimiser; `train` is one step on the detached renders of all particles."""

    phi: VariationalScore
    opt: torch.optim.Optimizer

    def train(self, renders: Sequence[tuple[torch.Tensor, Conditioning]], gen: torch.Generator) -> float:
        """Mean denoising loss over the renders, one optimiser step; returns the loss."""
        self.opt.zero_grad(set_to_none=True)
        loss = sum(self.phi.training_loss(x0, cond, gen) for x0, cond in renders) / len(renders)
        loss.backward()
        self.opt.step()
        return float(loss.detach())

    def state_dict(self) -> dict[str, Any]:
        return {"phi": self.phi.state_dict(), "opt_phi": self.opt.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.phi.load_state_dict(state["phi"])
        self.opt.load_state_dict(state["opt_phi"])


class HoldsPhi:
    """Mixed into a stage that may train ε_φ: the trainer is the one piece of state; ε_φ, its
    optimiser and their checkpoint entries are read off it (None / null entries for SDS)."""

    phi_trainer: PhiTrainer | None = None

    @property
    def phi(self) -> VariationalScore | None:
        return self.phi_trainer.phi if self.phi_trainer is not None else None

    @property
    def opt_phi(self) -> torch.optim.Optimizer | None:
        return self.phi_trainer.opt if self.phi_trainer is not None else None

    def phi_state(self) -> dict[str, Any]:
        return self.phi_trainer.state_dict() if self.phi_trainer is not None else {"phi": None, "opt_phi": None}

    def load_phi_state(self, state: dict[str, Any]) -> None:
        if self.phi_trainer is not None and state.get("phi") is not None:
            self.phi_trainer.load_state_dict(state)


def phi_optimizer(phi: VariationalScore, lr: float) -> torch.optim.Optimizer:
    return torch.optim.AdamW(phi.trainable_parameters(), lr=lr, weight_decay=PHI_WEIGHT_DECAY)


def build_phi(prior: Prior, stage: StageSpec, gen: torch.Generator, device: torch.device) -> PhiTrainer | None:
    """A fresh ε_φ and its optimiser for a VSD stage; None for SDS (ε_φ ≡ ε needs nothing)."""
    if stage.method != "vsd":
        return None
    phi = prior.make_variational_score(stage, gen).to(device)
    return PhiTrainer(phi, phi_optimizer(phi, stage.lr_phi))
