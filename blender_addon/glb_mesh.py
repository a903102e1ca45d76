"""Read the engine's result GLB off the main thread, then build the object with bulk `foreach_set`.

Blender's glTF importer is Python and blocks the UI ~0.5 s for a 100k-face result. The engine's GLB
is one known shape (engine/mesh/gltf_export.py: one node without a transform, one triangle primitive
with POSITION, NORMAL, optional TEXCOORD_0, uint32 indices, one base-colour PNG), so `read()` turns it
into arrays in a worker thread and `build()` makes the mesh on the main thread in a few ms.
Anything else (`NotEngineGlb`) goes through Blender's importer instead.
"""
import array
from dataclasses import dataclass
from pathlib import Path

import bpy

from . import result_texture


class NotEngineGlb(ValueError):
    """The file is not in the engine's simple layout: use Blender's glTF importer."""


@dataclass
class GlbMesh:
    name: str
    co: array.array  # 3 per vertex, Blender Z-up
    normals: array.array  # 3 per vertex
    loop_vert: array.array  # 3 per triangle
    uv: array.array | None  # 2 per loop, Blender's bottom-left origin
    image: Path | None  # the base colour written next to the GLB
    loop_start: array.array | None = None  # 0, 3, 6, … (made in the worker)
    edge_verts: array.array | None = None  # 2 per edge, and the edge of each loop: Blender would
    loop_edge: array.array | None = None  # otherwise find them on the main thread (~50 ms at 100k faces)


def _accessor(doc: dict, body: bytes, index: int, typecode: str, width: int) -> array.array:
    acc = doc["accessors"][index]
    view = doc["bufferViews"][acc["bufferView"]]
    if view.get("byteStride", 4 * width) != 4 * width or acc.get("byteOffset", 0):
        raise NotEngineGlb("interleaved or offset accessor")
    start = int(view.get("byteOffset", 0))
    out = array.array(typecode)
    out.frombytes(body[start:start + 4 * width * int(acc["count"])])
    return out


def read(path) -> GlbMesh:
    """Parse and convert (worker thread): Y-up → Z-up positions and normals, per-loop UVs flipped."""
    path = Path(path)
    doc, body = result_texture._chunks(path.read_bytes())
    nodes, meshes = doc.get("nodes") or [], doc.get("meshes") or []
    if len(meshes) != 1 or len(meshes[0]["primitives"]) != 1 or any(
            k in n for n in nodes for k in ("matrix", "translation", "rotation", "scale", "children")):
        raise NotEngineGlb("not a single untransformed primitive")
    prim = meshes[0]["primitives"][0]
    attrs = prim["attributes"]
    if prim.get("mode", 4) != 4 or "indices" not in prim or "NORMAL" not in attrs:
        raise NotEngineGlb("not an indexed triangle list with normals")
    if doc["accessors"][prim["indices"]]["componentType"] != 5125:
        raise NotEngineGlb("indices are not uint32")
    pos = _accessor(doc, body, attrs["POSITION"], "f", 3)
    nrm = _accessor(doc, body, attrs["NORMAL"], "f", 3)
    idx = _accessor(doc, body, prim["indices"], "I", 1)
    co, normals = array.array("f", bytes(len(pos) * 4)), array.array("f", bytes(len(nrm) * 4))
    for src, dst in ((pos, co), (nrm, normals)):  # glTF (x, y, z) → Blender (x, −z, y)
        dst[0::3], dst[1::3], dst[2::3] = src[0::3], array.array("f", (-z for z in src[2::3])), src[1::3]
    uv = None
    if "TEXCOORD_0" in attrs:
        tex = _accessor(doc, body, attrs["TEXCOORD_0"], "f", 2)
        us, vs = tex[0::2], array.array("f", (1.0 - v for v in tex[1::2]))
        uv = array.array("f", bytes(8 * len(idx)))
        uv[0::2] = array.array("f", map(us.__getitem__, idx))
        uv[1::2] = array.array("f", map(vs.__getitem__, idx))
    image = None
    try:
        image = result_texture.extract_base_color(path, path.parent)
    except result_texture.ResultTextureError:
        pass
    return GlbMesh(nodes[0].get("name") or path.stem if nodes else path.stem, co, normals,
                   array.array("i", idx), uv, image, array.array("i", range(0, len(idx), 3)), *_edges(idx))


