"""Loading user meshes for re-texture: normalisation, axes, UVs, and clear errors for bad input."""
import numpy as np
import pytest
import trimesh

from engine.errors import MeshInputError
from engine.mesh.gltf_export import write_glb
from engine.mesh.mesh_io import load_mesh
from engine.mesh.types import TexturedMesh
from engine.retexture_cli import main as retexture_main


def _box(offset=(0.0, 0.0, 0.0), scale=1.0) -> TexturedMesh:
    box = trimesh.creation.box(extents=(2.0, 1.0, 0.5))
    v = np.asarray(box.vertices, np.float32) * scale + np.asarray(offset, np.float32)
    uv = (v[:, :2] - v[:, :2].min(0)) / np.ptp(v[:, :2], axis=0)
    return TexturedMesh(v, np.asarray(box.faces), uv.astype(np.float32), np.full((8, 8, 3), 0.3, np.float32))


def test_glb_is_normalised_with_its_transform_uvs_and_order_kept(tmp_path):
    src = _box(offset=(3.0, -1.0, 2.0), scale=4.0)
    write_glb(tmp_path / "box.glb", src)
    loaded = load_mesh(tmp_path / "box.glb")
    v = loaded.mesh.vertices
    assert np.abs(0.5 * (v.min(0) + v.max(0))).max() < 1e-5
    assert np.linalg.norm(v, axis=1).max() == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(loaded.to_original(v), src.vertices, atol=1e-4)  # Blender frame, same order
    np.testing.assert_array_equal(loaded.mesh.faces, src.faces)
    np.testing.assert_allclose(loaded.mesh.uvs, src.uvs, atol=1e-6)
    assert loaded.had_uvs


def test_ply_is_read_z_up(tmp_path):
    src = _box(offset=(0.0, 0.0, 5.0))
    trimesh.Trimesh(src.vertices, src.faces, process=False).export(tmp_path / "box.ply")
    loaded = load_mesh(tmp_path / "box.ply")
    np.testing.assert_allclose(loaded.center, [0.0, 0.0, 5.0], atol=1e-5)  # no axis swap for PLY
    assert not loaded.had_uvs


@pytest.mark.parametrize("name,content,message", [
    ("empty.obj", "", "no triangle mesh|empty"),
    ("points.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\n", "no faces|no triangle mesh"),
    ("garbage.glb", "not a gltf at all", "could not be read"),
    ("mesh.stl", "solid x\nendsolid x\n", "unsupported format"),
])
def test_bad_meshes_give_a_clear_error(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(MeshInputError, match=message) as info:
        load_mesh(path)
    assert name in str(info.value) and info.value.code == "invalid_mesh"


def test_face_limit_refuses_or_decimates(tmp_path):
    sphere = trimesh.creation.icosphere(3)  # 1280 faces
    sphere.export(tmp_path / "sphere.ply")
    with pytest.raises(MeshInputError, match="over the limit of 500") as info:
        load_mesh(tmp_path / "sphere.ply", face_limit=500)
    assert "decimate" in info.value.hint
    loaded = load_mesh(tmp_path / "sphere.ply", face_limit=500, decimate=True)
    assert 0 < loaded.mesh.num_faces <= 500 and loaded.decimated


def test_missing_file(tmp_path):
    with pytest.raises(MeshInputError, match="not found"):
        load_mesh(tmp_path / "nope.glb")


def test_retexture_cli_rejects_bad_mesh_and_writes_nothing(tmp_path, capsys):
    bad = tmp_path / "points.obj"
    bad.write_text("v 0 0 0\nv 1 0 0\n")
    out = tmp_path / "run"
    code = retexture_main([str(bad), "--prompt", "a red box", "--out", str(out)])
    assert code == 2
    err = capsys.readouterr().err
    assert "invalid_mesh" in err and "points.obj" in err and "hint:" in err
    assert not out.exists()
