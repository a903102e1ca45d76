"""The mesh the engine re-textures, without blocking Blender: copy, then write elsewhere.

On the main thread only `snapshot()` runs: bulk `foreach_get` copies of the evaluated mesh (modifiers
applied) into arrays, a few ms at 100k faces. `write_glb()` turns them into a GLB in a worker thread:
one vertex per distinct (vertex, UV, normal) corner, world space, Y-up (DESIGN.md §2), one plain material
(a glTF primitive without a material loses its UVs in some readers), UVs flipped to glTF's top-left origin.
`box_uvs()` (also off the main thread) gives a mesh without UVs a six-tile box projection.
"""
import array
import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path

UV_MAP_NAME = "VSDream UV"


@dataclass
class MeshSnapshot:
    name: str
    co: array.array  # float, 3 per vertex, object space
    tri_loops: array.array | None  # int, 3 loop indices per triangle (None: only triangles and quads)
    loop_vert: array.array  # int, vertex index of each loop
    normals: array.array  # float, 3 per loop (corner normals)
    uv: array.array | None  # float, 2 per loop, or None
    matrix: tuple  # 4×4 world matrix, row-major
    uv_map: str = ""
    loop_start: array.array | None = None  # per polygon, to triangulate triangles and quads (tri_loops None)
    loop_total: array.array | None = None


def triangle_loops(snap: "MeshSnapshot") -> array.array:
    """3 loop indices per triangle: Blender's (n-gons) or each triangle and quad split along 0-2 (worker)."""
    if snap.tri_loops is not None:
        return snap.tri_loops
    out = array.array("i")
    for start, total in zip(snap.loop_start, snap.loop_total, strict=True):
        out.extend((start, start + 1, start + 2))
        if total == 4:
            out.extend((start, start + 2, start + 3))
    return out


def _floats(n: int) -> array.array:
    return array.array("f", bytes(4 * n))


def _ints(n: int) -> array.array:
    return array.array("i", bytes(4 * n))


def export_uv_layer(mesh):
    """The UV layer a material uses by default (the active render one), else the active one."""
    layers = mesh.uv_layers
    return next((layer for layer in layers if getattr(layer, "active_render", False)), None) or layers.active