def _edges(idx: array.array) -> tuple:
    """Unique edges of a triangle list and, per loop, the edge from it to the next corner (worker)."""
    edge_of, edge_verts, loop_edge = {}, array.array("i"), array.array("i", bytes(4 * len(idx)))
    for t in range(0, len(idx), 3):
        a, b, c = idx[t], idx[t + 1], idx[t + 2]
        for k, (u, v) in enumerate(((a, b), (b, c), (c, a))):
            key = (u, v) if u < v else (v, u)
            e = edge_of.get(key)
            if e is None:
                e = edge_of[key] = len(edge_of)
                edge_verts.extend(key)
            loop_edge[t + k] = e
    return edge_verts, loop_edge


def _set(mesh, attribute: str, prop: str, fallback, fallback_prop: str, values: array.array) -> None:
    """Bulk write through the attribute API (Blender 3.5+, ~100× faster than per-item collections)."""
    attr = mesh.attributes.get(attribute)
    if attr is not None:
        attr.data.foreach_set(prop, values)
    else:
        fallback.foreach_set(fallback_prop, values)


def build(data: GlbMesh):
    """The object for `data` (main thread; bulk copies only). Not linked to any collection yet."""
    mesh = bpy.data.meshes.new(data.name)
    n_loops = len(data.loop_vert)
    mesh.vertices.add(len(data.co) // 3)
    _set(mesh, "position", "vector", mesh.vertices, "co", data.co)
    mesh.loops.add(n_loops)
    _set(mesh, ".corner_vert", "value", mesh.loops, "vertex_index", data.loop_vert)
    mesh.polygons.add(n_loops // 3)
    mesh.polygons.foreach_set("loop_start", data.loop_start or array.array("i", range(0, n_loops, 3)))
    if not hasattr(mesh, "corner_normals"):  # Blender < 4.1 also wants each polygon's size
        mesh.polygons.foreach_set("loop_total", array.array("i", [3]) * (n_loops // 3))
    if data.uv is not None:
        layer = mesh.uv_layers.new(name="UVMap")
        (layer.uv.foreach_set("vector", data.uv) if hasattr(layer, "uv") else layer.data.foreach_set("uv", data.uv))
    if data.edge_verts is not None:
        mesh.edges.add(len(data.edge_verts) // 2)
        _set(mesh, ".edge_verts", "value", mesh.edges, "vertices", data.edge_verts)
        _set(mesh, ".corner_edge", "value", mesh.loops, "edge_index", data.loop_edge)
        mesh.update()
    else:
        mesh.update(calc_edges=True)
    if hasattr(mesh, "shade_smooth"):
        mesh.shade_smooth()
    else:
        mesh.polygons.foreach_set("use_smooth", array.array("b", [1]) * (n_loops // 3))
    if bpy.app.version >= (4, 5, 0):  # custom normals are a plain attribute: one bulk copy
        mesh.attributes.new("custom_normal", "FLOAT_VECTOR", "POINT").data.foreach_set("vector", data.normals)
    else:  # older: the per-vertex API (slow for large meshes) behind auto smooth
        if hasattr(mesh, "use_auto_smooth"):
            mesh.use_auto_smooth = True
        it = iter(data.normals)
        mesh.normals_split_custom_set_from_vertices(list(zip(it, it, it, strict=False)))
    obj = bpy.data.objects.new(data.name, mesh)
    if data.image is not None:
        obj.data.materials.append(result_texture.texture_material(data.name, data.image, "UVMap"))
    return obj
