"""Read the triangles of a glTF 2.0 file (GLB or .gltf) the way conformant exporters write them.

trimesh refuses much of what the glTF spec allows (quantized attributes, accessors without a
bufferView, sparse accessors), so re-texture reads glTF here, with numpy only:

- buffers: the GLB binary chunk, base64 data URIs, and external files next to a .gltf (only
  inside its folder: an uploaded .gltf never reads another file of the server's);
- accessors: float and integer components, `normalized` integers (KHR_mesh_quantization), byte
  strides, no bufferView (all zeros) and sparse substitution;
- primitives: TRIANGLES, TRIANGLE_STRIP and TRIANGLE_FAN (converted to triangles), indexed or not;
  points and lines are skipped;
- nodes: the default scene's hierarchy with TRS or matrix transforms, a mesh on several nodes
  placed each time; skinned meshes at their rest pose (joint node transforms × inverse bind
  matrices), morph targets at their default weights.

Anything else is refused with its reason: a required extension that changes how geometry is
stored (EXT_meshopt_compression, KHR_draco_mesh_compression, EXT_mesh_gpu_instancing), a
buffer that is missing or too short, an index past the end. Positions come back in glTF's own
frame (Y up) and TEXCOORD_0 as glTF stores it (v down); the caller converts.
"""
from __future__ import annotations

import base64
import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import numpy as np

GLB_MAGIC, JSON_CHUNK, BIN_CHUNK = b"glTF", 0x4E4F534A, 0x004E4942
COMPONENTS = {5120: np.int8, 5121: np.uint8, 5122: np.int16, 5123: np.uint16, 5125: np.uint32, 5126: np.float32}
WIDTH = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT2": 4, "MAT3": 9, "MAT4": 16}
TRIANGLES, STRIP, FAN = 4, 5, 6
# required extensions that only add quantized types (read here) or concern materials, lights, cameras
# and textures (not read here) are fine; these change where or how the triangles are stored
GEOMETRY_EXTENSIONS_REFUSED = {
    "EXT_meshopt_compression": "meshopt-compressed buffers (gltfpack -c)",
    "KHR_draco_mesh_compression": "Draco-compressed geometry",
    "EXT_mesh_gpu_instancing": "GPU instancing",
}


class GltfError(ValueError):
    """The file is not glTF this reader can take; the message says why in a user's words."""


@dataclass
class GltfMesh:
    vertices: np.ndarray  # (N, 3) float64, node transforms applied, glTF frame (Y up)
    faces: np.ndarray  # (F, 3) int64
    uvs: np.ndarray | None  # (N, 2) float32 TEXCOORD_0 when every triangle primitive has one


def read_gltf(path: str | Path) -> GltfMesh:
    """The file's triangles: .glb or .gltf (external buffers are read from the file's own folder)."""
    path = Path(path)
    return parse_gltf(path.read_bytes(), path.parent)


def parse_gltf(data: bytes, folder: Path | None = None) -> GltfMesh:
    doc, binary = _split_glb(data) if data[:4] == GLB_MAGIC else (_json(data), None)
    return _Reader(doc, binary, folder).mesh()


