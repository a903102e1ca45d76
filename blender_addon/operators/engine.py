"""Start / Stop / Check / Set up the engine. Slow work runs in threads; results come via the pump."""
import threading

import bpy

from .. import engine_check, engine_setup, paths, preferences, pump, weights_download
from ..session import SESSION
from ._common import explain


def _runtimes():
    return [wm.vsdream for wm in bpy.data.window_managers if getattr(wm, "vsdream", None) is not None]


def _on_item(kind, data) -> bool:
    """Pump hook: show check reports and set-up progress in the preferences."""
    if kind == "check_result":
        for rt in _runtimes():
            rt.check_report = engine_check.format_report(data)
        return True
    if kind == "setup_line":
        for rt in _runtimes():
            rt.setup_log = "\n".join((rt.setup_log.splitlines() + [data[:200]])[-40:])
        return True
    if kind == "weights_event":
        event, when = data
        weights_download.STATE.apply(event, when)
        return True
    if kind == "weights_done":
        ok, message = data
        state = weights_download.STATE
        state.running = False
        if not state.result or not ok:
            state.ok, state.result = ok, (message if not state.result else f"{state.result} ({message})")
        return True
    if kind == "setup_done":
        ok, message = data
        for rt in _runtimes():
            rt.setup_running = False
            rt.setup_log = "\n".join((rt.setup_log.splitlines() + [("OK: " if ok else "FAILED: ") + message])[-40:])
        return True
    return False


def register_hooks():
    if _on_item not in pump._hooks:
        pump.on_item(_on_item)


class VSDREAM_OT_start_engine(bpy.types.Operator):
    bl_idname = "vsdream.start_engine"
    bl_label = "Start engine"
    bl_description = "Start (or connect to) the engine without submitting a job"

    @classmethod
    def poll(cls, context):
        if SESSION.connected:
            return explain(cls, "The engine is already running")
        if SESSION.connecting:
            return explain(cls, "The engine is starting")
        return True

    def execute(self, context):
        SESSION.ensure_connected(preferences.connect_config(context))
        pump.refresh(context)
        return {"FINISHED"}


class VSDREAM_OT_stop_engine(bpy.types.Operator):
    bl_idname = "vsdream.stop_engine"
    bl_label = "Stop engine"
    bl_description = "Stop the local engine and free its GPU memory (running jobs keep their checkpoint)"

    @classmethod
    def poll(cls, context):
        if not (SESSION.connected or SESSION.connecting or SESSION.engine):
            return explain(cls, "The engine is not running")
        return True

    def execute(self, context):
        SESSION.disconnect(stop_engine=True, wait=False, grace_s=60.0)  # jobs get time to checkpoint
        pump.refresh(context)
        return {"FINISHED"}


class VSDREAM_OT_check_engine(bpy.types.Operator):
    bl_idname = "vsdream.check_engine"
    bl_label = "Check engine"
    bl_description = "Report the engine's Python, torch, CUDA, GPU memory and VSDream version"

    wait: bpy.props.BoolProperty(default=False, options={"HIDDEN", "SKIP_SAVE"})

    def execute(self, context):
        prefs = preferences.get(context)
        python = preferences.engine_python(prefs)
        backend = paths.bundled_backend()
        backend_dir = str(backend) if backend.is_dir() else ""
        context.window_manager.vsdream.check_report = "Checking the engine…"

        def work():
            SESSION.inbox.put(("check_result", engine_check.run_check(python, backend_dir)))
        thread = threading.Thread(target=work, name="vsdream-check", daemon=True)
        thread.start()
        if self.wait:  # scripts and tests
            thread.join()
            pump.drain(context)
        return {"FINISHED"}


class VSDREAM_OT_setup_engine(bpy.types.Operator):
    bl_idname = "vsdream.setup_engine"
    bl_label = "Set up engine"
    bl_description = ("Create the engine's own Python environment (torch and the rest) in the add-on's "
                      "user folder; downloads several GB")

    @classmethod
    def poll(cls, context):
        if context.window_manager.vsdream.setup_running:
            return explain(cls, "The set-up is already running")
        return True

    def execute(self, context):
        prefs = preferences.get(context)
        backend = engine_setup.backend_source(paths.bundled_backend())
        if backend is None:
            self.report({"ERROR"}, "No bundled engine found: install the VSDream zip built by build_addon.py")
            return {"CANCELLED"}
        venv = paths.engine_venv()
        rt = context.window_manager.vsdream
        rt.setup_running, rt.setup_log = True, f"Setting up {venv}"
        engine_setup.start_setup(engine_setup.default_base_python(prefs.base_python), venv, backend,
                                 paths.venv_python(venv), getattr(prefs, "torch_build", "auto"), SESSION.inbox)
        return {"FINISHED"}


class VSDREAM_OT_download_weights(bpy.types.Operator):
    bl_idname = "vsdream.download_weights"
    bl_label = "Download weights"
    bl_description = ("Fetch the Stable Diffusion weights VSD uses into the Hugging Face cache with the engine's "
                      "Python (several GB; shows the space needed first; an interrupted download continues)")

    @classmethod
    def poll(cls, context):
        if weights_download.STATE.running:
            return explain(cls, "The download is already running")
        return True

    def execute(self, context):
        python = preferences.engine_python(preferences.get(context))
        backend = paths.bundled_backend()
        weights_download.STATE.start()
        weights_download.CURRENT = weights_download.Fetch(
            weights_download.fetch_command(python), weights_download.engine_env(str(backend) if backend.is_dir() else ""),
            lambda kind, data: SESSION.inbox.put((kind, data))).start()
        return {"FINISHED"}


class VSDREAM_OT_stop_weights(bpy.types.Operator):
    bl_idname = "vsdream.stop_weights"
    bl_label = "Stop download"
    bl_description = "Stop the weights download; 'Download weights' later continues where it stopped"

    @classmethod
    def poll(cls, context):
        if not weights_download.STATE.running or weights_download.CURRENT is None:
            return explain(cls, "No download is running")
        return True

    def execute(self, context):
        weights_download.CURRENT.stop()
        return {"FINISHED"}


CLASSES = (VSDREAM_OT_start_engine, VSDREAM_OT_stop_engine, VSDREAM_OT_check_engine, VSDREAM_OT_setup_engine,
           VSDREAM_OT_download_weights, VSDREAM_OT_stop_weights)
