"""The re-texture glTF reader (issue 25, finding 11): what conformant exporters write is read, the rest is
refused with its reason. Every file is written by hand (tests/gltf_writer.py), one feature each."""
from __future__ import annotations

import json

import numpy as np
import pytest
from gltf_writer import Gltf, box

from engine.errors import MeshInputError
from engine.mesh.gltf_read import GltfError, parse_gltf, read_gltf
from engine.mesh.mesh_io import load_mesh

V, F = box(2.0)  # corners at ±1


def _one(attrs: dict, indices: int | None = None, mode: int | None = None, **node) -> Gltf:
    return _g_one(Gltf(), attrs, indices, mode, **node)


def _g_one(g: Gltf, attrs, indices=None, mode=None, **node) -> Gltf:
    prim = {"attributes": {k: (v(g) if callable(v) else v) for k, v in attrs.items()}}
    if indices is not None:
        prim["indices"] = indices(g) if callable(indices) else indices
    if mode is not None:
        prim["mode"] = mode
    g.node(mesh=g.mesh(prim), **node)
    return g


def _idx(g: Gltf) -> int:
    return g.accessor(F.reshape(-1).astype(np.uint16), np.uint16)


def test_a_plain_box_reads_with_its_trs_transform():
    g = _one({"POSITION": lambda g: g.accessor(V)}, _idx, translation=[10, 0, 0], scale=[2, 2, 2],
             rotation=[0, 0, np.sin(np.pi / 4), np.cos(np.pi / 4)])  # 90° about +Z
    m = parse_gltf(g.glb())
    want = np.stack([-V[:, 1], V[:, 0], V[:, 2]], 1) * 2 + [10, 0, 0]
    np.testing.assert_allclose(m.vertices, want, atol=1e-6)
    np.testing.assert_array_equal(m.faces, F)


@pytest.mark.parametrize("dtype,scale", [(np.int16, 32767), (np.uint16, 65535), (np.int8, 127), (np.uint8, 255)])
def test_quantized_normalized_positions_and_uvs(dtype, scale):
    """KHR_mesh_quantization: normalized integers dequantize to c / (2^b − 1) (signed: / (2^(b−1) − 1))."""
    signed = np.dtype(dtype).kind == "i"
    unit = (V + 1) / 2 if not signed else V  # in [0, 1] or [−1, 1]
    q = np.round(unit * scale).astype(dtype)
    uv = np.stack([unit[:, 0], unit[:, 1]], 1)
    quv = np.round(np.abs(uv) * (65535)).astype(np.uint16)
    g = _one({"POSITION": lambda g: g.accessor(q, dtype, normalized=True, stride=8),
              "TEXCOORD_0": lambda g: g.accessor(quv, np.uint16, normalized=True)}, _idx, scale=[3, 3, 3])
    g.doc["extensionsUsed"] = g.doc["extensionsRequired"] = ["KHR_mesh_quantization"]
    m = parse_gltf(g.glb())
    np.testing.assert_allclose(m.vertices, q.astype(np.float64) / scale * 3, atol=1e-12)
    np.testing.assert_allclose(m.uvs, quv / 65535, atol=1e-6)


def test_integer_positions_without_normalized_take_the_node_scale():
    q = (V * 1000).astype(np.int16)
    g = _one({"POSITION": lambda g: g.accessor(q, np.int16)}, _idx, scale=[0.001, 0.001, 0.001])
    np.testing.assert_allclose(parse_gltf(g.glb()).vertices, V, atol=1e-9)


def test_an_accessor_without_buffer_view_is_zeros_and_sparse_fills_it():
    g = Gltf()
    pos = g.accessor(np.zeros_like(V), no_view=True, sparse=(np.arange(1, 8), V[1:]))  # row 0 stays zero
    _g_one(g, {"POSITION": pos}, _idx)
    m = parse_gltf(g.glb())
    np.testing.assert_allclose(m.vertices[1:], V[1:])
    np.testing.assert_allclose(m.vertices[0], [0, 0, 0])


def test_sparse_substitution_over_real_data():
    g = Gltf()
    pos = g.accessor(V, sparse=([2, 5], [[9, 9, 9], [-9, -9, -9]]))
    _g_one(g, {"POSITION": pos}, _idx)
    m = parse_gltf(g.glb())
    want = V.astype(np.float64).copy()
    want[2], want[5] = 9, -9
    np.testing.assert_allclose(m.vertices, want)


