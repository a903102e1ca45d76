"""Export: GLB (and OBJ) of the marker scene, read back by trimesh and by Blender itself."""
import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import trimesh

from engine.mesh.dmtet import DMTet
from engine.mesh.gltf_export import write_glb
from engine.mesh.tetgrid import TetGrid
from engine.mesh.types import TexturedMesh
from engine.priors.scenes import builtin_scene
from engine.priors.sdf import scene_color, scene_sdf
from engine.stages.export import export_mesh

HERE = Path(__file__).parent


def glb_json(path: Path) -> dict:
    data = path.read_bytes()
    length, kind = struct.unpack_from("<I4s", data, 12)
    assert kind == b"JSON"
    return json.loads(data[20:20 + length])


@pytest.fixture(scope="module")
def marker_export(tmp_path_factory):
    """The marker scene meshed by DMTet at 48³ and baked from its analytic colours."""
    scene = builtin_scene("marker")
    net = DMTet.from_sdf_fn(lambda p: scene_sdf(scene, p), TetGrid.cube(48, 0.8))
    v, f = net.extract()
    out = tmp_path_factory.mktemp("export") / "marker"
    info = export_mesh(v.detach().numpy(), f.numpy(), lambda p: scene_color(scene, p), out, texture_size=256,
                       formats=["glb", "obj"], unwrap_timeout_s=60, extras={"prompt": "a toy", "seed": 7})
    return out, info


def test_glb_loads_in_trimesh_with_texture_uvs_and_extras(marker_export):
    out, info = marker_export
    glb = out.with_suffix(".glb")
    scene = trimesh.load(glb, process=False)
    assert len(scene.geometry) == 1
    mesh = next(iter(scene.geometry.values()))
    assert mesh.visual.uv is not None and mesh.visual.uv.shape == (len(mesh.vertices), 2)
    assert mesh.visual.material.baseColorTexture.size == (256, 256)
    doc = glb_json(glb)
    assert doc["asset"]["extras"]["prompt"] == "a toy" and doc["asset"]["extras"]["seed"] == 7
    assert len(doc["meshes"]) == 1 and len(doc["materials"]) == 1 and len(doc["images"]) == 1
    assert info["uv_method"] == "xatlas"
    # glTF is Y up: the marker toy is taller (Blender Z) than deep (Blender Y)
    ext = mesh.vertices.max(0) - mesh.vertices.min(0)
    assert ext[1] > ext[2]
    assert {p.suffix for p in map(Path, info["files"]["obj"])} == {".obj", ".mtl", ".png"}


def test_blender_import_puts_the_front_marker_on_minus_y(marker_export):
    out, _ = marker_export
    proc = subprocess.run([sys.executable, str(HERE / "bpy_check_marker.py"), "--",
                           str(out.with_suffix(".glb")), str(out.with_suffix(".obj"))],
                          capture_output=True, text=True, timeout=240)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert line, proc.stdout[-2000:] + proc.stderr[-2000:]
    result = json.loads(line[0][7:])
    for kind in ("glb", "obj"):
        info = result[kind]
        assert info["meshes"] == 1 and info["materials"] == 1 and info["images"] == 1 and info["uv_layers"] >= 1
        mx, my, mz = info["marker_center"]
        assert my < -0.15 and abs(mx) < 0.08, (kind, info)  # the disc sits at y = −0.21 on the front
        ax, ay, az = info["arm_center"]
        assert ax > 0.25 and abs(ay) < 0.08 and az > 0.0, (kind, info)  # the arm is on +X, going up


def test_failed_write_leaves_no_file(tmp_path):
    bad = TexturedMesh(np.array([[0, 0, 0], [1, 0, 0], [np.nan, 1, 0]], np.float32), np.array([[0, 1, 2]]))
    with pytest.raises(ValueError, match="NaN"):
        write_glb(tmp_path / "bad.glb", bad)
    assert list(tmp_path.iterdir()) == []


def test_unwrap_timeout_falls_back_to_a_grid_atlas(tmp_path):
    from engine.mesh.uv import unwrap
    ico = trimesh.creation.icosphere(3)
    layout = unwrap(ico.vertices, ico.faces, timeout_s=0.01, resolution=256)
    assert layout.method == "grid" and layout.faces.shape == ico.faces.shape
    tri = layout.uvs[layout.faces]  # no two triangles overlap in UV space: distinct cells
    assert (tri >= 0).all() and (tri <= 1).all()
    area = 0.5 * np.abs(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]))
    assert area.sum() < 1.0 and (area > 0).all()
    centres = np.floor(tri.mean(1) * 1e4)
    assert len(np.unique(centres, axis=0)) == len(tri)
