"""3D Viewport › Sidebar › VSDream. Drawing only: every action is an operator."""
import bpy

from . import panorama_result, preview, ui_text
from .job_state import RESUMABLE, state_label
from .operators.world import current_panorama

ENGINE_ICONS = {"OFFLINE": "RADIOBUT_OFF", "STARTING": "SORTTIME", "READY": "CHECKMARK", "BUSY": "PLAY",
                "STALLED": "ERROR", "ERROR": "CANCEL"}


def _text_field(layout, data, prop: str, hint: str, icon: str) -> None:
    """A label-less text field with a grey hint while empty (`placeholder`: Blender 4.1+; older ones
    show the bare field)."""
    try:
        layout.prop(data, prop, text="", icon=icon, placeholder=hint)
    except TypeError:
        layout.prop(data, prop, text="", icon=icon)


JOB_ICONS = {"SUBMITTING": "SORTTIME", "QUEUED": "SORTTIME", "RUNNING": "PLAY", "CANCELLING": "PAUSE", "IMPORTING": "IMPORT",
             "DONE": "CHECKMARK", "FAILED": "ERROR", "CANCELLED": "PAUSE"}
ERROR_LINES = 8  # wrapped lines of an error in the panel; 'Details' shows all of it


class _Sidebar:
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "VSDream"


def _progress(layout, factor: float, text: str) -> None:
    """layout.progress where Blender has it (4.0+), a plain label elsewhere."""
    if hasattr(layout, "progress"):
        layout.progress(factor=factor, type="BAR", text=text)
    else:
        layout.label(text=f"{text} ({factor * 100:.0f}%)")


def _chars(context) -> int:
    region = getattr(context, "region", None)
    scale = getattr(getattr(context.preferences, "system", None), "ui_scale", 1.0) or 1.0
    return ui_text.chars_per_line(getattr(region, "width", 300) or 300, scale)


def _wrapped(layout, context, text: str, icon: str = "NONE", max_lines: int = 0) -> bool:
    """Label lines wrapped to the sidebar's width (the icon on the first). True when lines were left
    out because of `max_lines` (0: none are)."""
    lines = ui_text.wrap(text, _chars(context) - (3 if icon != "NONE" else 0))
    shown = lines[:max_lines] if max_lines else lines
    col = layout.column(align=True)
    for i, line in enumerate(shown):
        col.label(text=line, icon=icon if i == 0 else ("BLANK1" if icon != "NONE" else "NONE"))
    return len(shown) < len(lines)


class VSDREAM_PT_main(_Sidebar, bpy.types.Panel):
    bl_label = "VSDream"

    def draw(self, context):
        layout = self.layout
        s, rt = context.scene.vsdream, context.window_manager.vsdream
        row = layout.row()
        row.label(text=f"Engine: {rt.engine_state.title()}", icon=ENGINE_ICONS.get(rt.engine_state, "DOT"))
        if rt.engine_state in ("OFFLINE", "ERROR"):
            row.operator("vsdream.start_engine", text="Start engine")
        else:
            row.operator("vsdream.stop_engine", text="", icon="QUIT")
        if rt.engine_state == "ERROR" and rt.engine_message:
            box = layout.box()
            _wrapped(box, context, rt.engine_message, "ERROR")
            if rt.log_path:
                _wrapped(box, context, f"Log: {rt.log_path}", "TEXT")
        col = layout.column(align=True)
        col.label(text="Prompt")
        _text_field(col, s, "prompt", "What to make", "NONE")
        col.label(text="Negative prompt")
        _text_field(col, s, "negative_prompt", "What to avoid", "NONE")
        col = layout.column()
        col.use_property_split = True
        col.use_property_decorate = False  # the keyframe dots would take width from the values
        col.prop(s, "preset")
        col.prop(s, "prior")
        col.prop(s, "seed")
        col.prop(s, "particles")
        col.prop(s, "scene_mode")
        col.prop(s, "texture_size")
        col.prop(s, "size")
        layout.row().prop(s, "stages")
        if s.scene_mode == "scene" and "geometry" in s.stages:
            _wrapped(layout, context, "Scenes skip the geometry refinement: the room's surfaces are taken "
                     "from stage 1", "INFO")
        row = layout.row(align=True)
        row.scale_y = 1.5
        row.operator("vsdream.generate", icon="SHADERFX")
        row.operator("vsdream.cancel", icon="CANCEL")
        obj = context.active_object
        if obj is not None and obj.type == "MESH":
            layout.operator("vsdream.retexture", text=f"Re-texture {obj.name}", icon="TEXTURE")


