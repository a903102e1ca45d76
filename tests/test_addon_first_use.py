"""First use of the add-on (issue 13): previews by time, job states, errors in full, re-texture refusals."""
from __future__ import annotations

import pytest

bpy = pytest.importorskip("bpy")

from addon_helpers import ADDON, addon  # noqa: E402,F401


def test_preview_preference_is_seconds_and_the_engine_takes_it(addon):
    from blender_addon import job_spec
    from engine.presets import make_spec
    prefs = bpy.context.preferences.addons[ADDON].preferences
    s = bpy.context.scene.vsdream
    s.preset, s.prior = "cpu-smoke", "analytic:marker"
    prefs.preview_interval = 5.0
    req = job_spec.build_request(s, prefs)
    assert all(req["overrides"][n]["preview_interval_s"] == 5.0 for n in job_spec.STAGE_NAMES)
    spec = make_spec(req["preset"], req["overrides"])
    assert spec.nerf.preview_interval_s == 5.0 and spec.texture.preview_interval_s == 5.0