# ----------------------------------------------------------------- container
def _json(raw: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise GltfError("the file is neither a GLB nor glTF JSON") from None
    doc = _integral(doc)
    if not isinstance(doc, dict) or not isinstance(doc.get("asset"), dict):
        raise GltfError("the file is not glTF (no 'asset' object)")
    version = str(doc["asset"].get("version", ""))
    if not version.startswith("2."):
        raise GltfError(f"the file is glTF {version or '(no version)'}; only glTF 2.x is read")
    return doc


def _split_glb(data: bytes) -> tuple[dict[str, Any], bytes | None]:
    if len(data) < 20:
        raise GltfError("the file is a GLB cut short (no JSON chunk)")
    _, version, length = struct.unpack_from("<4sII", data)
    if version != 2:
        raise GltfError(f"the file is a GLB of version {version}; only version 2 is read")
    if length > len(data):
        raise GltfError(f"the file is a GLB cut short ({len(data)} of {length} bytes)")
    pos, doc, binary = 12, None, None
    while pos + 8 <= length:
        size, kind = struct.unpack_from("<II", data, pos)
        body = data[pos + 8:pos + 8 + size]
        if len(body) < size:
            raise GltfError("the file is a GLB whose chunk runs past the end of the file")
        if kind == JSON_CHUNK and doc is None:
            doc = _json(body)
        elif kind == BIN_CHUNK and binary is None and doc is not None:
            binary = body
        pos += 8 + size  # chunk lengths include their padding to 4 bytes
    if doc is None:
        raise GltfError("the file is a GLB without a JSON chunk")
    return doc, binary


# ----------------------------------------------------------------- reading
class _Reader:
    def __init__(self, doc: dict[str, Any], binary: bytes | None, folder: Path | None):
        self.doc, self.binary, self.folder = doc, binary, folder
        self._buffers: dict[int, bytes] = {}
        for ext in doc.get("extensionsRequired") or []:
            if ext in GEOMETRY_EXTENSIONS_REFUSED:
                raise GltfError(f"the file requires {ext} ({GEOMETRY_EXTENSIONS_REFUSED[ext]}), which is not supported: "
                                "export it again without compression")

    def _list(self, key: str) -> list[Any]:
        value = self.doc.get(key) or []
        if not isinstance(value, list):
            raise GltfError(f"the file has a '{key}' that is not a list")
        return value

    def _item(self, key: str, index: Any) -> dict[str, Any]:
        items = self._list(key)
        i = _integer(index)
        if i is None or not 0 <= i < len(items) or not isinstance(items[i], dict):
            raise GltfError(f"the file refers to {key}[{index}], which does not exist")
        return items[i]

    # -------------------------------------------------------- buffers
    def buffer(self, index: int) -> bytes:
        if index in self._buffers:
            return self._buffers[index]
        buf = self._item("buffers", index)
        uri = buf.get("uri")
        if uri is None:
            if index == 0 and self.binary is not None:
                data = self.binary
            elif (buf.get("extensions") or {}).get("EXT_meshopt_compression", {}).get("fallback"):
                raise GltfError(f"buffer {index} is a fallback with no data (EXT_meshopt_compression), which "
                                "is not supported: export it again without compression")
            else:
                raise GltfError(f"buffer {index} has no data (no uri, and no GLB binary chunk)")
        elif not isinstance(uri, str):
            raise GltfError(f"buffer {index} has a uri that is not text")
        elif uri.startswith("data:"):
            head, _, body = uri.partition(",")
            if not head.endswith(";base64"):
                raise GltfError(f"buffer {index} is a data URI that is not base64")
            try:
                data = base64.b64decode(body, validate=False)
            except ValueError:
                raise GltfError(f"buffer {index} is a data URI whose base64 is broken") from None
        else:
            data = self._external(index, unquote(uri))
        length = buf.get("byteLength")
        if isinstance(length, int) and len(data) < length:
            raise GltfError(f"buffer {index} holds {len(data)} bytes, fewer than its byteLength {length}")
        self._buffers[index] = data
        return data

    def _external(self, index: int, name: str) -> bytes:
        if self.folder is None:
            raise GltfError(f"buffer {index} is an external file ({name!r}); send a GLB instead")
        base = self.folder.resolve()
        target = (base / name).resolve() if "\x00" not in name and not Path(name).is_absolute() else None
        if target is None or not target.is_relative_to(base):
            raise GltfError(f"buffer {index} names a file outside the glTF's folder ({name[:100]!r})")
        try:
            return target.read_bytes()
        except OSError:
            raise GltfError(f"buffer {index}'s file {name[:100]!r} is missing next to the .gltf "
                            "(send a GLB, which holds its buffers)") from None

    def _view(self, index: Any) -> tuple[bytes, int, int, int | None]:
        """(buffer bytes, start, length, byteStride) of a bufferView, bounds checked."""
        view = self._item("bufferViews", index)
        data = self.buffer(view.get("buffer"))
        start, length = view.get("byteOffset", 0), view.get("byteLength")
        if not (_count(start) and _count(length)) or start + length > len(data):
            raise GltfError(f"bufferView {index} lies outside its buffer")
        stride = view.get("byteStride")
        if stride is not None and not (isinstance(stride, int) and 4 <= stride <= 252):
            raise GltfError(f"bufferView {index} has byteStride {stride!r} (allowed: 4 to 252)")
        return data, start, length, stride

    # -------------------------------------------------------- accessors
    def accessor(self, index: Any) -> np.ndarray:
        """(count, width) float64 for a vector accessor, (count,) for a scalar; dequantized."""
        acc = self._item("accessors", index)
        kind, ctype, count = acc.get("type"), acc.get("componentType"), acc.get("count")
        if kind not in WIDTH or ctype not in COMPONENTS or not _count(count) or count == 0:
            raise GltfError(f"accessor {index} is malformed (type {kind!r}, componentType {ctype!r}, "
                            f"count {count!r})")
        width, dtype = WIDTH[kind], np.dtype(COMPONENTS[ctype]).newbyteorder("<")
        if "bufferView" in acc:
            out = self._strided(index, acc, count, width, dtype)
        else:  # the spec's zeros, then (usually) sparse values
            out = np.zeros((count, width), dtype)
        sparse = acc.get("sparse")
        if sparse is not None:
            self._apply_sparse(index, sparse, out, width, dtype)
        values = out.astype(np.float64)
        if acc.get("normalized"):
            values = _dequantize(values, dtype)
        return values[:, 0] if kind == "SCALAR" else values

    def _strided(self, index: Any, acc: dict[str, Any], count: int, width: int, dtype: np.dtype) -> np.ndarray:
        data, start, length, stride = self._view(acc["bufferView"])
        offset = acc.get("byteOffset", 0)
        if not _count(offset):
            raise GltfError(f"accessor {index} has a bad byteOffset")
        element = width * dtype.itemsize
        stride = stride or element
        if stride < element:
            raise GltfError(f"accessor {index}'s elements ({element} bytes) overlap at byteStride {stride}")
        if offset + stride * (count - 1) + element > length:
            raise GltfError(f"accessor {index} reads past the end of its bufferView")
        raw = np.frombuffer(data, np.uint8, count=length - offset, offset=start + offset)
        rows = np.lib.stride_tricks.as_strided(raw, (count, element), (stride, 1))
        return rows.copy().view(dtype).reshape(count, width)  # a copy: sparse values are written into it

    def _apply_sparse(self, index: Any, sparse: dict[str, Any], out: np.ndarray, width: int,
                      dtype: np.dtype) -> None:
        n = sparse.get("count")
        idx, val = sparse.get("indices") or {}, sparse.get("values") or {}
        if not _count(n) or n == 0 or idx.get("componentType") not in (5121, 5123, 5125):
            raise GltfError(f"accessor {index} has malformed sparse data")
        where = self._plain(idx, n, 1, np.dtype(COMPONENTS[idx["componentType"]]).newbyteorder("<"), index)
        values = self._plain(val, n, width, dtype, index)
        where = where[:, 0].astype(np.int64)
        if where.size and where.max() >= out.shape[0]:
            raise GltfError(f"accessor {index}'s sparse indices pass its count {out.shape[0]}")
        out[where] = values

    def _plain(self, ref: dict[str, Any], count: int, width: int, dtype: np.dtype, index: Any) -> np.ndarray:
        """Tightly packed values (sparse indices and values have no stride)."""
        data, start, length, _ = self._view(ref.get("bufferView"))
        offset = ref.get("byteOffset", 0)
        size = count * width * dtype.itemsize
        if not _count(offset) or offset + size > length:
            raise GltfError(f"accessor {index}'s sparse data reads past the end of its bufferView")
        return np.frombuffer(data, dtype, count=count * width, offset=start + offset).reshape(count, width)

    # -------------------------------------------------------- scene
    def mesh(self) -> GltfMesh:
        verts: list[np.ndarray] = []
        faces: list[np.ndarray] = []
        uvs: list[np.ndarray | None] = []
        lines_only = False
        for mesh_index, world, weights, skin in self._placed_meshes():
            mesh = self._item("meshes", mesh_index)
            prims = mesh.get("primitives")
            if not isinstance(prims, list) or not prims:
                raise GltfError(f"mesh {mesh_index} has no primitives")
            for prim in prims:
                if not isinstance(prim, dict):
                    raise GltfError(f"mesh {mesh_index} has a primitive that is not an object")
                got = self._primitive(mesh_index, mesh, prim, world, weights, skin)
                if got is None:
                    lines_only = True
                    continue
                v, f, uv = got
                faces.append(f + sum(len(x) for x in verts))
                verts.append(v)
                uvs.append(uv)
        if not faces:
            raise GltfError("the file contains no triangle mesh (points or lines only)" if lines_only
                            else "contains no triangle mesh (an empty scene)")
        keep_uvs = all(u is not None for u in uvs)
        return GltfMesh(np.concatenate(verts), np.concatenate(faces),
                        np.concatenate(uvs).astype(np.float32) if keep_uvs else None)

    def _placed_meshes(self) -> list[tuple[int, np.ndarray, Any, Any]]:
        """(mesh, world matrix, node's morph weights, skin) for every node of the default scene that
        holds a mesh; meshes of a file whose nodes place none (or with no nodes) are taken as they are."""
        nodes = self._list("nodes")
        if not nodes:
            return [(i, np.eye(4), None, None) for i in range(len(self._list("meshes")))]
        scenes = self._list("scenes")
        if scenes:
            scene = self._item("scenes", self.doc.get("scene", 0))
            roots = scene.get("nodes") or []
        else:  # no scene: every node no other node has as a child
            children = {c for n in nodes if isinstance(n, dict) for c in n.get("children") or []}
            roots = [i for i in range(len(nodes)) if i not in children]
        out: list[tuple[int, np.ndarray, Any, Any]] = []
        self._worlds: dict[int, np.ndarray] = {}
        stack = [(r, np.eye(4)) for r in reversed(roots)]
        seen: set[int] = set()
        while stack:
            index, parent = stack.pop()
            node = self._item("nodes", index)
            if index in seen:
                raise GltfError(f"node {index} is its own ancestor or has two parents")
            seen.add(index)
            world = parent @ _local(node, index)
            self._worlds[index] = world
            if "mesh" in node:
                out.append((node["mesh"], world, node.get("weights"), node.get("skin")))
            stack.extend((c, world) for c in reversed(node.get("children") or []))
        if not out:  # nodes, but none places a mesh (a library of meshes): take the meshes as they are
            return [(i, np.eye(4), None, None) for i in range(len(self._list("meshes")))]
        return out

    def _primitive(self, mesh_index: int, mesh: dict[str, Any], prim: dict[str, Any], world: np.ndarray,
                   node_weights: Any, skin: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray | None] | None:
        mode = prim.get("mode", TRIANGLES)
        if mode not in (TRIANGLES, STRIP, FAN):
            if mode in (0, 1, 2, 3):
                return None  # points or lines
            raise GltfError(f"mesh {mesh_index} has a primitive of unknown mode {mode!r}")
        attrs = prim.get("attributes") or {}
        if "POSITION" not in attrs:
            raise GltfError(f"mesh {mesh_index} has a primitive without POSITION")
        pos = self.accessor(attrs["POSITION"])
        if pos.ndim != 2 or pos.shape[1] != 3:
            raise GltfError(f"mesh {mesh_index}'s POSITION is not a VEC3 accessor")
        pos = pos + self._morph(mesh_index, mesh, prim, node_weights, len(pos))
        if skin is not None:
            pos = self._skinned(skin, attrs, pos)
        else:
            pos = pos @ world[:3, :3].T + world[:3, 3]
        n = len(pos)
        if "indices" in prim:
            idx = self.accessor(prim["indices"])
            if idx.ndim != 1 or self._item("accessors", prim["indices"]).get("componentType") not in (5121, 5123, 5125):
                raise GltfError(f"mesh {mesh_index}'s indices are not unsigned integer scalars")
            idx = idx.astype(np.int64)
        else:
            idx = np.arange(n, dtype=np.int64)
        if idx.size and idx.max() >= n:
            raise GltfError(f"mesh {mesh_index} has an index {int(idx.max())} past its {n} vertices")
        faces = _triangles(idx, mode)
        if skin is None and np.linalg.det(world[:3, :3]) < 0:
            faces = faces[:, ::-1]  # a mirroring transform flips the winding (glTF spec, 3.7.4)
        uv = None
        if "TEXCOORD_0" in attrs:
            uv = self.accessor(attrs["TEXCOORD_0"])
            if uv.ndim != 2 or uv.shape != (n, 2):
                raise GltfError(f"mesh {mesh_index}'s TEXCOORD_0 is not a VEC2 accessor of {n} items")
        return pos, faces, uv

    def _morph(self, mesh_index: int, mesh: dict[str, Any], prim: dict[str, Any], node_weights: Any,
               n: int) -> np.ndarray:
        """Σ weight·target POSITION offsets at the default weights (the node's, else the mesh's)."""
        targets = prim.get("targets") or []
        weights = node_weights if node_weights is not None else mesh.get("weights")
        out = np.zeros((n, 3))
        for k, target in enumerate(targets):
            w = weights[k] if isinstance(weights, list) and k < len(weights) else 0.0
            if isinstance(target, dict) and "POSITION" in target and isinstance(w, (int, float)) and w != 0:
                delta = self.accessor(target["POSITION"])
                if delta.shape != (n, 3):
                    raise GltfError(f"mesh {mesh_index} has a morph target of the wrong size")
                out += float(w) * delta
        return out

    def _skinned(self, skin_index: Any, attrs: dict[str, Any], pos: np.ndarray) -> np.ndarray:
        """Rest pose: each vertex moved by Σ weight · (joint world × inverse bind); the node's own
        transform is ignored, as the glTF spec says for skinned meshes."""
        skin = self._item("skins", skin_index)
        joints = skin.get("joints") or []
        if not joints:
            raise GltfError(f"skin {skin_index} has no joints")
        if "inverseBindMatrices" in skin:
            ibm = self.accessor(skin["inverseBindMatrices"]).reshape(-1, 4, 4).transpose(0, 2, 1)
        else:
            ibm = np.broadcast_to(np.eye(4), (len(joints), 4, 4))
        if len(ibm) < len(joints):
            raise GltfError(f"skin {skin_index} has fewer inverse bind matrices than joints")
        mats = np.stack([self._joint_world(j) @ ibm[i] for i, j in enumerate(joints)])
        n = len(pos)
        homog = np.concatenate([pos, np.ones((n, 1))], 1)
        out, total = np.zeros((n, 4)), np.zeros(n)
        k = 0
        while f"JOINTS_{k}" in attrs and f"WEIGHTS_{k}" in attrs:
            jid = self.accessor(attrs[f"JOINTS_{k}"]).astype(np.int64)
            wts = self.accessor(attrs[f"WEIGHTS_{k}"])
            if jid.shape != (n, 4) or wts.shape != (n, 4) or jid.max() >= len(joints) or jid.min() < 0:
                raise GltfError(f"skin {skin_index}: JOINTS_{k}/WEIGHTS_{k} do not match its vertices or joints")
            for c in range(4):
                out += wts[:, c:c + 1] * np.einsum("nij,nj->ni", mats[jid[:, c]], homog)
                total += wts[:, c]
            k += 1
        if k == 0:
            raise GltfError(f"skin {skin_index} is used by a primitive without JOINTS_0/WEIGHTS_0")
        bare = total <= 1e-12  # no weight at all: leave the vertex where it is
        out[bare] = homog[bare]
        out[~bare] /= total[~bare, None]
        return out[:, :3]

    def _joint_world(self, index: Any) -> np.ndarray:
        world = self._worlds.get(index) if isinstance(index, int) else None
        if world is None:  # a joint outside the default scene: its own local transform
            world = _local(self._item("nodes", index), index)
        return world


# ----------------------------------------------------------------- helpers
def _integral(obj: Any) -> Any:
    """JSON has one number type: 1.0 where an index or count is due means 1 (the validator agrees), so
    every whole float becomes an int once, here; transforms and weights read the same either way."""
    if isinstance(obj, float) and obj.is_integer():
        return int(obj)
    if isinstance(obj, dict):
        return {k: _integral(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_integral(v) for v in obj]
    return obj


def _integer(v: Any) -> int | None:
    """A JSON integer; 1.0 counts (JSON has one number type, and the validator accepts it)."""
    if isinstance(v, bool):
        return None
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v if isinstance(v, int) else None


def _count(v: Any) -> bool:
    return _integer(v) is not None and v >= 0


def _dequantize(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """glTF's normalized integers: unsigned c / (2^b − 1), signed max(c / (2^(b−1) − 1), −1)."""
    if dtype.kind == "f":
        return values
    info = np.iinfo(dtype)
    return values / info.max if info.min == 0 else np.maximum(values / info.max, -1.0)


def _local(node: dict[str, Any], index: Any) -> np.ndarray:
    """A node's local matrix: `matrix` (column-major) or translation · rotation · scale."""
    try:
        if "matrix" in node:
            m = np.asarray(node["matrix"], np.float64)
            if m.shape != (16,):
                raise ValueError
            return m.reshape(4, 4).T
        t = np.asarray(node.get("translation", [0, 0, 0]), np.float64).reshape(3)
        x, y, z, w = np.asarray(node.get("rotation", [0, 0, 0, 1]), np.float64).reshape(4)
        s = np.asarray(node.get("scale", [1, 1, 1]), np.float64).reshape(3)
    except (ValueError, TypeError):
        raise GltfError(f"node {index} has a malformed transform") from None
    norm = np.sqrt(x * x + y * y + z * z + w * w)
    if norm > 0:
        x, y, z, w = x / norm, y / norm, z / norm, w / norm
    rot = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                    [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                    [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
    m = np.eye(4)
    m[:3, :3] = rot * s[None, :]
    m[:3, 3] = t
    return m


def _triangles(idx: np.ndarray, mode: int) -> np.ndarray:
    """(F, 3) triangles of an index list; strips and fans keep the glTF spec's winding."""
    if mode == TRIANGLES:
        return idx[: len(idx) // 3 * 3].reshape(-1, 3)
    n = len(idx) - 2
    if n <= 0:
        return np.zeros((0, 3), np.int64)
    i = np.arange(n)
    if mode == STRIP:  # p_i = {v_i, v_{i+(1+i%2)}, v_{i+(2-i%2)}}
        return np.stack([idx[i], idx[i + 1 + i % 2], idx[i + 2 - i % 2]], 1)
    return np.stack([idx[i + 1], idx[i + 2], np.full(n, idx[0])], 1)  # fan: {v_{i+1}, v_{i+2}, v_0}
