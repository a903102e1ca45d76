"""Window check: a real Blender window (Debian's 3.4 under Xvfb) with the add-on, a live preview
and the camera-range overlay, saved as a PNG.

    xvfb-run -a blender --factory-startup --python tests/gui/screenshot.py -- \
        --addon build/addon/vsdream --engine-python .venv/bin/python --out out/screenshot.png

(`make screenshot` builds the add-on and runs this.) The add-on is installed the legacy way
(bl_info), since Blender 3.4 predates extensions. Everything runs from a timer so the window
keeps drawing: set up the scene, press Generate, wait for preview frames, take the screenshot,
cancel, stop the engine, quit. Exit status 0 only when the PNG was written.
"""
import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

import bpy

ADDON = "vsdream"


def parse_args():
    argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []
    ap = argparse.ArgumentParser(prog="screenshot.py")
    ap.add_argument("--addon", type=Path, required=True, help="the staged add-on folder (build/addon/vsdream)")
    ap.add_argument("--engine-python", required=True, help="the engine's Python (with torch)")
    ap.add_argument("--out", type=Path, default=Path("out/screenshot.png"))
    ap.add_argument("--frames", type=int, default=12, help="preview frames to wait for")
    ap.add_argument("--timeout", type=float, default=400.0)
    return ap.parse_args(argv)


ARGS = parse_args()
bpy.context.preferences.view.show_splash = False  # read before the splash would open
STATE = {"step": "setup", "t0": time.monotonic(), "shot_at": None, "status": 1}


def install_legacy() -> None:
    root = Path(tempfile.mkdtemp(prefix="vsdream_gui_")) / "addons"
    shutil.copytree(ARGS.addon.resolve(), root / ADDON)
    os.environ["VSDREAM_USER_DIR"] = str(ARGS.out.resolve().parent / "screenshot_user")
    sys.path.insert(0, str(root))
    import addon_utils
    if addon_utils.enable(ADDON, default_set=True, handle_error=None) is None:
        raise RuntimeError("the add-on did not enable")


def view3d():
    for window in bpy.context.window_manager.windows:
        for area in window.screen.areas:
            if area.type == "VIEW_3D":
                return window, area
    raise RuntimeError("no 3D viewport in the startup file")


def show_vsdream_tab() -> None:
    """Open the sidebar on the VSDream tab: Region.active_panel_category where Blender has it,
    else hide the other tabs' Python panels."""
    window, area = view3d()
    region = next(r for r in area.regions if r.type == "UI")
    if hasattr(region, "active_panel_category"):
        area.spaces.active.show_region_ui = True
        region.active_panel_category = "VSDream"
        return
    for cls in list(bpy.types.Panel.__subclasses__()):
        if (getattr(cls, "bl_space_type", "") == "VIEW_3D" and getattr(cls, "bl_region_type", "") == "UI"
                and getattr(cls, "bl_category", "") != "VSDream" and not cls.__name__.startswith("VSDREAM")):
            try:
                bpy.utils.unregister_class(cls)
            except RuntimeError:
                pass
    area.spaces.active.show_region_ui = True


def setup() -> None:
    install_legacy()
    prefs = bpy.context.preferences.addons[ADDON].preferences
    prefs.engine_python = str(Path(ARGS.engine_python).absolute())
    scene = bpy.context.scene
    s = scene.vsdream
    s.prompt, s.preset, s.prior = "a small toy robot", "cpu-smoke", "analytic:marker"
    s.azimuth_min, s.azimuth_max = -2.2, 2.2
    # no active object: Blender 3.4's "Item" tab (a C panel that needs one) then hides itself and
    # the sidebar opens on VSDream, the first tab left (3.4 cannot pick a tab from Python)
    bpy.context.view_layer.objects.active = None
    show_vsdream_tab()
    _window, area = view3d()
    rv3d = area.spaces.active.region_3d
    rv3d.view_distance = 11.0
    overrides = {"nerf": {"steps": 100000, "preview_every": 2}}
    bpy.ops.vsdream.generate(overrides=json.dumps(overrides))


def step():
    try:
        return _step()
    except Exception:  # noqa: BLE001 - a timer that raises is dropped silently: print and quit
        traceback.print_exc()
        bpy.ops.wm.quit_blender()
        return None


def _step():
    elapsed = time.monotonic() - STATE["t0"]
    if STATE["step"] == "setup":
        setup()
        STATE["step"] = "wait"
        return 0.5
    rt = bpy.context.window_manager.vsdream
    if STATE["step"] == "wait":
        for window in bpy.context.window_manager.windows:
            for area in window.screen.areas:
                area.tag_redraw()
        if rt.job_state in ("FAILED", "CANCELLED"):
            print(f"screenshot: the job ended early: {rt.error_code} {rt.error_message}")
            STATE["step"] = "shoot"
        elif rt.preview_frames >= ARGS.frames or elapsed > ARGS.timeout:
            STATE["step"] = "shoot"
            return 2.0  # let the preview icon and the panel redraw
        return 0.5
    if STATE["step"] == "shoot":
        window, area = view3d()
        ARGS.out.parent.mkdir(parents=True, exist_ok=True)
        with bpy.context.temp_override(window=window, area=area):
            bpy.ops.screen.screenshot(filepath=str(ARGS.out.resolve()))
        print(f"screenshot: wrote {ARGS.out} (engine {rt.engine_state}, job {rt.job_state}, "
              f"{rt.stage} {rt.step}/{rt.total}, {rt.preview_frames} previews)")
        STATE["status"] = 0 if ARGS.out.exists() else 1
        if bpy.ops.vsdream.cancel.poll():
            bpy.ops.vsdream.cancel()
        STATE["step"], STATE["shot_at"] = "stop", time.monotonic()
        return 1.0
    if STATE["step"] == "stop":
        if rt.job_state in ("CANCELLED", "FAILED", "DONE") and not STATE.get("ended_shot"):
            STATE["ended_shot"] = True  # one more frame: the stopped job (label, where it ended, Resume)
            for window in bpy.context.window_manager.windows:
                for area in window.screen.areas:
                    area.tag_redraw()
            return 1.0
        if STATE.get("ended_shot") and not STATE.get("ended_written"):
            STATE["ended_written"] = True
            window, area = view3d()
            ended = ARGS.out.with_name(ARGS.out.stem + "_stopped" + ARGS.out.suffix)
            with bpy.context.temp_override(window=window, area=area):
                bpy.ops.screen.screenshot(filepath=str(ended.resolve()))
            print(f"screenshot: wrote {ended} (job {rt.job_state})")
        if rt.job_state in ("CANCELLED", "FAILED", "DONE") or time.monotonic() - STATE["shot_at"] > 30:
            import addon_utils
            addon_utils.disable(ADDON)  # unregister stops the engine and waits for it
            sys.stdout.flush()
            os._exit(STATE["status"])  # quit_blender would always exit 0
        return 0.5
    return None


bpy.app.timers.register(step, first_interval=1.0)