class VSDREAM_PT_camera(_Sidebar, bpy.types.Panel):
    bl_label = "Camera range"
    bl_parent_id = "VSDREAM_PT_main"

    def draw(self, context):
        layout = self.layout
        s = context.scene.vsdream
        row = layout.row(align=True)
        row.operator("vsdream.camera_from_view", icon="VIEW_CAMERA")
        row.prop(s, "show_overlay", text="", icon="OVERLAY")
        col = layout.column(align=True)
        inside = s.scene_mode == "scene"
        if inside:
            _wrapped(col, context, "Scene: the cameras stand inside and look at the centre", "INFO")
        distance = (("scene_distance_min", "scene_distance_max", "Distance from centre") if inside
                    else ("distance_min", "distance_max", "Distance"))
        for lo, hi, label in (("elevation_min", "elevation_max", "Elevation"),
                              ("azimuth_min", "azimuth_max", "Azimuth"),
                              distance,
                              ("fov_min", "fov_max", "Field of view")):
            col.label(text=label)
            row = col.row(align=True)
            row.prop(s, lo, text="")
            row.prop(s, hi, text="")


class VSDREAM_PT_progress(_Sidebar, bpy.types.Panel):
    bl_label = "Progress"
    bl_parent_id = "VSDREAM_PT_main"

    def draw(self, context):
        layout = self.layout
        rt = context.window_manager.vsdream
        active = rt.job_state in ("SUBMITTING", "QUEUED", "RUNNING", "CANCELLING")
        if rt.job_state == "NONE":
            layout.label(text="No job yet")
        else:
            row = layout.row()
            row.label(text=state_label(rt.job_state), icon=JOB_ICONS.get(rt.job_state, "DOT"))
            if rt.job_id:
                row.label(text=f"Job {ui_text.short_job_id(rt.job_id)}")
            if rt.job_state == "QUEUED" and rt.queue_position:
                layout.label(text=f"Position {rt.queue_position} in the queue")
            if rt.total and active:
                _progress(layout, rt.progress, f"{rt.stage} {rt.step}/{rt.total}")
                if rt.eta_s > 0:
                    layout.label(text=ui_text.eta(rt.eta_s))
            elif rt.total and rt.job_state != "DONE":  # where it ended, without a stale ETA
                layout.label(text=f"Ended in {rt.stage} at {rt.step}/{rt.total}")
            if rt.job_state in RESUMABLE and rt.job_id:
                _wrapped(layout, context, "Its checkpoint is kept: Resume continues from it", "INFO")
                layout.operator("vsdream.resume_current", icon="PLAY")
        for warning in rt.warnings.splitlines():
            _wrapped(layout.box(), context, warning, "ERROR")
        if rt.error_message:
            box = layout.box()
            box.alert = True
            cut = _wrapped(box, context, rt.error_message, "ERROR", max_lines=ERROR_LINES)
            if rt.error_hint:
                cut |= _wrapped(box, context, rt.error_hint, "INFO", max_lines=ERROR_LINES)
            if cut:
                box.operator("vsdream.error_details", icon="TEXT")
        img = bpy.data.images.get(preview.PREVIEW_NAME)
        if img is not None:
            layout.template_icon(icon_value=img.preview_ensure().icon_id, scale=8.0)
            if rt.preview_caption:
                layout.label(text=f"Preview: {rt.preview_caption}")
        if rt.imported:
            layout.label(text=f"Imported: {rt.imported}", icon="CHECKMARK")
        if rt.job_state == "DONE" and current_panorama():
            layout.operator("vsdream.use_panorama", icon="WORLD")


class VSDREAM_UL_history(bpy.types.UIList):
    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index):
        layout.label(text=item.prompt or item.job_id, icon=JOB_ICONS.get(item.state, "DOT"))
        layout.label(text=state_label(item.state))


class VSDREAM_PT_history(_Sidebar, bpy.types.Panel):
    bl_label = "History"
    bl_parent_id = "VSDREAM_PT_main"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        layout = self.layout
        rt = context.window_manager.vsdream
        row = layout.row()
        row.template_list("VSDREAM_UL_history", "", rt, "history", rt, "history_index", rows=4)
        row.operator("vsdream.refresh_history", text="", icon="FILE_REFRESH")
        if rt.history_offset or rt.history_more:  # the engine's history spans pages
            row = layout.row(align=True)
            row.operator("vsdream.history_page", text="Newer", icon="TRIA_LEFT").older = False
            row.label(text=f"{rt.history_offset + 1}–{rt.history_offset + len(rt.history)} of {rt.history_total}")
            row.operator("vsdream.history_page", text="Older", icon="TRIA_RIGHT").older = True
        row = layout.row(align=True)
        row.operator("vsdream.import_job", icon="IMPORT")
        row.operator("vsdream.reattach", icon="LINKED")
        row.operator("vsdream.resume_job", icon="PLAY")
        row = layout.row(align=True)
        row.operator("vsdream.open_folder", icon="FILE_FOLDER")
        row.operator("vsdream.delete_job", icon="TRASH")
        i = rt.history_index
        pano = panorama_result.first_panorama(rt.history[i].run_dir) if 0 <= i < len(rt.history) else ""
        if pano:
            layout.operator("vsdream.use_panorama", icon="WORLD").filepath = pano


CLASSES = (VSDREAM_PT_main, VSDREAM_PT_camera, VSDREAM_PT_progress, VSDREAM_UL_history, VSDREAM_PT_history)


register, unregister = bpy.utils.register_classes_factory(CLASSES)
