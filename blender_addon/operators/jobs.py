"""The job history list: Import, Re-attach, Open folder, Delete, Refresh."""
import json
import os
import subprocess
import sys
from pathlib import Path

import bpy
from bpy.props import BoolProperty, IntProperty

from .. import history, paths, preferences, pump, ui_text
from .._protocol_import import protocol
from ..job_state import JobView
from ..session import SESSION
from ._common import explain


def _item(context, index: int):
    rt = context.window_manager.vsdream
    i = rt.history_index if index < 0 else index
    return rt.history[i] if 0 <= i < len(rt.history) else None


def _selected_or_explain(cls, context):
    if _item(context, -1) is None:
        return explain(cls, "Select a job in the history list")
    return True


class _HistoryOp:
    index: IntProperty(default=-1, options={"HIDDEN", "SKIP_SAVE"})

    @classmethod
    def poll(cls, context):
        return _selected_or_explain(cls, context)


class VSDREAM_OT_import_job(_HistoryOp, bpy.types.Operator):
    bl_idname = "vsdream.import_job"
    bl_label = "Import"
    bl_description = "Import this job's result meshes from its run folder"

    def execute(self, context):
        item = _item(context, self.index)
        meshes = history.result_meshes(item.run_dir)
        if not meshes:
            self.report({"ERROR"}, f"No result GLB in {item.run_dir}/result (status: {item.status})")
            return {"CANCELLED"}
        spec = _read_spec(item.run_dir)
        job = JobView(job_id=item.job_id, prompt=item.prompt, seed=int(spec.get("seed", 0)),
                      run_dir=item.run_dir, mode="text")
        pump.read_in_background(job, meshes)  # the objects appear once the files are read
        self.report({"INFO"}, f"Importing {len(meshes)} mesh(es) from {item.run_dir}")
        return {"FINISHED"}


