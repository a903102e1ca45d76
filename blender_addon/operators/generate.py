"""Generate (text → 3D) and Cancel."""
from pathlib import Path

import bpy
from bpy.props import StringProperty

from .. import job_spec, preferences, pump
from .._protocol_import import protocol
from ..session import SESSION
from ._common import explain, parse_overrides


def engine_problem(context) -> str:
    """Why no job can be sent right now (a local engine without its Python), else ''."""
    if SESSION.connected:
        return ""
    cfg = preferences.connect_config(context)
    if cfg.mode == "LOCAL" and not (cfg.engine_python and Path(cfg.engine_python).is_file()):
        return (f"Engine Python not found ({cfg.engine_python or 'none set'}): press 'Set up engine' in the "
                "add-on preferences, or set Engine Python there")
    return ""


def build_request(context, mode: str, overrides_json: str) -> dict:
    """The engine request from the scene settings (main thread). Raises ValueError before anything
    changes when the overrides are bad or no engine can start."""
    problem = engine_problem(context)
    if problem:
        raise ValueError(problem)
    return job_spec.build_request(context.scene.vsdream, preferences.get(context), mode=mode,
                                  extra=parse_overrides(overrides_json))


def start_job(context, mode: str, **job_fields):
    """A new job view in SUBMITTING: the panel says 'Sending' until the engine accepts it."""
    settings = context.scene.vsdream
    return SESSION.new_job(mode=mode, prompt=settings.prompt, seed=settings.seed, **job_fields)


def submit_job(context, mode: str, overrides_json: str, **job_fields):
    """Build the request, start a job view and send it (auto-starting the engine when needed)."""
    request = build_request(context, mode, overrides_json)
    frame = protocol.submit(preset=request["preset"], overrides=request["overrides"])
    start_job(context, mode, **job_fields)
    SESSION.send(frame, cfg=preferences.connect_config(context))
    pump.refresh(context)
    return request


class VSDREAM_OT_generate(bpy.types.Operator):
    bl_idname = "vsdream.generate"
    bl_label = "Generate"
    bl_description = "Make a textured mesh from the prompt (starts the engine when needed)"
    bl_options = {"REGISTER"}

    overrides: StringProperty(name="Overrides (JSON)", default="", options={"SKIP_SAVE"},
                              description="Extra JobSpec fields, e.g. {\"nerf\": {\"steps\": 100}}")

    @classmethod
    def poll(cls, context):
        if SESSION.job.active:
            return explain(cls, "A job is running: cancel it or wait for it to finish")
        problems = job_spec.problems(context.scene.vsdream)
        if problems:
            return explain(cls, problems[0])
        return True

    def execute(self, context):
        try:
            submit_job(context, "text", self.overrides)
        except (ValueError, protocol.ProtocolError) as exc:
            self.report({"ERROR"}, f"Cannot submit: {exc}")
            return {"CANCELLED"}
        # "submitted" would claim too much: the job is queued only once the engine accepts it (panel)
        self.report({"INFO"}, "Sending the job to the engine" if SESSION.connected else
                    "Starting the engine; the job follows")
        return {"FINISHED"}


class VSDREAM_OT_cancel(bpy.types.Operator):
    bl_idname = "vsdream.cancel"
    bl_label = "Cancel"
    bl_description = "Stop the job at its next step; its checkpoint is kept"

    @classmethod
    def poll(cls, context):
        if not SESSION.job.active or not SESSION.job.job_id:
            return explain(cls, "No running job to cancel")
        return True

    def execute(self, context):
        SESSION.send(protocol.cancel(SESSION.job.job_id))
        SESSION.job.state = "CANCELLING"
        pump.refresh(context)
        return {"FINISHED"}


CLASSES = (VSDREAM_OT_generate, VSDREAM_OT_cancel)
