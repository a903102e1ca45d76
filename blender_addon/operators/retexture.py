"""Re-texture the selected mesh: export it as GLB, send it, swap the material when done."""
import time

import bpy
from bpy.props import StringProperty

from .. import importer, job_spec, paths
from .._protocol_import import protocol
from ..session import SESSION
from ._common import explain
from .generate import submit_job


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
        if importer.ensure_uv_map(obj):
            self.report({"INFO"}, f"{obj.name} had no UV map: added 'VSDream UV'")
        upload = paths.user_dir() / "uploads" / f"{bpy.path.clean_name(obj.name)}-{int(time.time())}.glb"
        try:
            importer.export_for_retexture(context, obj, upload)
            mesh = upload.read_bytes()
            submit_job(context, "retexture", self.overrides, mesh=mesh, target_object=obj.name)
        except (RuntimeError, OSError, ValueError, protocol.ProtocolError) as exc:
            self.report({"ERROR"}, f"Cannot re-texture {obj.name}: {exc}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Re-texturing {obj.name}")
        return {"FINISHED"}


CLASSES = (VSDREAM_OT_retexture,)
