"""Shared set-up for the Blender add-on tests: enable it the way Blender does, isolate its files."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ADDON = "blender_addon"
if str(ROOT) not in sys.path:  # the add-on is imported from the source tree as `blender_addon`
    sys.path.insert(0, str(ROOT))


def enable():
    import addon_utils
    mod = addon_utils.enable(ADDON, default_set=True, handle_error=_raise)
    assert mod is not None, "the add-on did not enable"
    return mod


def disable() -> None:
    import addon_utils
    addon_utils.disable(ADDON, default_set=True, handle_error=_raise)


def _raise(exc: BaseException) -> None:
    raise exc


@pytest.fixture
def addon(tmp_path, monkeypatch):
    """The enabled add-on with its user folder in tmp; disabled (engine stopped) afterwards."""
    import bpy
    monkeypatch.setenv("VSDREAM_USER_DIR", str(tmp_path / "user"))
    bpy.ops.wm.read_factory_settings(use_empty=True)
    mod = enable()
    from blender_addon.job_state import EngineView, JobView
    from blender_addon.session import SESSION
    SESSION.job, SESSION.engine_view = JobView(), EngineView()
    try:
        yield mod
    finally:
        disable()


def local_engine(context=None) -> None:
    """Point the preferences at this interpreter: the repo's .venv has the engine installed."""
    import bpy
    prefs = (context or bpy.context).preferences.addons[ADDON].preferences
    prefs.connection_mode = "LOCAL"
    prefs.engine_python = sys.executable
    prefs.device = "cpu"


def pump_until(predicate, timeout_s: float) -> bool:
    from blender_addon import pump
    return pump.run_until(predicate, timeout_s)
