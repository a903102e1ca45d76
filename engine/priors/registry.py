"""The one prior table: every prior the engine knows, how it is written, what it needs.

Spec validation, the CLI's help, `vsdream engine check` (and through its report the add-on's
prior list) and `load_prior` all read `PRIORS`. A new prior is one file (a `Prior` subclass with
a `from_spec(spec, device)` classmethod) plus one row here. Importing this module loads no
torch model code: factories are named as "module:Class" and imported when a job builds one.
"""
from __future__ import annotations

import importlib
import unicodedata
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch stays out of spec validation and the CLI's help
    import torch

    from ..spec import JobSpec
    from .base import Prior


@dataclass(frozen=True)
class PriorEntry:
    """One row of the table.

    `native_size` is the side of the square image the prior's model judges (SD-2.1-base: 512, i.e.
    8 × its UNet's 64-latent sample size); every render is resized to it before encoding. None means
    the prior judges images at whatever size the render has (the analytic prior renders its
    reference at the camera's own resolution).
    """

    name: str  # the exact spec value, or the prefix before ':' for parametrised priors
    syntax: str  # how to write it in a spec
    summary: str
    needs_prompt: bool
    native_size: int | None
    weights: str  # what has to be on disk before it runs
    factory: str  # "module:Class" with a from_spec(spec, device) classmethod
    parametrised: bool = False  # 'name:<argument>' forms are accepted
    bare: bool = True  # the bare name alone is a valid value
    model: str | None = None  # SD rows: the diffusers folder or hub id the bare name loads (spec.model overrides)

    def matches(self, value: str) -> bool:
        if value == self.name:
            return self.bare
        return self.parametrised and value.startswith(self.name + ":") and bool(value[len(self.name) + 1:].strip())


PRIORS: tuple[PriorEntry, ...] = (
    PriorEntry("sd", "sd | sd:<hub id or diffusers folder>",
               "Stable Diffusion 2.1-base as the pretrained score, 2.1 as the LoRA ε_φ base",
               needs_prompt=True, native_size=512,
               weights="Stable Diffusion 2.1-base and 2.1 in the Hugging Face cache (vsdream models fetch) "
                       "or a local diffusers folder (--model PATH)",
               factory="engine.priors.sd:StableDiffusionPrior", parametrised=True),
    PriorEntry("analytic", "analytic:<scene>[,<scene>…][,s=<noise>] | analytic:mesh=<path>",
               "exact diffusion model of a known 3D world (built-in scenes or a mesh): tests, benchmarks, demo",
               needs_prompt=False, native_size=None, weights="none",
               factory="engine.priors.analytic:AnalyticPrior", parametrised=True, bare=False),
    PriorEntry("tiny-sd", "tiny-sd", "tiny random-weight Stable Diffusion: exercises the SD code path in seconds",
               needs_prompt=False, native_size=64, weights="none (random weights)",
               factory="engine.priors.sd:StableDiffusionPrior"),
    PriorEntry("sd21-random", "sd21-random",
               "SD-2.1's real architecture with random weights: true per-step cost on a GPU",
               needs_prompt=False, native_size=512, weights="none (random weights)",
               factory="engine.priors.sd:StableDiffusionPrior"),
    PriorEntry("mini-sd", "mini-sd",
               "mini-SD: SD-2.1's parts trained here on the built-in worlds (models/mini-sd, tools/train_mini_sd.py)",
               needs_prompt=True, native_size=64, weights="none (models/mini-sd in the repository)",
               factory="engine.priors.sd:StableDiffusionPrior",
               model=str(Path(__file__).resolve().parents[2] / "models" / "mini-sd")),
)


def find_prior(value: Any) -> PriorEntry | None:
    """The table row a spec's `prior` value selects, or None. The value is taken exactly as written:
    a padded spelling (" analytic:…") selects nothing, so the value a server's path policy checks is
    the value the prior's factory loads (see canonical_prior)."""
    if not isinstance(value, str):
        return None
    return next((e for e in PRIORS if e.matches(value)), None)


def trimmed(value: str) -> str:
    """`value` without padding at either end: white space (Unicode's included: U+00A0, U+3000…) and
    invisible format characters (U+200B zero width space, U+FEFF…), which str.strip() keeps and which
    turn '/etc' into a relative path. One notion of padding for every path value and the prior."""
    start, end = 0, len(value)
    while start < end and _pad(value[start]):
        start += 1
    while end > start and _pad(value[end - 1]):
        end -= 1
    return value[start:end]


def _pad(ch: str) -> bool:
    return ch.isspace() or unicodedata.category(ch) == "Cf"


def analytic_tokens(argument: str) -> list[str]:
    """The parts after 'analytic:', as the analytic prior reads them: 'mesh=<path>' alone keeps the
    whole rest as its path (commas included); otherwise comma-separated scenes and 's=<noise>'."""
    arg = trimmed(argument)
    if arg.startswith("mesh="):
        return ["mesh=" + trimmed(arg[len("mesh="):])]
    return [("mesh=" + trimmed(trimmed(t)[len("mesh="):])) if trimmed(t).startswith("mesh=") else trimmed(t)
            for t in arg.split(",")]


def canonical_prior(value: str) -> str:
    """The one spelling of a prior value: no white space (Unicode's included) around the value, after
    its 'name:', around its scenes or around a mesh path. Spec validation refuses every other
    spelling, so nothing downstream ever strips, and what is checked is what is loaded."""
    name, sep, arg = trimmed(value).partition(":")
    if not sep:
        return name
    name = trimmed(name)
    arg = ",".join(analytic_tokens(arg)) if name == "analytic" else trimmed(arg)
    return f"{name}:{arg}"


def prior_syntax() -> str:
    """What the `prior` field accepts, for error messages and CLI help."""
    return " | ".join(e.syntax for e in PRIORS)


def describe_priors() -> list[dict[str, Any]]:
    """The table as plain data (engine check's report, the add-on's prior list)."""
    return [{k: v for k, v in asdict(e).items() if k != "factory"} for e in PRIORS]


def load_prior(spec: JobSpec, device: torch.device) -> Prior:
    """Build the prior the spec names (weights are loaded here, so call it once per job)."""
    entry = find_prior(spec.prior)
    if entry is None:
        raise ValueError(f"unknown prior {spec.prior!r}; use {prior_syntax()}")
    module_name, class_name = entry.factory.split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls.from_spec(spec, device)
