"""`make demo`: drive the VSDream add-on headless in Blender (bpy) exactly as a user would.

Enables the add-on, checks the engine, types a prompt, sets the camera range (with "From view"),
presses Generate (which starts the engine server), pumps the session until the job is done,
then saves out/demo.blend with the imported object and renders out/demo.png with Cycles on CPU.

Stable Diffusion is used only when its weights and a CUDA GPU are present; otherwise the analytic
prior's reference scene (a toy with a magenta marker on its front) with the cpu-smoke preset.
Extra JobSpec overrides can be given as JSON in $VSDREAM_DEMO_OVERRIDES.
"""
from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path

import bpy  # first: bpy must be imported before anything that imports pymeshlab

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "out"
PROMPT = "a small toy robot with a magenta badge on its chest"


def say(msg: str) -> None:
    print(f"[demo] {msg}", flush=True)


def enable_addon():
    import addon_utils
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("VSDREAM_USER_DIR", str(OUT / "vsdream_user"))
    bpy.ops.wm.read_factory_settings(use_empty=False)
    mod = addon_utils.enable("blender_addon", default_set=True, handle_error=None)
    if mod is None:
        raise SystemExit("the VSDream add-on did not enable (see the messages above)")
    prefs = bpy.context.preferences.addons["blender_addon"].preferences
    prefs.engine_python = sys.executable  # the engine's own venv: this repo's .venv
    prefs.output_dir = str(OUT / "runs")
    return prefs


def choose_settings(prefs) -> tuple[str, str]:
    from blender_addon import engine_check
    info = engine_check.run_check(prefs.engine_python)
    for line in engine_check.format_report(info).splitlines():
        say("engine: " + line)
    prior = engine_check.choose_prior(info)
    if prior == "sd":
        say("prior: Stable Diffusion (weights and a CUDA GPU found), preset 'preview'")
        return prior, "preview"
    say("prior: analytic:marker — the reference scene, because Stable Diffusion needs its weights and a "
        "CUDA GPU (" + ("no GPU" if not info.get("cuda") else "no weights: vsdream models fetch") + ")")
    say("preset: cpu-smoke (the prompt is recorded but the analytic prior ignores it)")
    return prior, "cpu-smoke"


def set_up_scene(prior: str, preset: str) -> None:
    scene = bpy.context.scene
    for ob in [o for o in scene.objects if o.type == "MESH"]:  # the default cube
        bpy.data.objects.remove(ob)
    s = scene.vsdream
    s.prompt, s.prior, s.preset, s.seed = PROMPT, prior, preset, 0  # the preset brings its distance/fov
    s.texture_size = "256" if preset == "cpu-smoke" else "1024"
    s.elevation_min, s.elevation_max = math.radians(-10.0), math.radians(45.0)
    # "From view" as if looking from the front, slightly above: centres the elevation range there
    bpy.ops.vsdream.camera_from_view(direction=(0.0, -1.0, 0.3))
    say(f"camera range: elevation {math.degrees(s.elevation_min):.0f}..{math.degrees(s.elevation_max):.0f}°, "
        f"azimuth {math.degrees(s.azimuth_min):.0f}..{math.degrees(s.azimuth_max):.0f}°, "
        f"distance {s.distance_min:.1f}..{s.distance_max:.1f}")
    scene.cursor.location = (0.0, 0.0, 0.0)


