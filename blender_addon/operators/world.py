"""Use a scene job's panorama as the World background (world_background.py does the nodes)."""
import bpy
from bpy.props import StringProperty

from .. import panorama_result, world_background
from ..session import SESSION
from ._common import explain


def current_panorama() -> str:
    """The panorama of the job the panel follows, once it is done ("" otherwise)."""
    job = SESSION.job
    if job.state != "DONE":
        return ""
    return panorama_result.first_panorama(job.run_dir, job.artifacts)


class VSDREAM_OT_use_panorama(bpy.types.Operator):
    bl_idname = "vsdream.use_panorama"
    bl_label = "Use as World background"
    bl_description = ("Show the scene job's 360° panorama as this scene's World (Environment Texture, "
                      "equirectangular): renders and the viewport's Rendered mode see it all around")
    bl_options = {"REGISTER", "UNDO"}

    filepath: StringProperty(subtype="FILE_PATH", options={"HIDDEN", "SKIP_SAVE"},
                             description="The panorama image; empty = the current job's")

    @classmethod
    def poll(cls, context):
        if context.scene is None:
            return explain(cls, "No scene to set the World of")
        return True

    def execute(self, context):
        path = self.filepath or current_panorama()
        if not path:
            self.report({"ERROR"}, "This job has no panorama: only a job with Mode Scene writes one")
            return {"CANCELLED"}
        try:
            world = world_background.set_world_background(context.scene, path)
        except (OSError, RuntimeError) as exc:
            self.report({"ERROR"}, f"Could not use {path} as the World: {exc}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"World '{world.name}' shows {path}")
        return {"FINISHED"}


CLASSES = (VSDREAM_OT_use_panorama,)
