"""Thin POST_VIEW draw handler for the camera-range overlay (geometry: overlay_geometry.py).

Never registered in background mode (drawing raises there). Restores the GPU state it changes
and respects the viewport's overlay toggle.
"""
import bpy

from . import overlay_geometry, preferences

_handle = None
_shader = None


def _polyline_shader():
    global _shader
    if _shader is None:
        import gpu
        for name in ("POLYLINE_UNIFORM_COLOR", "3D_POLYLINE_UNIFORM_COLOR"):  # 4.x, then 3.x
            try:
                _shader = gpu.shader.from_builtin(name)
                break
            except (ValueError, TypeError):
                continue
    return _shader


def _segments(geo) -> list:
    """Flatten polylines and frustum segments into LINES vertex pairs."""
    coords = []
    for line in geo.rings + geo.meridians:
        for a, b in zip(line, line[1:], strict=False):
            coords += [tuple(a), tuple(b)]
    for frustum in geo.frusta:
        for a, b in frustum:
            coords += [tuple(a), tuple(b)]
    return coords


def draw() -> None:
    context = bpy.context
    space = context.space_data
    scene = context.scene
    settings = getattr(scene, "vsdream", None)
    if settings is None or not settings.show_overlay:
        return
    if space is None or space.type != "VIEW_3D" or not space.overlay.show_overlays:
        return
    import gpu
    from gpu_extras.batch import batch_for_shader
    shader = _polyline_shader()
    if shader is None:
        return
    geo = overlay_geometry.build_overlay(overlay_geometry.settings_from_scene(settings, scene.cursor.location))
    batch = batch_for_shader(shader, "LINES", {"pos": _segments(geo)})
    color = tuple(getattr(preferences.get(context), "overlay_color", (0.2, 0.8, 1.0, 0.8)))
    gpu.state.blend_set("ALPHA")
    gpu.state.depth_test_set("LESS_EQUAL")
    try:
        shader.bind()
        shader.uniform_float("viewportSize", gpu.state.viewport_get()[2:])
        shader.uniform_float("lineWidth", 1.5)
        shader.uniform_float("color", color)
        batch.draw(shader)
    finally:
        gpu.state.depth_test_set("NONE")
        gpu.state.blend_set("NONE")


def register() -> None:
    global _handle
    if bpy.app.background or _handle is not None:
        return
    _handle = bpy.types.SpaceView3D.draw_handler_add(draw, (), "WINDOW", "POST_VIEW")


def unregister() -> None:
    global _handle
    if _handle is not None:
        bpy.types.SpaceView3D.draw_handler_remove(_handle, "WINDOW")
        _handle = None