def generate_and_wait() -> bool:
    from blender_addon import pump
    rt = bpy.context.window_manager.vsdream
    overrides = os.environ.get("VSDREAM_DEMO_OVERRIDES", "")
    say("Generate" + (f" with overrides {overrides}" if overrides else ""))
    bpy.ops.vsdream.generate(overrides=overrides)
    t0, last = time.monotonic(), 0.0
    try:
        while rt.job_state not in ("DONE", "FAILED", "CANCELLED"):
            pump.drain()
            if time.monotonic() - last > 15.0:
                last = time.monotonic()
                eta = f", ETA {rt.eta_s:.0f} s" if rt.eta_s else ""
                say(f"{time.monotonic() - t0:5.0f} s  engine {rt.engine_state.lower()}, job {rt.job_state.lower()}"
                    + (f": {rt.stage} {rt.step}/{rt.total}{eta}" if rt.total else "")
                    + (f", {rt.preview_frames} previews" if rt.preview_frames else ""))
            time.sleep(0.05)
    except KeyboardInterrupt:
        say("interrupted: cancelling the job (its checkpoint is kept)")
        bpy.ops.vsdream.cancel()
        pump.run_until(lambda: rt.job_state in ("CANCELLED", "FAILED"), 60)
        return False
    say(f"job {rt.job_id} {rt.job_state.lower()} after {time.monotonic() - t0:.0f} s")
    if rt.job_state != "DONE":
        say(f"error {rt.error_code}: {rt.error_message}\n  hint: {rt.error_hint}")
        if rt.log_path:
            say(f"engine log: {rt.log_path}")
        return False
    if rt.error_message:
        say(f"warning: {rt.error_message}")
    return bool(rt.imported)


def frame_and_render() -> None:
    """Point the camera at the imported object from the front-left, light it, render with Cycles CPU."""
    from mathutils import Vector
    scene = bpy.context.scene
    bpy.context.view_layer.update()
    objs = [o for o in bpy.data.collections["VSDream"].objects if o.type == "MESH"]
    corners = [o.matrix_world @ Vector(c) for o in objs for c in o.bound_box]
    lo = Vector([min(c[k] for c in corners) for k in range(3)])
    hi = Vector([max(c[k] for c in corners) for k in range(3)])
    centre, radius = (lo + hi) / 2, max((hi - lo).length / 2, 1e-3)
    cam = scene.camera
    cam.data.sensor_fit, cam.data.angle = "VERTICAL", math.radians(40.0)
    # front-left, a little above; far enough that the bounding sphere fills ~90% of the height
    cam.location = centre + Vector((-0.42, -0.85, 0.32)).normalized() * (radius / math.sin(math.radians(18.0)))
    cam.rotation_euler = (centre - cam.location).to_track_quat("-Z", "Y").to_euler()
    light = next((o for o in scene.objects if o.type == "LIGHT"), None)
    if light is not None:  # a sun from the front-left, above
        light.data.type = "SUN"
        light.data.energy = 3.0
        light.rotation_euler = (math.radians(50.0), 0.0, math.radians(-35.0))
    world = scene.world or bpy.data.worlds.new("World")
    scene.world = world
    if world.node_tree is None:
        world.use_nodes = True
    background = next(n for n in world.node_tree.nodes if n.type == "BACKGROUND")
    background.inputs["Color"].default_value = (0.55, 0.58, 0.65, 1.0)
    background.inputs["Strength"].default_value = 1.0
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = 16
    scene.cycles.use_denoising = False
    scene.render.resolution_x, scene.render.resolution_y = 480, 360
    scene.render.resolution_percentage = 100
    scene.render.filepath = str(OUT / "demo.png")
    t0 = time.monotonic()
    bpy.ops.render.render(write_still=True)
    say(f"rendered {OUT / 'demo.png'} with Cycles CPU in {time.monotonic() - t0:.0f} s")


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    prefs = enable_addon()
    prior, preset = choose_settings(prefs)
    set_up_scene(prior, preset)
    ok = generate_and_wait()
    rt = bpy.context.window_manager.vsdream
    if ok:
        say(f"imported: {rt.imported} (collection 'VSDream', at the 3D cursor)")
        frame_and_render()
        bpy.ops.wm.save_as_mainfile(filepath=str(OUT / "demo.blend"))
        say(f"saved {OUT / 'demo.blend'}")
    import addon_utils
    addon_utils.disable("blender_addon", default_set=True)  # like quitting Blender: stops the engine
    say(f"{'done' if ok else 'FAILED'} in {time.monotonic() - t0:.0f} s (prior {prior}, preset {preset})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
