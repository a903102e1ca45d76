"""Machine-specific settings: engine Python, connection, output folder, overlay colour.

`bl_idname = __package__` so this works both as a legacy add-on and as `bl_ext.<repo>.vsdream`.
"""
import types

import bpy
from bpy.props import EnumProperty, FloatProperty, FloatVectorProperty, IntProperty, StringProperty

from . import engine_process, paths, session, torch_choice, weights_download
from .version import VERSION

PACKAGE = paths.ADDON_PACKAGE


class VSDREAM_AP_preferences(bpy.types.AddonPreferences):
    bl_idname = PACKAGE

    engine_python: StringProperty(
        name="Engine Python", subtype="FILE_PATH", default="",
        description="Python interpreter of the engine's own environment (with torch). "
                    "Empty: the environment 'Set up engine' created")
    base_python: StringProperty(
        name="Set-up Python", subtype="FILE_PATH", default="",
        description="Python used to create the engine environment. Empty: Blender's own Python")
    torch_build: EnumProperty(
        name="Torch build", default="auto",
        description="Which torch 'Set up engine' installs. Auto: the CUDA build matching the NVIDIA driver, "
                    "Apple's MPS on Apple Silicon, else the CPU build",
        items=[("auto", "Auto (detect)", "Detect the GPU and pick the matching build"),
               ("cpu", "CPU", "The CPU build (a few hundred MB)"),
               *[(b, f"CUDA {b[2:-1]}.{b[-1]}", f"PyTorch's {b} build (needs a driver for CUDA {b[2:-1]}.{b[-1]}+)")
                 for b in torch_choice.CUDA_BUILDS],
               ("default", "pip's default", "Whatever the configured package index gives (PyPI)")])
    connection_mode: EnumProperty(name="Connection", items=[
        ("LOCAL", "Start locally", "Start the engine on this computer when needed"),
        ("REMOTE", "Remote engine", "Connect to an engine already running at host:port")], default="LOCAL")
    remote_host: StringProperty(name="Host", default="127.0.0.1")
    remote_port: IntProperty(name="Port", default=0, min=0, max=65535)
    remote_token: StringProperty(name="Token", subtype="PASSWORD", default="",
                                 description="The VSDREAM_TOKEN the remote engine was started with")
    remote_fingerprint: StringProperty(
        name="Fingerprint", default="",
        description="SHA-256 certificate fingerprint the engine printed when started with --allow-remote "
                    "(colons optional). The add-on talks TLS and refuses any other certificate. Empty: plain "
                    "TCP, allowed only to 127.0.0.1 (an SSH tunnel)")
    device: EnumProperty(name="Device", items=[("auto", "Auto", "GPU when present"), ("cpu", "CPU", ""),
                                               ("cuda", "CUDA", ""), ("mps", "Apple GPU", "")], default="auto")
    output_dir: StringProperty(name="Output folder", subtype="DIR_PATH", default="",
                               description="Where run folders go. Empty: the extension's user folder")
    preview_interval: FloatProperty(name="Preview every (s)", default=30.0, min=1.0, max=3600.0,
                                    description="Seconds between preview frames whatever the step rate "
                                                "(the first comes about 10 s into each stage)")
    handshake_timeout: FloatProperty(name="Start timeout (s)", default=120.0, min=5.0, max=3600.0)
    stall_after: FloatProperty(name="Stalled after (s)", default=30.0, min=3.0, max=3600.0,
                               description="Mark the engine stalled when it sends nothing for this long")
    overlay_color: FloatVectorProperty(name="Overlay colour", subtype="COLOR", size=4, min=0.0, max=1.0,
                                       default=(0.2, 0.8, 1.0, 0.8))

    def draw(self, context):
        layout = self.layout
        rt = context.window_manager.vsdream
        col = layout.column()
        col.prop(self, "connection_mode", expand=True)
        if self.connection_mode == "LOCAL":
            col.prop(self, "engine_python")
            col.prop(self, "device")
            row = col.row(align=True)
            row.operator("vsdream.check_engine", icon="CHECKMARK")
            row.operator("vsdream.setup_engine", icon="CONSOLE")
            if rt.check_report:
                box = col.box()
                for line in rt.check_report.splitlines():
                    box.label(text=line)
            if rt.setup_running or rt.setup_log:
                box = col.box()
                box.label(text="Engine set-up" + (" (running…)" if rt.setup_running else ""))
                for line in rt.setup_log.splitlines()[-8:]:
                    box.label(text=line)
            row = col.row(align=True)
            row.operator("vsdream.download_weights", icon="IMPORT")
            if weights_download.STATE.running:
                row.operator("vsdream.stop_weights", icon="CANCEL")
            lines = weights_download.STATE.lines()
            if lines or weights_download.STATE.running:
                box = col.box()
                box.label(text="Weights" + (" (downloading…)" if weights_download.STATE.running else ""))
                for line in lines or ["Listing the files…"]:
                    box.label(text=line)
            col.prop(self, "torch_build")
            col.prop(self, "base_python")
        else:
            col.prop(self, "remote_host")
            col.prop(self, "remote_port")
            col.prop(self, "remote_token")
            col.prop(self, "remote_fingerprint")
        col.separator()
        col.prop(self, "output_dir")
        col.prop(self, "preview_interval")
        col.prop(self, "handshake_timeout")
        col.prop(self, "stall_after")
        col.prop(self, "overlay_color")


def get(context=None):
    """This add-on's preferences; the declared defaults when it was registered without being
    enabled through Blender (register() called directly by a script)."""
    context = context or bpy.context
    addon = context.preferences.addons.get(PACKAGE)
    if addon is not None and addon.preferences is not None:
        return addon.preferences
    return types.SimpleNamespace(**{name: getattr(prop, "keywords", {}).get("default")
                                    for name, prop in VSDREAM_AP_preferences.__annotations__.items()})


def engine_python(prefs) -> str:
    return engine_process.default_engine_python(prefs.engine_python and bpy.path.abspath(prefs.engine_python),
                                                paths.venv_python(paths.engine_venv()))


def connect_config(context=None):
    """Everything a (background) connect needs, read on the main thread."""
    prefs = get(context)
    backend = paths.bundled_backend()
    return session.ConnectConfig(
        mode=prefs.connection_mode, host=prefs.remote_host.strip() or "127.0.0.1",
        port=int(prefs.remote_port), token=prefs.remote_token, fingerprint=prefs.remote_fingerprint.strip(),
        engine_python=engine_python(prefs),
        runs_dir=str(paths.output_dir(prefs)), log_path=str(paths.engine_log()),
        pid_path=str(paths.pid_file()), backend_dir=str(backend) if backend.is_dir() else "",
        device="" if prefs.device == "auto" else prefs.device,
        handshake_timeout=float(prefs.handshake_timeout),
        client=session.client_name(bpy.app.version_string, VERSION))


CLASSES = (VSDREAM_AP_preferences,)


register, unregister = bpy.utils.register_classes_factory(CLASSES)
