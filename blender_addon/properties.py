"""Per-scene job settings (saved with the .blend) and per-session job state (never saved).

Angles are stored in radians (subtype ANGLE); the engine gets degrees from job_spec.py.
Transient state lives on the WindowManager, whose add-on properties are not written to files,
so a reopened .blend never shows a stale "running" job.
"""
import math

import bpy
from bpy.props import (
    BoolProperty,
    CollectionProperty,
    EnumProperty,
    FloatProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)

PRESETS = [
    ("paper", "Paper", "The paper's settings: hours on a large GPU"),
    ("fast", "Fast", "About a tenth of the paper's steps at 256²"),
    ("preview", "Preview", "A quick look at a prompt"),
    ("low-vram", "Low VRAM", "For 12 GB cards: one shared UNet, stage 1 up to 256², fewer samples"),
    ("cpu-smoke", "CPU smoke", "Tiny CPU job on the reference scene (tests, demo)"),
]
PRIORS = [
    ("sd", "Stable Diffusion", "Needs the model weights and a GPU"),
    ("analytic:marker", "Reference scene", "Analytic prior of a built-in scene: no weights needed"),
    ("analytic:room", "Reference room", "Analytic prior of the built-in room, for Mode Scene: no weights needed"),
    ("tiny-sd", "Tiny SD (test)", "Random tiny diffusion model: exercises the pipeline only"),
]
STAGES = [
    ("nerf", "NeRF", "Stage 1: radiance field with VSD"),
    ("geometry", "Geometry", "Stage 2: mesh refinement"),
    ("texture", "Texture", "Stage 3: texture with VSD"),
]


def _redraw_views(_self=None, _context=None):
    wm = getattr(bpy.context, "window_manager", None)
    for window in getattr(wm, "windows", []):
        for area in window.screen.areas:
            if area.type == "VIEW_3D":
                area.tag_redraw()


# the camera distance/fov each preset was tuned for (engine/presets.py; a test keeps them equal)
PRESET_CAMERAS = {name: {"distance": (1.0, 1.5), "fov_deg": (40.0, 70.0)} for name, _, _ in PRESETS}
PRESET_CAMERAS["cpu-smoke"] = {"distance": (2.2, 2.6), "fov_deg": (40.0, 50.0)}
# Mode Scene: the distance from the centre and fov of each preset's scene bundle (engine/scene_mode.py)
PRESET_SCENE_CAMERAS = {name: {"distance": (0.1, 2.3), "fov_deg": (40.0, 70.0)} for name, _, _ in PRESETS}
# inside the reference room, clear of its corner objects, wide enough to see a wall
PRESET_SCENE_CAMERAS["cpu-smoke"] = {"distance": (0.1, 0.8), "fov_deg": (55.0, 70.0)}


def _set_range(self, lo: str, hi: str, values) -> None:
    """Widen first, then narrow, so the min ≤ max callbacks never clamp the new values."""
    setattr(self, hi, max(getattr(self, hi), values[1]))
    setattr(self, lo, values[0])
    setattr(self, hi, values[1])


def _preset_update(self, _context):
    """Choosing a preset brings its camera distances (object and scene) and the field of view of the
    current Mode (the ranges stay editable)."""
    cam, inside = PRESET_CAMERAS.get(self.preset), PRESET_SCENE_CAMERAS.get(self.preset)
    if cam is None or inside is None:
        return
    _set_range(self, "distance_min", "distance_max", cam["distance"])
    _set_range(self, "scene_distance_min", "scene_distance_max", inside["distance"])
    _mode_update(self, _context)


def _mode_update(self, _context):
    """Switching Mode brings the preset's field of view for it (a scene's views are wider in cpu-smoke)."""
    table = PRESET_SCENE_CAMERAS if self.scene_mode == "scene" else PRESET_CAMERAS
    cam = table.get(self.preset)
    if cam is not None:
        _set_range(self, "fov_min", "fov_max", [math.radians(v) for v in cam["fov_deg"]])
    _redraw_views()


def _ordered(lo_name, hi_name):
    """Update callbacks that keep min ≤ max by dragging the other end along."""
    def lo_update(self, _context):
        if getattr(self, lo_name) > getattr(self, hi_name):
            setattr(self, hi_name, getattr(self, lo_name))
        _redraw_views()

    def hi_update(self, _context):
        if getattr(self, hi_name) < getattr(self, lo_name):
            setattr(self, lo_name, getattr(self, hi_name))
        _redraw_views()
    return lo_update, hi_update


_EL = _ordered("elevation_min", "elevation_max")
_AZ = _ordered("azimuth_min", "azimuth_max")
_DI = _ordered("distance_min", "distance_max")
_FO = _ordered("fov_min", "fov_max")
_SD = _ordered("scene_distance_min", "scene_distance_max")


