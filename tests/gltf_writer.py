"""A tiny glTF 2.0 writer for tests (struct + json): each feature the re-texture reader must take —
quantized and normalized attributes, strides, accessors without a bufferView, sparse accessors,
several primitives and nodes, skins, morph targets, GLB / data-URI / external buffers — written
by hand, so a test file holds exactly the feature it tests (no exporter in between)."""
from __future__ import annotations

import base64
import json
import struct
from pathlib import Path
from typing import Any

import numpy as np

CTYPE = {np.int8: 5120, np.uint8: 5121, np.int16: 5122, np.uint16: 5123, np.uint32: 5125, np.float32: 5126}
KIND = {1: "SCALAR", 2: "VEC2", 3: "VEC3", 4: "VEC4", 16: "MAT4"}


class Gltf:
    def __init__(self) -> None:
        self.bin = bytearray()
        self.doc: dict[str, Any] = {"asset": {"version": "2.0", "generator": "tests/gltf_writer.py"},
                                    "buffers": [], "bufferViews": [], "accessors": [], "meshes": [],
                                    "nodes": [], "scenes": [{"nodes": []}], "scene": 0}

    def view(self, data: bytes, stride: int | None = None) -> int:
        self.bin += b"\0" * (-len(self.bin) % 4)
        view = {"buffer": 0, "byteOffset": len(self.bin), "byteLength": len(data)}
        if stride:
            view["byteStride"] = stride
        self.bin += data
        self.doc["bufferViews"].append(view)
        return len(self.doc["bufferViews"]) - 1

    def accessor(self, array: Any, dtype: Any = np.float32, normalized: bool = False, stride: int | None = None,
                 no_view: bool = False, sparse: tuple[Any, Any] | None = None, count: int | None = None) -> int:
        """An accessor of `array` (N, width) or (N,); `stride` interleaves padding after each element;
        `no_view` leaves the data out (zeros) and `sparse` = (indices, values) substitutes rows."""
        a = np.asarray(array, dtype)
        a2 = a.reshape(len(a), -1)
        acc: dict[str, Any] = {"componentType": CTYPE[np.dtype(dtype).type], "count": count or len(a2),
                               "type": KIND[a2.shape[1]]}
        if normalized:
            acc["normalized"] = True
        if not no_view:
            raw = a2.tobytes()
            if stride:
                row = a2.shape[1] * a2.itemsize
                raw = b"".join(a2[i].tobytes() + b"\xee" * (stride - row) for i in range(len(a2)))
            acc["bufferView"] = self.view(raw, stride)
        if sparse is not None:
            idx = np.asarray(sparse[0], np.uint16)
            val = np.asarray(sparse[1], dtype).reshape(len(idx), -1)
            acc["sparse"] = {"count": len(idx), "indices": {"bufferView": self.view(idx.tobytes()),
                                                            "componentType": 5123},
                             "values": {"bufferView": self.view(val.tobytes())}}
        self.doc["accessors"].append(acc)
        return len(self.doc["accessors"]) - 1

    def mesh(self, *primitives: dict[str, Any], **extra: Any) -> int:
        self.doc["meshes"].append({"primitives": list(primitives), **extra})
        return len(self.doc["meshes"]) - 1

    def node(self, root: bool = True, **fields: Any) -> int:
        self.doc["nodes"].append(fields)
        index = len(self.doc["nodes"]) - 1
        if root:
            self.doc["scenes"][0]["nodes"].append(index)
        return index

    def glb(self) -> bytes:
        doc = json.loads(json.dumps(self.doc))
        binary = bytes(self.bin) + b"\0" * (-len(self.bin) % 4)
        doc["buffers"] = [{"byteLength": len(self.bin)}]
        js = json.dumps(doc).encode()
        js += b" " * (-len(js) % 4)
        return (struct.pack("<4sII", b"glTF", 2, 28 + len(js) + len(binary)) + struct.pack("<I4s", len(js), b"JSON")
                + js + struct.pack("<I4s", len(binary), b"BIN\0") + binary)

    def gltf(self, folder: Path | None = None, bin_name: str = "buffer.bin") -> bytes:
        """.gltf JSON: the buffer as a data URI, or as `bin_name` written into `folder`."""
        doc = json.loads(json.dumps(self.doc))
        if folder is None:
            uri = "data:application/octet-stream;base64," + base64.b64encode(bytes(self.bin)).decode()
        else:
            (folder / bin_name).write_bytes(bytes(self.bin))
            uri = bin_name
        doc["buffers"] = [{"byteLength": len(self.bin), "uri": uri}]
        return json.dumps(doc).encode()


def box(size: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """A closed box (8 vertices, 12 outward-facing triangles), glTF frame."""
    v = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], np.float32) * size / 2
    f = np.array([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                  [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]], np.uint16)
    return v, f


def box_glb(vertices: Any = None, faces: Any = None) -> bytes:
    """A plain indexed box GLB (or the given arrays as one), for uploads."""
    v, f = box()
    v = v if vertices is None else np.asarray(vertices, np.float32)
    f = f if faces is None else np.asarray(faces, np.uint32)
    g = Gltf()
    g.node(mesh=g.mesh({"attributes": {"POSITION": g.accessor(v)},
                        "indices": g.accessor(np.asarray(f, np.uint32).reshape(-1), np.uint32)}))
    return g.glb()
