"""Bring generated meshes into the scene: a "VSDream" collection at the 3D cursor (re-textured
materials go onto the artist's own object through result_texture.py).

New objects are found by diffing bpy.data.objects around the glTF import; the engine writes
Y-up glTF (DESIGN.md §2), which Blender's importer turns back into Z-up with the front on −Y,
so no rotation is added here.
"""
import re
from pathlib import Path

import bpy
from mathutils import Vector

from . import glb_mesh

COLLECTION = "VSDream"
PROP_PREFIX = "vsdream_"


def object_name(prompt: str, particle: int = 0, particles: int = 1) -> str:
    words = re.sub(r"\s+", " ", prompt).strip()[:40].rstrip(" ,.;") or "reference scene"
    return f"VSDream {words}" + (f" #{particle + 1}" if particles > 1 else "")


def ensure_collection(scene, name: str = COLLECTION):
    coll = bpy.data.collections.get(name)
    if coll is None:
        coll = bpy.data.collections.new(name)
    if coll.name not in scene.collection.children:
        scene.collection.children.link(coll)
    return coll


def import_glb(path: Path) -> list:
    """Import one GLB; return the objects it created (every new object, parents first)."""
    before = set(bpy.data.objects)
    bpy.ops.import_scene.gltf(filepath=str(path))
    return [ob for ob in bpy.data.objects if ob not in before]


def _roots(objects: list) -> list:
    s = set(objects)
    return [ob for ob in objects if ob.parent not in s]


def _move_to(objects: list, coll) -> None:
    for ob in objects:
        for other in list(ob.users_collection):
            if other != coll:
                other.objects.unlink(ob)
        if ob.name not in coll.objects:
            coll.objects.link(ob)


def _create(source) -> list:
    """New objects from a GlbMesh read in a worker thread, or from a path (read now; files not in the
    engine's layout go through Blender's glTF importer)."""
    if isinstance(source, glb_mesh.GlbMesh):
        return [glb_mesh.build(source)]
    try:
        return [glb_mesh.build(glb_mesh.read(source))]
    except glb_mesh.NotEngineGlb:
        return import_glb(Path(source))


def import_results(context, glb_paths: list, info: dict, size: float = 1.0, at_cursor: bool = True) -> list:
    """Import each particle's GLB (a path or a glb_mesh.GlbMesh) side by side at the 3D cursor (or where the file puts it);
    tag and name the roots. `info` holds job_id, prompt, seed, run_dir (custom properties)."""
    scene = context.scene
    coll = ensure_collection(scene)
    cursor = Vector(scene.cursor.location) if at_cursor else Vector()
    spacing = 2.5 * size
    n = len(glb_paths)
    roots_out = []
    for i, source in enumerate(glb_paths):
        created = _create(source)
        _move_to(created, coll)
        offset = Vector(((i - 0.5 * (n - 1)) * spacing, 0.0, 0.0)) if at_cursor else Vector()
        for root in _roots(created):
            root.location = cursor + offset + root.location * size
            root.scale = root.scale * size
            root.name = object_name(info.get("prompt", ""), i, n)
            for key, value in info.items():
                root[PROP_PREFIX + key] = value if isinstance(value, (int, float)) else str(value)
            root[PROP_PREFIX + "particle"] = i
            roots_out.append(root)
    return roots_out
