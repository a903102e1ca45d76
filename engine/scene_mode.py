"""Scene mode: the settings that turn an object job into a 360° scene with the camera inside.

`field.kind = "scene"` brings the bundle below for the job's preset; the user's own overrides
still win field by field. The paper settings follow threestudio's prolificdreamer-scene config
(anchors-vsd.md §2.5): a negative density blob so the cameras stand in an empty volume of radius
5, cameras 0.1–2.3 from the centre looking at it, evaluation at 2.0 (plus a 360° pan from the
centre), t annealed at step 10k, no view-dependent prompts, the z-variance loss instead of
sparsity or opacity, and the background network as the far field (there is no random solid
backdrop: the scene is its own background, and finished renders composite over it too).

Stage 2 (DMTet refinement with SDS on normal maps) is off for scenes: it assumes one closed
object seen from outside, and a room's walls are already what stage 1 extracts, as the surface
where its viewpoints' transmittance falls to one half (mesh/scene_surface.py). Stage 3 textures
those surfaces with VSD from inside cameras, and stage 1 also writes an equirectangular panorama
from the centre (engine/panorama.py).
"""
from __future__ import annotations

import copy
from typing import Any

_SCENE_FIELD = {"kind": "scene", "blob": "scene", "radius": 5.0, "background": "network"}
_SCENE_CAMERA = {"distance": [0.1, 2.3], "fov_deg": [40.0, 70.0], "elevation_deg": [-10.0, 45.0],
                 "eval_distance": 2.0, "eval_centre_pan": 8, "view_dependent_prompts": False}
_PAPER = {"field": _SCENE_FIELD, "camera": _SCENE_CAMERA,
          "nerf": {"anneal_step": 10000, "lambda_sparsity": 0.0, "lambda_opaque": 0.0, "lambda_z_variance": 1.0},
          "geometry": {"enabled": False}}

SCENE_BUNDLES: dict[str, dict[str, Any]] = {
    "paper": _PAPER,
    "fast": {**_PAPER, "nerf": {**_PAPER["nerf"], "anneal_step": 2000}},
    "preview": {**_PAPER, "nerf": {**_PAPER["nerf"], "anneal_step": 800}},
    # the analytic room (engine/priors/scenes.py room): interior ±1.6 × ±1.6, floor −0.9, ceiling 1.3,
    # so a radius of 2.9 holds it; cameras stay clear of the two corner objects
    "cpu-smoke": {
        "prior": "analytic:room",
        "field": {**_SCENE_FIELD, "radius": 2.9},
        "camera": {"distance": [0.1, 0.8], "fov_deg": [55.0, 70.0], "elevation_deg": [-10.0, 30.0],
                   "eval_distance": 0.8, "eval_elevation_deg": 10.0, "eval_fov_deg": 60.0, "eval_centre_pan": 8,
                   "view_dependent_prompts": False},
        "nerf": {"lambda_z_variance": 1.0},
        "geometry": {"enabled": False},
        # a room's walls fill every pixel: at 64² stage 3 never sees the grain the hash grid has above
        # that (bench scene: textured mesh 27.2 → 28.6 dB at 128² for ~16 s more)
        "texture": {"resolution_schedule": [[0, 128]]},
        "export": {"panorama_width": 512},
    },
}


def wants_scene(base: dict[str, Any], overrides: dict[str, Any]) -> bool:
    """Whether a preset (as a dict) with these overrides asks for scene mode."""
    over_field = overrides.get("field")
    kind = over_field.get("kind") if isinstance(over_field, dict) and "kind" in over_field else None
    return (kind if kind is not None else base.get("field", {}).get("kind")) == "scene"


def scene_bundle(preset: str) -> dict[str, Any]:
    """The scene settings for `preset` (the paper's for a preset without its own)."""
    return copy.deepcopy(SCENE_BUNDLES.get(preset, SCENE_BUNDLES["paper"]))


def keep_evaluation_inside(merged: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A scene's held-out orbit stays within the cameras' distance range unless the user set its
    distance too: an artist who narrows the range to 0.1–1.0 should not get previews from 2.0,
    where no training camera stood (the room there is untrained and often behind a wall)."""
    camera = merged.get("camera", {})
    own = overrides.get("camera") if isinstance(overrides.get("camera"), dict) else {}
    distance = camera.get("distance")
    if "eval_distance" not in own and isinstance(distance, list | tuple) and len(distance) == 2:
        try:
            camera["eval_distance"] = min(float(camera["eval_distance"]), float(distance[1]))
        except (KeyError, TypeError, ValueError):
            pass  # a malformed range: validation names the field
    return merged