def _read_spec(run_dir: str) -> dict:
    try:
        return json.loads((Path(run_dir) / "spec.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _follow(context, item, frame, **job_fields) -> None:
    """Make `item` the current job and send `frame` (attach or resume), starting the engine if needed."""
    spec = _read_spec(item.run_dir)
    SESSION.job = JobView(job_id=item.job_id, prompt=item.prompt, seed=int(spec.get("seed", 0)),
                          run_dir=item.run_dir, mode=item.mode, **job_fields)
    SESSION.send(frame, cfg=preferences.connect_config(context))
    pump.refresh(context)


def _idle_or_explain(cls, context):
    if SESSION.job.active:
        return explain(cls, "A job is running: cancel it or wait for it to finish")
    return _selected_or_explain(cls, context)


class VSDREAM_OT_reattach(_HistoryOp, bpy.types.Operator):
    bl_idname = "vsdream.reattach"
    bl_label = "Re-attach"
    bl_description = "Follow this job again: replay its events, then stream live ones"

    @classmethod
    def poll(cls, context):
        return _idle_or_explain(cls, context)

    def execute(self, context):
        item = _item(context, self.index)
        unfinished = item.status not in ("done", "failed", "cancelled")
        _follow(context, item, protocol.attach(item.job_id, from_seq=0, previews=True),
                state="QUEUED" if unfinished else "SUBMITTING", auto_import=unfinished)
        return {"FINISHED"}


class VSDREAM_OT_resume_job(_HistoryOp, bpy.types.Operator):
    bl_idname = "vsdream.resume_job"
    bl_label = "Resume"
    bl_description = "Continue a stopped job from its newest checkpoint"

    @classmethod
    def poll(cls, context):
        item = _item(context, -1)
        if item is not None and item.status == "done":
            return explain(cls, "This job is finished: use Import")
        return _idle_or_explain(cls, context)

    def execute(self, context):
        item = _item(context, self.index)
        _follow(context, item, protocol.resume(item.job_id), state="SUBMITTING")
        return {"FINISHED"}


class VSDREAM_OT_resume_current(bpy.types.Operator):
    bl_idname = "vsdream.resume_current"
    bl_label = "Resume"
    bl_description = "Continue this stopped job from its newest checkpoint (starts the engine when needed)"

    @classmethod
    def poll(cls, context):
        if not SESSION.job.resumable:
            return explain(cls, "Only a stopped or failed job can be resumed")
        return True

    def execute(self, context):
        job = SESSION.job
        SESSION.job = JobView(job_id=job.job_id, prompt=job.prompt, seed=job.seed, run_dir=job.run_dir,
                              mode=job.mode, target_object=job.target_object, state="SUBMITTING")
        SESSION.send(protocol.resume(job.job_id), cfg=preferences.connect_config(context))
        pump.refresh(context)
        return {"FINISHED"}


class VSDREAM_OT_error_details(bpy.types.Operator):
    bl_idname = "vsdream.error_details"
    bl_label = "Details"
    bl_description = "Show the whole error message and hint (also printed to the system console)"

    def invoke(self, context, event):
        rt = context.window_manager.vsdream
        print(f"VSDream error {rt.error_code}: {rt.error_message}\nhint: {rt.error_hint}")
        return context.window_manager.invoke_popup(self, width=640)

    def draw(self, context):
        rt = context.window_manager.vsdream
        col = self.layout.column(align=True)
        col.label(text=f"Error: {rt.error_code}", icon="ERROR")
        for line in ui_text.wrap(rt.error_message, 90):
            col.label(text=line)
        for line in ui_text.wrap(rt.error_hint, 90) if rt.error_hint else []:
            col.label(text=line, icon="INFO")

    def execute(self, context):
        return {"FINISHED"}


class VSDREAM_OT_open_folder(_HistoryOp, bpy.types.Operator):
    bl_idname = "vsdream.open_folder"
    bl_label = "Open folder"
    bl_description = "Show the job's run folder in the file browser"

    def execute(self, context):
        folder = _item(context, self.index).run_dir
        if sys.platform == "win32":
            os.startfile(folder)  # noqa: S606 - the OS file browser
        else:
            subprocess.Popen(["open" if sys.platform == "darwin" else "xdg-open", folder],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return {"FINISHED"}


class VSDREAM_OT_delete_job(_HistoryOp, bpy.types.Operator):
    bl_idname = "vsdream.delete_job"
    bl_label = "Delete"
    bl_description = "Delete the job's run folder (checkpoints, previews, results) from disk"

    @classmethod
    def poll(cls, context):
        item = _item(context, -1)
        if item is not None and item.job_id == SESSION.job.job_id and SESSION.job.active:
            return explain(cls, "Cancel the job before deleting it")
        return _selected_or_explain(cls, context)

    def invoke(self, context, event):
        return context.window_manager.invoke_confirm(self, event)

    def execute(self, context):
        item = _item(context, self.index)
        try:
            history.delete_run(item.run_dir, paths.output_dir(preferences.get(context)))
        except (OSError, ValueError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        pump.refresh_history(context)
        return {"FINISHED"}


class VSDREAM_OT_refresh_history(bpy.types.Operator):
    bl_idname = "vsdream.refresh_history"
    bl_label = "Refresh"
    bl_description = "Re-read the run folders"

    def execute(self, context):
        pump.refresh_history(context)
        return {"FINISHED"}


class VSDREAM_OT_history_page(bpy.types.Operator):
    bl_idname = "vsdream.history_page"
    bl_label = "History page"
    bl_description = "Show older or newer jobs of the engine's history"

    older: BoolProperty(default=True, options={"SKIP_SAVE"})

    @classmethod
    def poll(cls, context):
        rt = context.window_manager.vsdream
        return rt.history_more or rt.history_offset > 0

    def execute(self, context):
        pump.history_page(self.older, context)
        return {"FINISHED"}


CLASSES = (VSDREAM_OT_import_job, VSDREAM_OT_reattach, VSDREAM_OT_resume_job, VSDREAM_OT_resume_current,
           VSDREAM_OT_error_details, VSDREAM_OT_open_folder, VSDREAM_OT_delete_job, VSDREAM_OT_refresh_history,
           VSDREAM_OT_history_page)