def test_several_primitives_nodes_hierarchy_matrix_and_instancing():
    g = Gltf()
    pos = g.accessor(V)
    idx = _idx(g)
    mesh = g.mesh({"attributes": {"POSITION": pos}, "indices": idx},
                  {"attributes": {"POSITION": pos}, "indices": idx})  # two primitives
    child = g.node(root=False, mesh=mesh, translation=[0, 5, 0])
    g.node(children=[child], translation=[1, 0, 0])
    mat = np.eye(4)
    mat[:3, 3] = [0, 0, -7]
    g.node(mesh=mesh, matrix=mat.T.reshape(-1).tolist())  # column-major
    m = parse_gltf(g.glb())
    assert m.vertices.shape == (32, 3) and m.faces.shape == (48, 3)
    np.testing.assert_allclose(m.vertices[:8], V + [1, 5, 0])
    np.testing.assert_allclose(m.vertices[16:24], V + [0, 0, -7])
    assert m.faces.max() == 31 and m.faces[12:24].min() == 8  # each primitive's indices offset


def test_a_mirroring_transform_keeps_faces_outward():
    g = _one({"POSITION": lambda g: g.accessor(V)}, _idx, scale=[-1, 1, 1])
    m = parse_gltf(g.glb())
    tri = m.vertices[m.faces]
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    assert (np.einsum("ij,ij->i", normals, tri.mean(1)) > 0).all(), "winding flipped back to outward"


def test_external_bin_and_data_uri_give_the_same_mesh_as_glb(tmp_path):
    g = _one({"POSITION": lambda g: g.accessor(V)}, _idx)
    from_glb = parse_gltf(g.glb())
    from_uri = parse_gltf(g.gltf())
    (tmp_path / "m.gltf").write_bytes(g.gltf(tmp_path, "m%20data.bin".replace("%20", " ")))
    doc = json.loads((tmp_path / "m.gltf").read_text())
    doc["buffers"][0]["uri"] = "m%20data.bin"  # URIs are percent-encoded
    (tmp_path / "m.gltf").write_text(json.dumps(doc))
    from_file = read_gltf(tmp_path / "m.gltf")
    for m in (from_uri, from_file):
        np.testing.assert_array_equal(m.vertices, from_glb.vertices)
        np.testing.assert_array_equal(m.faces, from_glb.faces)


@pytest.mark.parametrize("uri", ["../secret.bin", "/etc/passwd", "sub/../../secret.bin"])
def test_an_external_buffer_outside_the_gltfs_folder_is_refused(tmp_path, uri):
    (tmp_path / "secret.bin").write_bytes(V.tobytes() + F.tobytes())
    (tmp_path / "in").mkdir()
    g = _one({"POSITION": lambda g: g.accessor(V)}, _idx)
    doc = json.loads(g.gltf())
    doc["buffers"][0]["uri"] = uri
    (tmp_path / "in" / "m.gltf").write_text(json.dumps(doc))
    with pytest.raises(GltfError, match="outside the glTF's folder"):
        read_gltf(tmp_path / "in" / "m.gltf")


def test_a_skinned_mesh_is_read_at_its_rest_pose():
    """Joint world × inverse bind = identity at bind pose; a joint whose node moved since binding moves
    the vertices it weighs; the skinned node's own transform is ignored (glTF spec)."""
    g = Gltf()
    pos = g.accessor(V)
    joints = g.accessor(np.tile([0, 1, 0, 0], (8, 1)).astype(np.uint8), np.uint8)
    weights = g.accessor(np.tile([0.75, 0.25, 0, 0], (8, 1)).astype(np.float32))
    bind = [np.eye(4), np.eye(4)]
    bind[1][:3, 3] = [0, 2, 0]  # joint 1 was bound at y = 2 …
    ibm = g.accessor(np.stack([np.linalg.inv(b).T.reshape(-1) for b in bind]).astype(np.float32))
    j0 = g.node(root=True)
    j1 = g.node(root=True, translation=[0, 2, 4])  # … and now sits 4 further along z
    g.doc["skins"] = [{"joints": [j0, j1], "inverseBindMatrices": ibm}]
    g.node(mesh=g.mesh({"attributes": {"POSITION": pos, "JOINTS_0": joints, "WEIGHTS_0": weights},
                        "indices": _idx(g)}), skin=0, translation=[100, 0, 0])
    m = parse_gltf(g.glb())
    np.testing.assert_allclose(m.vertices, V + [0, 0, 0.25 * 4], atol=1e-6)


def test_morph_targets_at_default_weights_node_weights_win():
    g = Gltf()
    pos, delta = g.accessor(V), g.accessor(np.tile([0, 0, 1], (8, 1)))
    mesh = g.mesh({"attributes": {"POSITION": pos}, "indices": _idx(g), "targets": [{"POSITION": delta}]},
                  weights=[0.5])
    g.node(mesh=mesh)
    g.node(mesh=mesh, weights=[2.0], translation=[10, 0, 0])
    m = parse_gltf(g.glb())
    np.testing.assert_allclose(m.vertices[:8], V + [0, 0, 0.5])
    np.testing.assert_allclose(m.vertices[8:], V + [10, 0, 2.0])


