"""Run by tests/test_mesh_export.py in its own process (bpy must be imported first, and alone).

Imports a GLB (glTF importer) and an OBJ (OBJ importer, default axes) exported by the engine and
prints, as JSON, what Blender sees: objects, materials, image size, UV layers, and the world-space
centre of the texels coloured like the marker scene's front disc (magenta) and its +X arm (cyan).
"""
import bpy  # noqa: I001  (first, before anything that might pull pymeshlab)

import json
import sys

import numpy as np


def classify(rgb):
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return (r > 0.7) & (g < 0.35) & (b > 0.5), (r < 0.45) & (g > 0.55) & (b > 0.6)


def inspect():
    meshes = [o for o in bpy.context.scene.objects if o.type == "MESH"]
    obj = meshes[0]
    me = obj.data
    images = [n.image for m in me.materials if m and m.use_nodes for n in m.node_tree.nodes
              if n.type == "TEX_IMAGE" and n.image is not None]
    info = {"meshes": len(meshes), "materials": len(me.materials), "images": len(images),
            "uv_layers": len(me.uv_layers), "vertices": len(me.vertices), "faces": len(me.polygons)}
    if not images or not me.uv_layers:
        return info
    img = images[0]
    w, h = img.size
    px = np.array(img.pixels[:], dtype=np.float32).reshape(h, w, img.channels)[..., :3]  # bottom row first
    uv = np.zeros(len(me.loops) * 2, dtype=np.float32)
    me.uv_layers.active.data.foreach_get("uv", uv)
    uv = uv.reshape(-1, 2)
    col = px[np.clip((uv[:, 1] * h).astype(int), 0, h - 1), np.clip((uv[:, 0] * w).astype(int), 0, w - 1)]
    vidx = np.zeros(len(me.loops), dtype=np.int64)
    me.loops.foreach_get("vertex_index", vidx)
    co = np.zeros(len(me.vertices) * 3, dtype=np.float64)
    me.vertices.foreach_get("co", co)
    mw = np.array(obj.matrix_world)
    world = co.reshape(-1, 3) @ mw[:3, :3].T + mw[:3, 3]
    marker, arm = classify(col)
    info["image_size"] = [w, h]
    info["marker_center"] = world[vidx[marker]].mean(0).tolist() if marker.any() else None
    info["arm_center"] = world[vidx[arm]].mean(0).tolist() if arm.any() else None
    info["bbox"] = [world.min(0).tolist(), world.max(0).tolist()]
    return info


def main():
    glb, obj = sys.argv[sys.argv.index("--") + 1:]
    out = {}
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.import_scene.gltf(filepath=glb)
    out["glb"] = inspect()
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.wm.obj_import(filepath=obj)
    out["obj"] = inspect()
    print("RESULT " + json.dumps(out))


main()
