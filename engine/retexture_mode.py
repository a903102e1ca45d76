"""Re-texture mode: what differs when stage 3 paints a user's mesh instead of finishing a text job.

In text mode stage 3 inherits stage 1's colour field, so the presets keep its t at ≤ 0.5 from the
first step (the official code). A user's mesh starts from a fresh colour field: nothing is there to
keep, and the large-t steps are what lay down its colours, so re-texture samples t up to 0.98 until
the preset's annealing step (threestudio's texture stage, which also starts from scratch). The
user's own overrides still win field by field (presets.make_spec applies this under them).
"""
from __future__ import annotations

import copy
from typing import Any

_BUNDLE: dict[str, Any] = {"texture": {"t_max": 0.98}}


def wants_retexture(base: dict[str, Any], overrides: dict[str, Any]) -> bool:
    """Whether a preset (as a dict) with these overrides is a re-texture job."""
    return overrides.get("mode", base.get("mode")) == "retexture"


def retexture_bundle() -> dict[str, Any]:
    return copy.deepcopy(_BUNDLE)
