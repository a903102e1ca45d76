"""Scene settings → the preset name and overrides the engine turns into a JobSpec (pure Python).

Blender stores angles in radians; the JobSpec speaks degrees (engine/spec.py CameraSpec).
"""
import math

# the engine's stage table (engine/stage_table.py) as bundled; an engine check reports the current one
STAGE_NAMES = ("nerf", "geometry", "texture")
# stages whose switch the engine's scene bundle decides in Mode Scene (engine/scene_mode.py: no DMTet
# refinement for a room seen from inside; its surfaces are extracted all the same)
SCENE_BUNDLE_STAGES = ("geometry",)
# the analytic priors' built-in scenes made for each mode (engine/priors/scenes.py)
OBJECT_ONLY_PRIORS = ("analytic:marker",)
SCENE_ONLY_PRIORS = ("analytic:room",)


def stage_names(info: dict | None = None) -> list:
    """The text-mode stages, in order, from an engine check report (`info["stages"]`), else the bundled
    list. A stage the engine has and this add-on does not know yet is kept: it runs with its defaults."""
    table = (info or {}).get("stages")
    if not isinstance(table, list):
        return list(STAGE_NAMES)
    names = [e.get("name") for e in table if isinstance(e, dict) and "text" in (e.get("modes") or [])]
    return [n for n in names if isinstance(n, str)] or list(STAGE_NAMES)


def _deg_pair(lo: float, hi: float) -> list:
    """Degrees rounded to 1e-3: Blender stores float32 radians, so ±180° reads back as ±180.000005."""
    return [round(math.degrees(lo), 3), round(math.degrees(hi), 3)]


def build_request(settings, prefs=None, mode: str = "text", extra: dict | None = None,
                  engine_info: dict | None = None) -> dict:
    """{'preset': name, 'overrides': {...}} from a VSDREAM_PG_settings-like object.

    `extra` is merged last (nested dicts merge), e.g. {'nerf': {'steps': 30}} in tests. Mode Scene sends
    `field.kind = "scene"` (the engine brings its scene bundle) and the inside distances from the centre."""
    stages = set(settings.stages)
    scene = mode == "text" and settings.scene_mode == "scene"
    distance = (settings.scene_distance_min, settings.scene_distance_max) if scene else (
        settings.distance_min, settings.distance_max)
    overrides = {
        "prompt": settings.prompt.strip(),
        "negative_prompt": settings.negative_prompt.strip(),
        "seed": int(settings.seed),
        "particles": int(settings.particles),
        "prior": settings.prior,
        "mode": mode,
        "camera": {
            "elevation_deg": _deg_pair(settings.elevation_min, settings.elevation_max),
            "azimuth_deg": _deg_pair(settings.azimuth_min, settings.azimuth_max),
            "distance": [round(float(d), 6) for d in distance],
            "fov_deg": _deg_pair(settings.fov_min, settings.fov_max),
        },
        "field": {"kind": "scene"} if scene else {"kind": "object", "blob": "object"},
        "export": {"texture_size": int(settings.texture_size)},
    }
    preview_s = float(getattr(prefs, "preview_interval", 0.0) or 0.0)
    for name in stage_names(engine_info):
        if name not in STAGE_NAMES:
            continue  # an engine stage this add-on has no switch for: it runs with the engine's defaults
        stage = {"enabled": name in stages if mode == "text" else name == "texture"}
        if scene and name in SCENE_BUNDLE_STAGES:
            del stage["enabled"]
        if preview_s:
            stage["preview_interval_s"] = preview_s
        overrides[name] = stage
    device = getattr(prefs, "device", "auto") or "auto"
    if device != "auto":
        overrides["device"] = device
    return {"preset": settings.preset, "overrides": merge(overrides, extra or {})}


def merge(base: dict, over: dict) -> dict:
    """Nested dict merge (over wins), returning `base`."""
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = value
    return base


def problems(settings, mode: str = "text") -> list:
    """Why a job cannot be submitted, as sentences for poll_message_set / reports."""
    out = []
    if settings.prior == "sd" and not settings.prompt.strip():
        out.append("Type a prompt first (the Stable Diffusion prior needs one)")
    if settings.azimuth_max - settings.azimuth_min > 2 * math.pi + 1e-6:
        out.append("The azimuth range spans more than 360°: narrow it")
    if mode == "text" and not set(settings.stages):
        out.append("Enable at least one stage")
    scene = settings.scene_mode == "scene"
    if mode == "text" and scene and settings.prior in OBJECT_ONLY_PRIORS:
        out.append("The reference scene is an object: pick Prior 'Reference room' for Mode Scene")
    if mode == "text" and not scene and settings.prior in SCENE_ONLY_PRIORS:
        out.append("The reference room is seen from inside: set Mode to Scene (or pick 'Reference scene')")
    return out
