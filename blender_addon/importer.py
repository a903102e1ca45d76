"""Bring results into the scene: generated meshes into a "VSDream" collection at the 3D cursor,
and re-textured materials swapped onto the artist's own object in place.

New objects are found by diffing bpy.data.objects around the glTF import; the engine writes
Y-up glTF (DESIGN.md §2), which Blender's importer turns back into Z-up with the front on −Y,
so no rotation is added here.
"""
import re
from pathlib import Path

import bpy
from mathutils import Vector

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


def import_results(context, glb_paths: list, info: dict, size: float = 1.0, at_cursor: bool = True) -> list:
    """Import each particle's GLB side by side at the 3D cursor (or where the file puts it);
    tag and name the roots. `info` holds job_id, prompt, seed, run_dir (custom properties)."""
    scene = context.scene
    coll = ensure_collection(scene)
    cursor = Vector(scene.cursor.location) if at_cursor else Vector()
    spacing = 2.5 * size
    n = len(glb_paths)
    roots_out = []
    for i, path in enumerate(glb_paths):
        created = import_glb(Path(path))
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


def export_for_retexture(context, obj, path: Path) -> Path:
    """Write `obj` (modifiers applied, UVs and normals, Y-up) as the GLB the engine re-textures.

    Every slot temporarily holds one plain material: a glTF primitive without a material loses
    its UVs in some readers (trimesh), and the engine needs neither the artist's textures nor
    several primitives. The object's own materials are back in place afterwards."""
    path.parent.mkdir(parents=True, exist_ok=True)
    selected = [ob for ob in context.view_layer.objects if ob.select_get()]
    active = context.view_layer.objects.active
    plain = bpy.data.materials.new("VSDream export")
    saved = [slot.material for slot in obj.material_slots]
    if saved:
        for slot in obj.material_slots:
            slot.material = plain
    else:
        obj.data.materials.append(plain)
    for ob in selected:
        ob.select_set(False)
    obj.select_set(True)
    context.view_layer.objects.active = obj
    try:
        bpy.ops.export_scene.gltf(filepath=str(path), export_format="GLB", use_selection=True,
                                  export_apply=True, export_yup=True, export_texcoords=True,
                                  export_normals=True, export_materials="EXPORT", export_animations=False)
    finally:
        if saved:
            for slot, mat in zip(obj.material_slots, saved):
                slot.material = mat
        else:
            obj.data.materials.clear()  # pop() would leave an empty object slot behind
        bpy.data.materials.remove(plain)
        obj.select_set(False)
        for ob in selected:
            ob.select_set(True)
        context.view_layer.objects.active = active
    return path


def ensure_uv_map(obj) -> bool:
    """Give a mesh without UVs one so the texture has somewhere to live: each face is projected
    along its dominant axis into one of six tiles (±X, ±Y, ±Z). True when a map was added."""
    mesh = obj.data
    if mesh.uv_layers:
        return False
    import bmesh
    bm = bmesh.new()
    bm.from_mesh(mesh)
    uv = bm.loops.layers.uv.new("VSDream UV")
    lo = Vector([min(v.co[k] for v in bm.verts) for k in range(3)]) if bm.verts else Vector()
    extent = max(max((v.co - lo)[k] for v in bm.verts) for k in range(3)) if bm.verts else 1.0
    extent = extent or 1.0
    for face in bm.faces:
        axis = max(range(3), key=lambda k: abs(face.normal[k]))
        tile = 2 * axis + (face.normal[axis] < 0)
        col, row = tile % 3, tile // 3
        u_ax, v_ax = [(1, 2), (0, 2), (0, 1)][axis]
        for loop in face.loops:
            rel = (loop.vert.co - lo) / extent
            loop[uv].uv = ((col + 0.05 + 0.9 * rel[u_ax]) / 3.0, (row + 0.05 + 0.9 * rel[v_ax]) / 2.0)
    bm.to_mesh(mesh)
    bm.free()
    return True


def swap_material(obj, glb_path: Path) -> object:
    """Import the re-textured GLB, move its material onto `obj`'s slots, drop the imported copy.

    The object, its mesh data, parenting and modifiers stay; old materials get a fake user so
    they survive in the file (the artist can switch back)."""
    created = import_glb(Path(glb_path))
    new_mat = None
    for ob in created:
        if ob.type == "MESH" and ob.data.materials:
            new_mat = next((m for m in ob.data.materials if m is not None), None)
            if new_mat:
                break
    meshes = [ob.data for ob in created if ob.type == "MESH"]
    for ob in created:
        bpy.data.objects.remove(ob)
    for mesh in meshes:
        if mesh.users == 0:
            bpy.data.meshes.remove(mesh)
    if new_mat is None:
        raise RuntimeError(f"the re-textured file has no material: {glb_path}")
    for mat in obj.data.materials:
        if mat is not None:
            mat.use_fake_user = True
    if not obj.material_slots:
        obj.data.materials.append(new_mat)
    for slot in obj.material_slots:
        slot.material = new_mat
    new_mat.name = f"VSDream {obj.name}"
    return new_mat
