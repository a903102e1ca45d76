"""Camera section: centre the azimuth/elevation range on the current viewport direction."""
import bpy
from bpy.props import FloatVectorProperty
from mathutils import Vector

from .. import camera_from_view


class VSDREAM_OT_camera_from_view(bpy.types.Operator):
    bl_idname = "vsdream.camera_from_view"
    bl_label = "From view"
    bl_description = "Centre the camera range on the direction you are looking from"
    bl_options = {"REGISTER", "UNDO"}

    direction: FloatVectorProperty(
        name="Direction", size=3, default=(0.0, 0.0, 0.0), options={"HIDDEN", "SKIP_SAVE"},
        description="From the object towards the viewer; zero = the 3D viewport's current view")

    def execute(self, context):
        direction = Vector(self.direction)
        if direction.length < 1e-9:
            rv3d = context.region_data or getattr(context.space_data, "region_3d", None)
            if rv3d is None:
                self.report({"ERROR"}, "No 3D viewport here: pass a direction or run it from the viewport")
                return {"CANCELLED"}
            direction = camera_from_view.view_direction_from_matrix(rv3d.view_rotation)
        s = context.scene.vsdream
        new = camera_from_view.range_from_view(
            {"elevation": (s.elevation_min, s.elevation_max), "azimuth": (s.azimuth_min, s.azimuth_max)},
            direction)
        # widen first so the ordered-range update callbacks never clamp the new values
        s.elevation_max, s.elevation_min = max(new["elevation"][1], s.elevation_max), new["elevation"][0]
        s.elevation_max = new["elevation"][1]
        s.azimuth_max, s.azimuth_min = max(new["azimuth"][1], s.azimuth_max), new["azimuth"][0]
        s.azimuth_max = new["azimuth"][1]
        return {"FINISHED"}


CLASSES = (VSDREAM_OT_camera_from_view,)
