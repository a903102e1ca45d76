"""A re-texture result onto the artist's object without importing the whole mesh on the main thread.

The engine bakes the texture into the object's own UVs and embeds it in the result GLB as the base
colour PNG. `extract_base_color()` (worker thread) copies that PNG out of the GLB; `apply_texture()`
(main thread, a few ms) loads it as an image and builds the material around it.
"""
import json
import struct
from pathlib import Path

import bpy

MIME_SUFFIX = {"image/png": ".png", "image/jpeg": ".jpg"}


class ResultTextureError(RuntimeError):
    """The result file holds no base-colour image; the message names the file."""


def _chunks(data: bytes) -> tuple:
    magic, _version, length = struct.unpack_from("<III", data, 0)
    if magic != 0x46546C67 or length > len(data):
        raise ValueError("not a GLB file")
    offset, doc, body = 12, None, b""
    while offset + 8 <= length:
        size, kind = struct.unpack_from("<II", data, offset)
        chunk = data[offset + 8:offset + 8 + size]
        if kind == 0x4E4F534A:
            doc = json.loads(chunk.decode("utf-8"))
        elif kind == 0x004E4942:
            body = chunk
        offset += 8 + size + (-size % 4)
    if doc is None:
        raise ValueError("GLB without a JSON chunk")
    return doc, body


def extract_base_color(glb_path, out_dir) -> Path:
    """Write the first material's base-colour image next to `out_dir` and return its path (any thread)."""
    glb_path = Path(glb_path)
    try:
        doc, body = _chunks(glb_path.read_bytes())
        mat = (doc.get("materials") or [{}])[0]
        tex_index = mat["pbrMetallicRoughness"]["baseColorTexture"]["index"]
        image = doc["images"][doc["textures"][tex_index]["source"]]
        view = doc["bufferViews"][image["bufferView"]]
    except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise ResultTextureError(f"the re-textured file {glb_path} has no base-colour texture "
                                 f"({type(exc).__name__}: {exc})") from None
    start = int(view.get("byteOffset", 0))
    out = Path(out_dir) / (glb_path.stem + "_basecolor" + MIME_SUFFIX.get(image.get("mimeType"), ".png"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(body[start:start + int(view["byteLength"])])
    return out


def texture_material(name: str, image_path, uv_map: str = "") -> object:
    """A material showing `image_path` (packed into the .blend) through UV map `uv_map` (main thread)."""
    img = bpy.data.images.load(str(image_path), check_existing=False)
    img.pack()  # the run folder may be deleted from the History: the .blend keeps the texture
    mat = bpy.data.materials.new(name)
    if mat.node_tree is None:  # Blender < 5 makes node-less materials
        mat.use_nodes = True
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    bsdf = next(n for n in nodes if n.type == "BSDF_PRINCIPLED")
    bsdf.inputs["Metallic"].default_value = 0.0
    bsdf.inputs["Roughness"].default_value = 1.0
    tex = nodes.new("ShaderNodeTexImage")
    tex.image, tex.location = img, (bsdf.location.x - 320, bsdf.location.y)
    links.new(tex.outputs["Color"], bsdf.inputs["Base Color"])
    if uv_map:
        uv = nodes.new("ShaderNodeUVMap")
        uv.uv_map, uv.location = uv_map, (tex.location.x - 220, tex.location.y)
        links.new(uv.outputs["UV"], tex.inputs["Vector"])
    return mat


def apply_texture(obj, image_path, uv_map: str = "") -> object:
    """Give every slot of `obj` a new material showing `image_path` through UV map `uv_map` (main thread).

    The object, its mesh data, parenting and modifiers stay; old materials get a fake user so they
    survive in the file (the artist can switch back)."""
    mat = texture_material(f"VSDream {obj.name}", image_path, uv_map)
    for old in obj.data.materials:
        if old is not None:
            old.use_fake_user = True
    if not obj.material_slots:
        obj.data.materials.append(mat)
    for slot in obj.material_slots:
        slot.material = mat
    return mat
