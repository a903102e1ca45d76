"""Write the textured mesh as GLB (one mesh, one PBR material with an embedded PNG base colour),
or OBJ + MTL + PNG. Files are written atomically: a failure leaves no partial file behind.

Axes: the engine works in Blender's frame (Z up, front −Y); glTF is Y up, so positions and
normals are written as (x, z, −y). Blender's glTF importer undoes exactly that, and its OBJ
importer (forward −Z, up Y by default) does too, so the front lands on −Y either way.
"""
from __future__ import annotations

import io
import json
import struct
from pathlib import Path
from typing import Any

import numpy as np

from ..run_dir import atomic_write_bytes
from .types import TexturedMesh

# row-vector maps: p_gltf = p_blender @ BLENDER_TO_GLTF.T
BLENDER_TO_GLTF = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])


def blender_to_gltf(p: np.ndarray) -> np.ndarray:
    return np.asarray(p, np.float64) @ BLENDER_TO_GLTF.T


def gltf_to_blender(p: np.ndarray) -> np.ndarray:
    return np.asarray(p, np.float64) @ BLENDER_TO_GLTF


def png_bytes(texture: np.ndarray) -> bytes:
    from PIL import Image
    img = Image.fromarray((np.clip(texture, 0, 1) * 255 + 0.5).astype(np.uint8), "RGB")
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False, compress_level=3)
    return buf.getvalue()


def _check(mesh: TexturedMesh) -> None:
    if mesh.faces.shape[0] == 0 or mesh.vertices.shape[0] == 0:
        raise ValueError("cannot export a mesh without faces")
    if not np.isfinite(mesh.vertices).all():
        raise ValueError("mesh vertices contain NaN or infinity")
    if mesh.uvs is not None and mesh.uvs.shape[0] != mesh.vertices.shape[0]:
        raise ValueError("uvs must have one row per vertex")


def _json_safe(extras: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(extras, default=str))


def glb_bytes(mesh: TexturedMesh, extras: dict[str, Any] | None = None, name: str = "vsdream") -> bytes:
    """The GLB file content; `extras` (prompt, seed, spec…) go into asset.extras."""
    _check(mesh)
    blobs: list[bytes] = []
    views: list[dict] = []
    accessors: list[dict] = []

    def add_view(data: bytes, target: int | None = None) -> int:
        offset = sum(len(b) for b in blobs)
        blobs.append(data + b"\0" * (-len(data) % 4))
        view = {"buffer": 0, "byteOffset": offset, "byteLength": len(data)}
        if target is not None:
            view["target"] = target
        views.append(view)
        return len(views) - 1

    def add_accessor(arr: np.ndarray, kind: str, ctype: int, target: int, minmax: bool = False) -> int:
        acc = {"bufferView": add_view(arr.tobytes(), target), "componentType": ctype,
               "count": int(arr.shape[0]), "type": kind}
        if minmax:
            acc["min"], acc["max"] = arr.min(0).tolist(), arr.max(0).tolist()
        accessors.append(acc)
        return len(accessors) - 1

    pos = blender_to_gltf(mesh.vertices).astype(np.float32)
    nrm = blender_to_gltf(mesh.vertex_normals()).astype(np.float32)
    attributes = {"POSITION": add_accessor(pos, "VEC3", 5126, 34962, minmax=True),
                  "NORMAL": add_accessor(nrm, "VEC3", 5126, 34962)}
    if mesh.uvs is not None:
        attributes["TEXCOORD_0"] = add_accessor(np.asarray(mesh.uvs, np.float32), "VEC2", 5126, 34962)
    indices = add_accessor(np.asarray(mesh.faces, np.uint32).reshape(-1), "SCALAR", 5125, 34963)
    material: dict[str, Any] = {"name": f"{name}_material", "doubleSided": False,
                                "pbrMetallicRoughness": {"metallicFactor": 0.0, "roughnessFactor": 1.0}}
    doc: dict[str, Any] = {}
    if mesh.texture is not None and mesh.uvs is not None:
        image_view = add_view(png_bytes(mesh.texture))
        material["pbrMetallicRoughness"]["baseColorTexture"] = {"index": 0, "texCoord": 0}
        doc.update(images=[{"bufferView": image_view, "mimeType": "image/png", "name": f"{name}_albedo"}],
                   samplers=[{"magFilter": 9729, "minFilter": 9987, "wrapS": 33071, "wrapT": 33071}],
                   textures=[{"sampler": 0, "source": 0}])
    binary = b"".join(blobs)
    doc.update({
        "asset": {"version": "2.0", "generator": "VSDream", "extras": _json_safe(extras or {})},
        "scene": 0, "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0, "name": name}],
        "meshes": [{"name": name, "primitives": [{"attributes": attributes, "indices": indices,
                                                   "material": 0, "mode": 4}]}],
        "materials": [material],
        "buffers": [{"byteLength": len(binary)}], "bufferViews": views, "accessors": accessors,
    })
    js = json.dumps(doc, separators=(",", ":")).encode("utf-8")
    js += b" " * (-len(js) % 4)
    total = 12 + 8 + len(js) + 8 + len(binary)
    return (struct.pack("<4sII", b"glTF", 2, total) + struct.pack("<I4s", len(js), b"JSON") + js
            + struct.pack("<I4s", len(binary), b"BIN\0") + binary)


def write_glb(path: str | Path, mesh: TexturedMesh, extras: dict[str, Any] | None = None,
              name: str = "vsdream") -> Path:
    path = Path(path)
    atomic_write_bytes(path, glb_bytes(mesh, extras, name))
    return path


def write_obj(path: str | Path, mesh: TexturedMesh, name: str = "vsdream") -> list[Path]:
    """`path`.obj plus `path`.mtl and `path`_albedo.png next to it (OBJ's v is up: flipped here)."""
    _check(mesh)
    path = Path(path).with_suffix(".obj")
    mtl, png = path.with_suffix(".mtl"), path.with_name(path.stem + "_albedo.png")
    pos = blender_to_gltf(mesh.vertices)
    lines = ["# VSDream: Y up, front -Z (Blender's OBJ importer defaults)", f"mtllib {mtl.name}", f"o {name}"]
    lines += [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in pos]
    has_uv = mesh.uvs is not None
    if has_uv:
        lines += [f"vt {u:.6f} {1.0 - v:.6f}" for u, v in mesh.uvs]
    lines.append(f"usemtl {name}_material")
    f1 = np.asarray(mesh.faces) + 1
    lines += [f"f {a}/{a} {b}/{b} {c}/{c}" if has_uv else f"f {a} {b} {c}" for a, b, c in f1]
    material = [f"newmtl {name}_material", "Ka 0 0 0", "Kd 1 1 1", "Ks 0 0 0", "d 1", "illum 1"]
    written = []
    try:
        if mesh.texture is not None:
            atomic_write_bytes(png, png_bytes(mesh.texture))
            written.append(png)
            material.append(f"map_Kd {png.name}")
        atomic_write_bytes(mtl, ("\n".join(material) + "\n").encode())
        written.append(mtl)
        atomic_write_bytes(path, ("\n".join(lines) + "\n").encode())
        written.append(path)
    except BaseException:
        for p in written:
            p.unlink(missing_ok=True)
        raise
    return written