def _get(mesh, attribute: str, prop: str, fallback, fallback_prop: str, out: array.array) -> array.array:
    """Bulk copy through the attribute API (Blender 3.5+: ~100× faster than per-item collections such as
    `loops`), else through the older collection."""
    attr = mesh.attributes.get(attribute) if attribute else None
    if attr is not None and len(attr.data) * (len(out) // max(1, len(attr.data))) == len(out):
        attr.data.foreach_get(prop, out)
    else:
        fallback.foreach_get(fallback_prop, out)
    return out


def face_count(obj, depsgraph) -> int:
    """Faces of the object as it renders (modifiers applied)."""
    return len(obj.evaluated_get(depsgraph).data.polygons)


def snapshot(obj, depsgraph) -> MeshSnapshot:
    """Copy what the GLB needs from the evaluated mesh (main thread; bulk copies only)."""
    evaluated = obj.evaluated_get(depsgraph)
    mesh = evaluated.to_mesh()
    try:
        co = _get(mesh, "position", "vector", mesh.vertices, "co", _floats(3 * len(mesh.vertices)))
        starts, totals = _ints(len(mesh.polygons)), _ints(len(mesh.polygons))
        mesh.polygons.foreach_get("loop_start", starts)
        mesh.polygons.foreach_get("loop_total", totals)
        tri = None
        if max(totals, default=3) > 4:  # n-gons: Blender's own triangulation (concave ones too), ~2× slower
            if hasattr(mesh, "calc_loop_triangles"):
                mesh.calc_loop_triangles()
            tri = _ints(3 * len(mesh.loop_triangles))
            mesh.loop_triangles.foreach_get("loops", tri)
        loop_vert = _get(mesh, ".corner_vert", "value", mesh.loops, "vertex_index", _ints(len(mesh.loops)))
        normals = _floats(3 * len(mesh.loops))
        if hasattr(mesh, "corner_normals"):  # Blender 4.1+
            mesh.corner_normals.foreach_get("vector", normals)
        else:
            mesh.calc_normals_split()
            mesh.loops.foreach_get("normal", normals)
        layer, uv = export_uv_layer(mesh), None
        if layer is not None:
            uv = _get(mesh, layer.name, "vector", layer.data, "uv", _floats(2 * len(mesh.loops)))
        matrix = tuple(tuple(row) for row in obj.matrix_world)
        return MeshSnapshot(obj.name, co, tri, loop_vert, normals, uv, matrix, layer.name if layer else "",
                            starts, totals)
    finally:
        evaluated.to_mesh_clear()


def _transform(matrix: tuple):
    """World matrix → (position, normal) functions giving glTF's Y-up coordinates (x, z, −y)."""
    m = matrix
    a = [[m[r][c] for c in range(3)] for r in range(3)]
    det = (a[0][0] * (a[1][1] * a[2][2] - a[1][2] * a[2][1]) - a[0][1] * (a[1][0] * a[2][2] - a[1][2] * a[2][0])
           + a[0][2] * (a[1][0] * a[2][1] - a[1][1] * a[2][0]))
    inv_det = 1.0 / det if abs(det) > 1e-20 else 0.0
    # normal matrix = inverse transpose of the 3×3 part = cofactor matrix / det
    cof = [[(a[(r + 1) % 3][(c + 1) % 3] * a[(r + 2) % 3][(c + 2) % 3]
             - a[(r + 1) % 3][(c + 2) % 3] * a[(r + 2) % 3][(c + 1) % 3]) * inv_det for c in range(3)]
           for r in range(3)]

    def pos(x, y, z):
        wx = m[0][0] * x + m[0][1] * y + m[0][2] * z + m[0][3]
        wy = m[1][0] * x + m[1][1] * y + m[1][2] * z + m[1][3]
        wz = m[2][0] * x + m[2][1] * y + m[2][2] * z + m[2][3]
        return wx, wz, -wy

    def nrm(x, y, z):
        wx = cof[0][0] * x + cof[0][1] * y + cof[0][2] * z
        wy = cof[1][0] * x + cof[1][1] * y + cof[1][2] * z
        wz = cof[2][0] * x + cof[2][1] * y + cof[2][2] * z
        length = math.sqrt(wx * wx + wy * wy + wz * wz) or 1.0
        return wx / length, wz / length, -wy / length
    return pos, nrm


def glb_bytes(snap: MeshSnapshot) -> bytes:
    """The GLB of a snapshot (worker thread)."""
    pos_of, nrm_of = _transform(snap.matrix)
    co, lv, nr, uv = snap.co, snap.loop_vert, snap.normals, snap.uv
    corner_of_loop = {}  # loop → output vertex, shared by loops with the same vertex, UV and normal
    key_index = {}
    positions, normals, uvs = array.array("f"), array.array("f"), array.array("f")
    indices = array.array("I")
    for loop in triangle_loops(snap):
        out = corner_of_loop.get(loop)
        if out is None:
            v = lv[loop]
            key = (v, nr[3 * loop], nr[3 * loop + 1], nr[3 * loop + 2]) + (
                (uv[2 * loop], uv[2 * loop + 1]) if uv is not None else ())
            out = key_index.get(key)
            if out is None:
                out = key_index[key] = len(key_index)
                positions.extend(pos_of(co[3 * v], co[3 * v + 1], co[3 * v + 2]))
                normals.extend(nrm_of(nr[3 * loop], nr[3 * loop + 1], nr[3 * loop + 2]))
                if uv is not None:
                    uvs.extend((uv[2 * loop], 1.0 - uv[2 * loop + 1]))
            corner_of_loop[loop] = out
        indices.append(out)
    return _pack_glb(snap.name, positions, normals, uvs if uv is not None else None, indices)


def _pack_glb(name: str, positions, normals, uvs, indices) -> bytes:
    blobs, views, accessors = [], [], []
    offset = 0

    def add(data: array.array, target: int, component: int, kind: str, count: int, **extra) -> int:
        nonlocal offset
        raw = data.tobytes()
        blobs.append(raw + b"\0" * (-len(raw) % 4))
        views.append({"buffer": 0, "byteOffset": offset, "byteLength": len(raw), "target": target})
        offset += len(blobs[-1])
        accessors.append({"bufferView": len(views) - 1, "componentType": component, "count": count,
                          "type": kind, **extra})
        return len(accessors) - 1

    n = len(positions) // 3
    lo = [min(positions[k::3]) for k in range(3)] if n else [0.0] * 3
    hi = [max(positions[k::3]) for k in range(3)] if n else [0.0] * 3
    attributes = {"POSITION": add(positions, 34962, 5126, "VEC3", n, min=lo, max=hi),
                  "NORMAL": add(normals, 34962, 5126, "VEC3", n)}
    if uvs is not None:
        attributes["TEXCOORD_0"] = add(uvs, 34962, 5126, "VEC2", n)
    index_accessor = add(indices, 34963, 5125, "SCALAR", len(indices))
    doc = {"asset": {"version": "2.0", "generator": "VSDream Blender add-on"}, "scene": 0,
           "scenes": [{"nodes": [0]}], "nodes": [{"mesh": 0, "name": name}],
           "meshes": [{"name": name, "primitives": [{"attributes": attributes, "indices": index_accessor,
                                                       "material": 0, "mode": 4}]}],
           "materials": [{"name": "VSDream export", "pbrMetallicRoughness": {
               "baseColorFactor": [0.8, 0.8, 0.8, 1.0], "metallicFactor": 0.0, "roughnessFactor": 1.0}}],
           "buffers": [{"byteLength": offset}], "bufferViews": views, "accessors": accessors}
    js = json.dumps(doc, separators=(",", ":")).encode()
    js += b" " * (-len(js) % 4)
    body = b"".join(blobs)
    total = 12 + 8 + len(js) + 8 + len(body)
    return (struct.pack("<III", 0x46546C67, 2, total) + struct.pack("<II", len(js), 0x4E4F534A) + js
            + struct.pack("<II", len(body), 0x004E4942) + body)


def write_glb(snap: MeshSnapshot, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(glb_bytes(snap))
    return path


@dataclass
class UvInput:
    """What a box projection needs from the base mesh (copied on the main thread)."""

    co: array.array  # 3 per vertex
    loop_vert: array.array  # vertex per loop
    face_normal: array.array  # 3 per polygon
    loop_total: array.array  # corners per polygon (a polygon's loops are contiguous and in order)


def uv_input(mesh) -> UvInput:
    """Bulk copies for `box_uvs` (main thread): vertices, loop vertices, face normals and sizes."""
    co = _get(mesh, "position", "vector", mesh.vertices, "co", _floats(3 * len(mesh.vertices)))
    loop_vert = _get(mesh, ".corner_vert", "value", mesh.loops, "vertex_index", _ints(len(mesh.loops)))
    face_n = _floats(3 * len(mesh.polygons))
    (mesh.polygon_normals if hasattr(mesh, "polygon_normals") else mesh.polygons).foreach_get(
        "vector" if hasattr(mesh, "polygon_normals") else "normal", face_n)
    totals = _ints(len(mesh.polygons))
    mesh.polygons.foreach_get("loop_total", totals)
    return UvInput(co, loop_vert, face_n, totals)


def box_uvs(src: UvInput) -> array.array:
    """Per-loop UVs: each face projected along its dominant axis into one of six tiles (±X, ±Y, ±Z)
    of a 3×2 atlas, with a margin between tiles (worker thread)."""
    co = src.co
    n = len(co) // 3
    lo = [min(co[k::3]) for k in range(3)] if n else [0.0] * 3
    extent = max((max(co[k::3]) - lo[k] for k in range(3)), default=1.0) if n else 1.0
    extent = extent or 1.0
    planes = ((1, 2), (0, 2), (0, 1))
    out = array.array("f", bytes(8 * len(src.loop_vert)))
    ln = array.array("f")
    fn = src.face_normal
    for p, total in enumerate(src.loop_total):
        ln.extend(fn[3 * p:3 * p + 3] * total)
    for i, v in enumerate(src.loop_vert):
        nx, ny, nz = abs(ln[3 * i]), abs(ln[3 * i + 1]), abs(ln[3 * i + 2])
        axis = 0 if nx >= ny and nx >= nz else (1 if ny >= nz else 2)
        tile = 2 * axis + (ln[3 * i + axis] < 0)
        u_ax, v_ax = planes[axis]
        out[2 * i] = (tile % 3 + 0.05 + 0.9 * (co[3 * v + u_ax] - lo[u_ax]) / extent) / 3.0
        out[2 * i + 1] = (tile // 3 + 0.05 + 0.9 * (co[3 * v + v_ax] - lo[v_ax]) / extent) / 2.0
    return out
