"""VSDream for Blender: text → textured 3D (Variational Score Distillation) from a sidebar panel.

Blender side: stdlib + bpy only. The engine (torch) runs in its own process, started with its own
Python and reached over a loopback socket (DESIGN.md §1). Installs as a 4.2+ extension
(blender_manifest.toml) and, for older Blenders, as a legacy add-on (bl_info).
"""
bl_info = {
    "name": "VSDream",
    "author": "VSDream developers",
    "version": (0, 1, 0),
    "blender": (3, 4, 0),
    "location": "3D Viewport > Sidebar > VSDream",
    "description": "Text to textured 3D with Variational Score Distillation",
    "category": "3D View",
}

import atexit  # noqa: E402

from . import operators, overlay_draw, panels, preferences, properties, pump  # noqa: E402
from .session import SESSION  # noqa: E402

_MODULES = (preferences, properties, operators, panels)
_atexit_done = False


def _stop_engine_at_exit() -> None:
    SESSION.shutdown()


def register():
    global _atexit_done
    for module in _MODULES:
        module.register()
    overlay_draw.register()
    pump.start()
    if not _atexit_done:
        atexit.register(_stop_engine_at_exit)
        _atexit_done = True


def unregister():
    pump.stop()
    overlay_draw.unregister()
    SESSION.shutdown()
    for module in reversed(_MODULES):
        module.unregister()
