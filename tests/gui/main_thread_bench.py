"""How long the add-on blocks Blender's main thread, with real bpy (issue 13: ≤ 50 ms up to 100k faces).

    .venv/bin/python tests/gui/main_thread_bench.py [--faces 10000 100000] [--json]

For each size: a subdivided, parented Suzanne-like mesh (a grid) is re-textured ("Re-texture selected":
the operator's execute, i.e. what runs on the main thread before Blender draws again), and a result GLB of
the same size (1024² texture) is brought back (the pump's import of a finished re-texture job, the
material swap, and of a text job, new objects). Worker-thread time is reported apart: it does not block.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import bpy  # noqa: I001 - bpy before anything that could import pymeshlab

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def grid_object(faces: int, name: str = "Bench"):
    """A flat-ish quad grid of about `faces` faces with UVs, parented to an empty (like an artist's mesh)."""
    side = max(1, int(round(faces ** 0.5)))
    bpy.ops.mesh.primitive_grid_add(x_subdivisions=side, y_subdivisions=side, size=2.0, calc_uvs=True)
    obj = bpy.context.active_object
    obj.name = name
    parent = bpy.data.objects.new(name + " parent", None)
    bpy.context.scene.collection.objects.link(parent)
    obj.parent = parent
    parent.location = (0.5, 0.0, 0.0)
    return obj


def result_glb(obj, path: Path, texture: int = 1024) -> Path:
    """A result as the engine writes it (engine/mesh/gltf_export.py): the mesh triangulated, split at
    UV seams, with an embedded base-colour PNG."""
    import numpy as np

    from engine.mesh.gltf_export import write_glb
    from engine.mesh.types import TexturedMesh
    mesh = obj.data
    mesh.calc_loop_triangles()
    tris = np.empty(3 * len(mesh.loop_triangles), np.int32)
    mesh.loop_triangles.foreach_get("loops", tris)
    co = np.empty(3 * len(mesh.vertices), np.float32)
    mesh.vertices.foreach_get("co", co)
    loop_vert = np.empty(len(mesh.loops), np.int32)
    mesh.loops.foreach_get("vertex_index", loop_vert)
    uv = np.empty(2 * len(mesh.loops), np.float32)
    mesh.uv_layers.active.data.foreach_get("uv", uv)
    used, faces = np.unique(tris, return_inverse=True)  # one vertex per used loop: split at seams
    vertices = co.reshape(-1, 3)[loop_vert[used]]
    uvs = uv.reshape(-1, 2)[used] * [1.0, -1.0] + [0.0, 1.0]
    rng = np.random.default_rng(0)
    tex = rng.random((texture, texture, 3), dtype=np.float32)
    write_glb(path, TexturedMesh(vertices, faces.reshape(-1, 3).astype(np.int64), uvs.astype(np.float32), tex))
    return path


def timed(fn, repeat: int = 3) -> float:
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000.0)
    return statistics.median(out)


def _drain_until_sent(session, timeout_s: float = 120.0) -> tuple:
    """Pump until the submit frame is ready; (longest single drain in ms, wall time in ms)."""
    from blender_addon import pump
    t0, longest = time.perf_counter(), 0.0
    while not session.pending and session.job.state == "SUBMITTING" and time.perf_counter() - t0 < timeout_s:
        t = time.perf_counter()
        pump.drain()
        longest = max(longest, (time.perf_counter() - t) * 1000.0)
        time.sleep(0.005)
    assert session.pending, (session.job.state, session.job.error_message)
    return longest, (time.perf_counter() - t0) * 1000.0


def bench(faces: int, tmp: Path) -> dict:
    import socket

    from blender_addon import pump
    from blender_addon.job_state import JobView
    from blender_addon.session import SESSION
    bpy.ops.wm.read_factory_settings(use_empty=True)
    import addon_helpers
    addon_helpers.enable()
    silent = socket.socket()  # an engine that never answers: the frame stays in SESSION.pending
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    prefs = bpy.context.preferences.addons[addon_helpers.ADDON].preferences
    prefs.connection_mode, prefs.remote_port, prefs.remote_token = "REMOTE", silent.getsockname()[1], "x"
    s = bpy.context.scene.vsdream
    s.prior, s.preset = "analytic:marker", "cpu-smoke"
    obj = grid_object(faces)
    n_faces = len(obj.data.polygons)
    glb = result_glb(grid_object(faces, "Result"), tmp / f"result{faces}.glb")
    row = {"faces": n_faces}
    for label, strip_uvs in (("", False), ("no_uv_", True)):
        execute, drains, walls = [], [], []
        for _ in range(3):
            SESSION.disconnect(stop_engine=False, wait=True)
            SESSION.job = JobView()
            while strip_uvs and obj.data.uv_layers:
                obj.data.uv_layers.remove(obj.data.uv_layers[0])
            bpy.context.view_layer.objects.active = obj
            obj.select_set(True)
            t = time.perf_counter()
            assert bpy.ops.vsdream.retexture() == {"FINISHED"}
            execute.append((time.perf_counter() - t) * 1000.0)
            longest, wall = _drain_until_sent(SESSION)
            drains.append(longest)
            walls.append(wall)
        row[label + "retexture_execute_ms"] = round(statistics.median(execute), 1)
        row[label + "retexture_longest_drain_ms"] = round(statistics.median(drains), 1)
        row[label + "retexture_worker_wall_ms"] = round(statistics.median(walls), 1)
    SESSION.disconnect(stop_engine=False, wait=True)
    silent.close()

    def swap():
        job = JobView(job_id="b", mode="retexture", state="DONE", target_object=obj.name, run_dir=str(tmp))
        pump.import_job_meshes(bpy.context, job, [str(glb)])
    row["swap_material_ms"] = round(timed(swap), 1)

    finish, drains = [], []
    for _ in range(3):  # a text job's result: read in a thread, objects built on a later tick
        SESSION.job = JobView(job_id="b", mode="text", state="DONE", prompt="bench", run_dir=str(tmp),
                              artifacts={"mesh.glb": str(glb)})
        t = time.perf_counter()
        pump._finish_job(bpy.context)
        finish.append((time.perf_counter() - t) * 1000.0)
        longest, t0 = 0.0, time.perf_counter()
        while not SESSION.job.imported and time.perf_counter() - t0 < 60:
            t = time.perf_counter()
            pump.drain()
            longest = max(longest, (time.perf_counter() - t) * 1000.0)
            time.sleep(0.005)
        assert SESSION.job.imported and SESSION.job.state == "DONE", SESSION.job.error_message
        drains.append(longest)
    row["import_new_ms"] = round(statistics.median(finish), 1)
    row["import_new_longest_drain_ms"] = round(statistics.median(drains), 1)
    addon_helpers.disable()
    return row


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--faces", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        import os
        os.environ["VSDREAM_USER_DIR"] = str(Path(d) / "user")
        rows = [bench(f, Path(d)) for f in args.faces]
    for r in rows:
        print(json.dumps(r) if args.json else
              f"{r['faces']:>7} faces: re-texture execute {r['retexture_execute_ms']:.0f} ms (longest pump tick "
              f"{r['retexture_longest_drain_ms']:.0f} ms, GLB ready after {r['retexture_worker_wall_ms']:.0f} ms); "
              f"without UVs execute {r['no_uv_retexture_execute_ms']:.0f} ms, longest tick "
              f"{r['no_uv_retexture_longest_drain_ms']:.0f} ms; material swap {r['swap_material_ms']:.0f} ms, "
              f"import as new {r['import_new_ms']:.0f} ms (longest pump tick {r['import_new_longest_drain_ms']:.0f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