def test_strips_fans_and_unindexed_triangles():
    quad = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]], np.float32)
    strip = parse_gltf(_one({"POSITION": lambda g: g.accessor(quad)}, mode=5).glb())
    np.testing.assert_array_equal(strip.faces, [[0, 1, 2], [1, 3, 2]])  # the spec's order: both counter-clockwise
    fan = parse_gltf(_one({"POSITION": lambda g: g.accessor(quad[[0, 1, 3, 2]])}, mode=6).glb())
    np.testing.assert_array_equal(fan.faces, [[1, 2, 0], [2, 3, 0]])
    tris = parse_gltf(_one({"POSITION": lambda g: g.accessor(V[F.reshape(-1)])}).glb())
    assert tris.faces.shape == (12, 3) and tris.vertices.shape == (36, 3)
    for m in (strip, fan):
        tri = m.vertices[m.faces]
        assert (np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])[:, 2] > 0).all()


@pytest.mark.parametrize("change,says", [
    (lambda g: g.doc.update(extensionsUsed=["EXT_meshopt_compression"], extensionsRequired=["EXT_meshopt_compression"]),
     "requires EXT_meshopt_compression"),
    (lambda g: g.doc.update(extensionsRequired=["KHR_draco_mesh_compression"]), "requires KHR_draco_mesh_compression"),
    (lambda g: g.doc["meshes"][0]["primitives"][0].update(mode=1), "points or lines only"),
    (lambda g: g.doc["accessors"][1].update(count=99), "reads past the end"),
    (lambda g: g.doc["meshes"][0]["primitives"][0].update(indices=7), r"accessors\[7\], which does not exist"),
    (lambda g: g.doc["nodes"][0].update(children=[0]), "its own ancestor"),
])
def test_what_cannot_be_read_is_refused_with_its_reason(change, says):
    g = _one({"POSITION": lambda g: g.accessor(V)}, _idx)
    change(g)
    with pytest.raises(GltfError, match=says):
        parse_gltf(g.glb())


def test_an_index_past_the_vertices_is_refused():
    g = _one({"POSITION": lambda g: g.accessor(V)}, lambda g: g.accessor(np.array([0, 1, 8], np.uint32), np.uint32))
    with pytest.raises(GltfError, match="index 8 past its 8 vertices"):
        parse_gltf(g.glb())


def test_the_loader_takes_quantized_meshes_trimesh_refused(tmp_path):
    """Through load_mesh (the re-texture entry): a quantized, sparse, no-bufferView GLB loads; it used to be
    refused ('could not be read') because trimesh cannot read it."""
    q = np.round(V * 32767).astype(np.int16)
    g = Gltf()
    pos = g.accessor(np.zeros_like(q), np.int16, normalized=True, no_view=True, sparse=(np.arange(8), q))
    uv = g.accessor(np.round((V[:, :2] + 1) / 2 * 255).astype(np.uint8), np.uint8, normalized=True)
    _g_one(g, {"POSITION": pos, "TEXCOORD_0": uv}, _idx)
    g.doc["extensionsUsed"] = g.doc["extensionsRequired"] = ["KHR_mesh_quantization"]
    (tmp_path / "q.glb").write_bytes(g.glb())
    loaded = load_mesh(tmp_path / "q.glb")
    assert loaded.mesh.faces.shape == (12, 3) and loaded.had_uvs
    assert np.linalg.norm(loaded.mesh.vertices, axis=1).max() == pytest.approx(1.0, abs=1e-5)


def test_a_mesh_whose_faces_have_no_area_is_a_mesh_problem(tmp_path):
    """Was: 'engine_error: element 0 of tensors does not require grad' once the texture stage ran."""
    line = np.array([[0, 0, 0], [1, 0, 0], [2, 0, 0], [3, 0, 0]], np.float32)
    g = _one({"POSITION": lambda g: g.accessor(line)}, lambda g: g.accessor(np.array([0, 1, 2, 1, 2, 3], np.uint16),
                                                                             np.uint16))
    (tmp_path / "flat.glb").write_bytes(g.glb())
    with pytest.raises(MeshInputError, match="no triangle with an area") as info:
        load_mesh(tmp_path / "flat.glb")
    assert info.value.code == "invalid_mesh"


def test_whole_floats_as_indices_and_meshes_no_node_places():
    """JSON has one number type ("nodes": [0.0] is node 0, as the validator agrees); a file whose nodes
    place no mesh hands over its meshes as they are."""
    g = _one({"POSITION": lambda g: g.accessor(V)}, _idx)
    doc = g.doc
    doc["scenes"][0]["nodes"] = [0.0]
    doc["meshes"][0]["primitives"][0]["indices"] = float(doc["meshes"][0]["primitives"][0]["indices"])
    assert parse_gltf(g.glb()).faces.shape == (12, 3)
    del doc["nodes"][0]["mesh"]
    assert parse_gltf(g.glb()).vertices.shape == (8, 3)