class VSDREAM_PG_settings(bpy.types.PropertyGroup):
    prompt: StringProperty(name="Prompt", description="What to make", default="")
    negative_prompt: StringProperty(name="Negative", description="What to avoid", default="")
    preset: EnumProperty(name="Preset", items=PRESETS, default="fast", update=_preset_update)
    prior: EnumProperty(name="Prior", items=PRIORS, default="sd",
                        description="Which diffusion model guides the optimisation")
    seed: IntProperty(name="Seed", default=0, min=0)
    particles: IntProperty(name="Particles", default=1, min=1, max=8,
                           description="VSD particles: several variations of the prompt at once")
    stages: EnumProperty(name="Stages", items=STAGES, options={"ENUM_FLAG"},
                         default={"nerf", "geometry", "texture"})
    scene_mode: EnumProperty(name="Mode", items=[
        ("object", "Object", "A single object seen from outside"),
        ("scene", "Scene", "Surroundings: the camera sits inside")], default="object", update=_mode_update)
    texture_size: EnumProperty(name="Texture", items=[(str(s), f"{s}", f"{s}×{s} texels")
                                                      for s in (256, 512, 1024, 2048)], default="1024")
    elevation_min: FloatProperty(name="Elevation min", subtype="ANGLE", unit="ROTATION",
                                 default=math.radians(-10.0), min=math.radians(-89.0), max=math.radians(89.0),
                                 update=_EL[0])
    elevation_max: FloatProperty(name="Elevation max", subtype="ANGLE", unit="ROTATION",
                                 default=math.radians(45.0), min=math.radians(-89.0), max=math.radians(89.0),
                                 update=_EL[1])
    azimuth_min: FloatProperty(name="Azimuth min", subtype="ANGLE", unit="ROTATION",
                               default=math.radians(-180.0), min=math.radians(-360.0), max=math.radians(360.0),
                               update=_AZ[0])
    azimuth_max: FloatProperty(name="Azimuth max", subtype="ANGLE", unit="ROTATION",
                               default=math.radians(180.0), min=math.radians(-360.0), max=math.radians(360.0),
                               update=_AZ[1])
    distance_min: FloatProperty(name="Distance min", subtype="DISTANCE", default=1.0, min=0.1, max=100.0,
                                update=_DI[0])
    distance_max: FloatProperty(name="Distance max", subtype="DISTANCE", default=1.5, min=0.1, max=100.0,
                                update=_DI[1])
    scene_distance_min: FloatProperty(name="Distance from centre min", subtype="DISTANCE", default=0.1, min=0.05,
                                      max=100.0, update=_SD[0],
                                      description="Mode Scene: nearest camera position to the centre")
    scene_distance_max: FloatProperty(name="Distance from centre max", subtype="DISTANCE", default=2.3, min=0.05,
                                      max=100.0, update=_SD[1],
                                      description="Mode Scene: farthest camera position from the centre (the "
                                                  "cameras look at the centre)")
    fov_min: FloatProperty(name="FOV min", subtype="ANGLE", default=math.radians(40.0),
                           min=math.radians(5.0), max=math.radians(150.0), update=_FO[0])
    fov_max: FloatProperty(name="FOV max", subtype="ANGLE", default=math.radians(70.0),
                           min=math.radians(5.0), max=math.radians(150.0), update=_FO[1])
    size: FloatProperty(name="Size", subtype="DISTANCE", default=1.0, min=0.01, max=1000.0,
                        description="Radius of the imported object's bounding sphere")
    show_overlay: BoolProperty(name="Show camera range", default=True, update=_redraw_views)
    last_job_id: StringProperty(name="Last job", default="")
    last_run_dir: StringProperty(name="Last run folder", subtype="DIR_PATH", default="")


class VSDREAM_PG_history_item(bpy.types.PropertyGroup):
    job_id: StringProperty()
    prompt: StringProperty()
    status: StringProperty()  # the run folder's last terminal event (history.py)
    state: StringProperty()  # the same in the panel's vocabulary (job_state.STATE_LABELS keys)
    run_dir: StringProperty(subtype="DIR_PATH")
    mode: StringProperty(default="text")
    created: FloatProperty()


ENGINE_STATES = [(s, s.title(), "") for s in ("OFFLINE", "STARTING", "READY", "BUSY", "STALLED", "ERROR")]
JOB_STATES = [(s, s.title(), "") for s in ("NONE", "SUBMITTING", "QUEUED", "RUNNING", "CANCELLING",
                                           "IMPORTING", "DONE", "FAILED", "CANCELLED")]


class VSDREAM_PG_runtime(bpy.types.PropertyGroup):
    """What the pump shows in the panel; rebuilt from the session, never saved."""

    engine_state: EnumProperty(items=ENGINE_STATES, default="OFFLINE")
    engine_message: StringProperty()
    engine_version: StringProperty()
    job_id: StringProperty()
    job_state: EnumProperty(items=JOB_STATES, default="NONE")
    job_mode: StringProperty(default="text")
    queue_position: IntProperty()
    stage: StringProperty()
    step: IntProperty()
    total: IntProperty()
    eta_s: FloatProperty()
    it_per_s: FloatProperty()
    progress: FloatProperty(min=0.0, max=1.0, subtype="FACTOR")
    error_code: StringProperty()
    error_message: StringProperty()
    error_hint: StringProperty()
    warnings: StringProperty(description="The engine's warnings for this job, one a line")
    log_path: StringProperty(subtype="FILE_PATH")
    preview_frames: IntProperty()
    preview_caption: StringProperty()
    imported: StringProperty(description="Names of the objects the last job imported")
    history: CollectionProperty(type=VSDREAM_PG_history_item)
    history_index: IntProperty()
    history_offset: IntProperty()  # the History page: jobs skipped from the newest (engine's list_jobs)
    history_total: IntProperty()  # jobs the engine knows
    history_more: BoolProperty()  # older pages exist
    check_report: StringProperty()
    setup_running: BoolProperty()
    setup_log: StringProperty()


CLASSES = (VSDREAM_PG_settings, VSDREAM_PG_history_item, VSDREAM_PG_runtime)


_register_classes, _unregister_classes = bpy.utils.register_classes_factory(CLASSES)


def register():
    _register_classes()
    bpy.types.Scene.vsdream = PointerProperty(type=VSDREAM_PG_settings)
    bpy.types.WindowManager.vsdream = PointerProperty(type=VSDREAM_PG_runtime)


def unregister():
    del bpy.types.WindowManager.vsdream
    del bpy.types.Scene.vsdream
    _unregister_classes()
