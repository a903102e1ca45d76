"""Re-texture the selected mesh: check it, copy it, write the GLB in a thread, send it; the pump swaps
the material in when the job is done.

On the main thread only checks and bulk copies run (≤ 50 ms at 100k faces, tests/gui/main_thread_bench.py);
a mesh without UVs gets a box projection computed in a thread and written back with one `foreach_set`.
A mesh without faces is refused before anything is changed.
"""
import threading
import time

import bpy
from bpy.props import StringProperty

from .. import job_spec, mesh_export, preferences, pump
from .._protocol_import import protocol
from ..session import SESSION
from ._common import explain
from .generate import build_request, start_job


def _in_thread(kind: str, job, fn, *args) -> None:
    """Run fn(*args) in a worker thread; its result (or exception) comes back as (kind, (job, value))."""
    def work():
        time.sleep(0.02)  # let the operator return first: this thread would hold the GIL from its first line
        try:
            value = fn(*args)
        except Exception as exc:  # noqa: BLE001 - reported to the user through the job, never lost
            value = exc
        SESSION.inbox.put((kind, (job, value)))
    threading.Thread(target=work, name=f"vsdream-{kind}", daemon=True).start()


def _submit_frame(snap, request) -> object:
    """Worker thread: the GLB of the snapshot inside a submit frame."""
    return protocol.submit(preset=request["preset"], overrides=request["overrides"],
                           mesh=mesh_export.glb_bytes(snap), mesh_name="input.glb")


def _export(context, job, obj, request) -> None:
    snap = mesh_export.snapshot(obj, context.evaluated_depsgraph_get())
    job.uv_map = snap.uv_map
    _in_thread("retexture_ready", job, _submit_frame, snap, request)


def _on_item(kind, data) -> bool:
    """Pump hook (main thread): UVs computed → written, then export; GLB ready → sent."""
    if kind not in ("retexture_uvs", "retexture_export", "retexture_ready"):
        return False
    job, value = data
    if job is not SESSION.job or job.state != "SUBMITTING":
        return False  # superseded by another job
    if isinstance(value, Exception):
        job.fail("export_failed", f"could not prepare {job.target_object} for the engine: "
                                  f"{type(value).__name__}: {value}")
        return True
    if kind == "retexture_uvs":
        obj = bpy.data.objects.get(job.target_object)
        if obj is None:
            job.fail("export_failed", f"{job.target_object} was deleted before it was sent")
            return True
        layer = obj.data.uv_layers.new(name=mesh_export.UV_MAP_NAME)
        layer.data.foreach_set("uv", value)
        obj.data.update()
        SESSION.inbox.put(("retexture_export", (job, obj.name)))  # the next tick: one step per tick
        return True
    if kind == "retexture_export":
        obj = bpy.data.objects.get(value)
        if obj is None:
            job.fail("export_failed", f"{value} was deleted before it was sent")
            return True
        _export(bpy.context, job, obj, job.pending_request)
        return True
    job.pending_request = None
    SESSION.send(value, cfg=preferences.connect_config())
    return True


def register_hooks() -> None:
    if _on_item not in pump._hooks:
        pump.on_item(_on_item)


class VSDREAM_OT_retexture(bpy.types.Operator):
    bl_idname = "vsdream.retexture"
    bl_label = "Re-texture selected"
    bl_description = "Paint a new texture onto the selected mesh from the prompt; the object stays"
    bl_options = {"REGISTER"}

    overrides: StringProperty(name="Overrides (JSON)", default="", options={"SKIP_SAVE"})

    @classmethod
    def poll(cls, context):
        obj = context.active_object
        if obj is None or obj.type != "MESH":
            return explain(cls, "Select a mesh object to re-texture")
        if SESSION.job.active:
            return explain(cls, "A job is running: cancel it or wait for it to finish")
        problems = job_spec.problems(context.scene.vsdream, mode="retexture")
        if problems:
            return explain(cls, problems[0])
        return True

    def execute(self, context):
        obj = context.active_object
        if mesh_export.face_count(obj, context.evaluated_depsgraph_get()) == 0:
            self.report({"ERROR"}, f"{obj.name} has no faces ({len(obj.data.vertices)} vertices, "
                                   f"{len(obj.data.edges)} edges): re-texture paints surfaces. Nothing was changed")
            return {"CANCELLED"}
        try:
            request = build_request(context, "retexture", self.overrides)
        except (ValueError, protocol.ProtocolError) as exc:
            self.report({"ERROR"}, f"Cannot re-texture {obj.name}: {exc}")
            return {"CANCELLED"}
        job = start_job(context, "retexture", target_object=obj.name)
        job.pending_request = request
        if not obj.data.uv_layers and len(obj.data.polygons):
            self.report({"INFO"}, f"{obj.name} has no UV map: adding '{mesh_export.UV_MAP_NAME}'")
            _in_thread("retexture_uvs", job, mesh_export.box_uvs, mesh_export.uv_input(obj.data))
        else:
            _export(context, job, obj, request)
        pump.refresh(context)
        self.report({"INFO"}, f"Re-texturing {obj.name}: sending it to the engine")
        return {"FINISHED"}


CLASSES = (VSDREAM_OT_retexture,)
