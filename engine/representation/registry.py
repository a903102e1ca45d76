"""The one table of representations: the spec names one, the stages and exporters build it here."""
from __future__ import annotations

from typing import Any

import torch

from ..spec import JobSpec
from .base import ColorField, Representation
from .radiance import RadianceRepresentation

REPRESENTATIONS: dict[str, type] = {"radiance": RadianceRepresentation}


def _kind(spec: JobSpec) -> type:
    return REPRESENTATIONS[spec.representation]


def make_representation(spec: JobSpec, gen: torch.Generator | None = None,
                        device: torch.device | str = "cpu") -> Representation:
    """A freshly initialised particle of the spec's representation."""
    return _kind(spec)(spec, gen=gen, device=device)


def load_representation(spec: JobSpec, state: dict[str, Any], device: torch.device | str = "cpu") -> Representation:
    """A particle rebuilt from its checkpoint state (export needs no stage and no prior)."""
    rep = make_representation(spec, device=device).to(device)
    rep.load_state_dict(state)
    return rep.eval()


def new_color_field(spec: JobSpec, gen: torch.Generator | None = None,
                    device: torch.device | str = "cpu") -> ColorField:
    """A fresh colour field of the spec's representation (re-texture mode starts from one)."""
    return _kind(spec).new_color_field(spec, gen=gen, device=device)


def load_color_field(spec: JobSpec, state: dict[str, Any], device: torch.device | str = "cpu") -> ColorField:
    field = new_color_field(spec, device=device).to(device)
    field.load_state_dict(state)
    return field.eval()
