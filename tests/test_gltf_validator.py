"""Every GLB the engine writes passes the Khronos glTF validator (npm `gltf-validator`, issue 25).

The validator is installed by `make setup` into tools/gltf_validator/node_modules (npm ci from the
lock file there) and run with node. The engine writes GLB in one place (gltf_export.glb_bytes),
reached by the export stage's two paths: text mode (xatlas unwrap, texture baked) and re-texture
(the user's UVs and original coordinates); both run here for real, plus a mesh without UVs.
The hand-written test files of tests/test_gltf_read.py are validated too, so the reader is tested on
files the validator calls valid.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from gltf_writer import Gltf, box

from engine.mesh.gltf_export import write_glb
from engine.mesh.mesh_io import load_mesh
from engine.mesh.types import TexturedMesh
from engine.stages.export import export_mesh

ROOT = Path(__file__).resolve().parent.parent
TOOL = ROOT / "tools" / "gltf_validator"
NODE = shutil.which("node")


def validate(*files: Path) -> dict[str, dict]:
    if NODE is None:
        pytest.skip("node is not installed (the Khronos validator runs on node; make setup installs it)")
    if not (TOOL / "node_modules" / "gltf-validator").is_dir():
        pytest.fail("the glTF validator is not installed: run `make setup` (npm ci in tools/gltf_validator)")
    out = subprocess.run([NODE, str(TOOL / "validate.js"), *map(str, files)], capture_output=True, text=True,
                         timeout=120, check=True)
    return json.loads(out.stdout)


def _colour(x: torch.Tensor) -> torch.Tensor:
    return (x * 0.5 + 0.5).clamp(0, 1)


def _sphere(subdivisions: int = 2) -> tuple[np.ndarray, np.ndarray]:
    import trimesh
    s = trimesh.creation.icosphere(subdivisions)
    return np.asarray(s.vertices, np.float32) * 0.5, np.asarray(s.faces, np.int64)


def test_every_glb_the_engine_writes_is_valid(tmp_path):
    v, f = _sphere(1)
    extras = {"prompt": "a ceramic owl", "seed": 3, "spec": {"nerf": {"steps": 1}}}
    text = export_mesh(v, f, _colour, tmp_path / "text", texture_size=64, formats=["glb"], unwrap_timeout_s=30,
                       extras=extras)
    src = tmp_path / "user.glb"  # the artist's mesh, with UVs, off-centre
    uv = (v[:, :2] - v[:, :2].min(0)) / np.ptp(v[:, :2], axis=0)
    write_glb(src, TexturedMesh(v * 3 + [1, 2, 3], f, uv.astype(np.float32), None))
    loaded = load_mesh(src)
    retex = export_mesh(loaded.mesh.vertices, loaded.mesh.faces, _colour, tmp_path / "retex", texture_size=64,
                        formats=["glb"], unwrap_timeout_s=30, extras=extras, loaded=loaded)
    bare = write_glb(tmp_path / "bare.glb", TexturedMesh(v, f, None, None))
    files = [Path(text["files"]["glb"]), Path(retex["files"]["glb"]), bare, src]
    assert retex["uv_method"] == "input" and text["uv_method"] != "input"
    report = validate(*files)
    for path in files:
        got = report[str(path)]
        assert got["numErrors"] == 0 and got["numWarnings"] == 0, (path.name, got["messages"][:5])


def test_the_validator_is_live_it_reports_a_broken_glb(tmp_path):
    """A GLB whose index points past its vertices: the validator must say so, or the test above proves nothing."""
    v, f = box()
    idx = f.reshape(-1).astype(np.uint16)
    idx[-1] = 99
    g = Gltf()
    g.node(mesh=g.mesh({"attributes": {"POSITION": g.accessor(v)}, "indices": g.accessor(idx, np.uint16)}))
    g.doc["accessors"][0].update(min=v.min(0).tolist(), max=v.max(0).tolist())
    bad = tmp_path / "bad.glb"
    bad.write_bytes(g.glb())
    got = validate(bad)[str(bad)]
    assert got["numErrors"] > 0, got


def test_the_readers_hand_written_test_files_are_valid_gltf(tmp_path):
    """The feature files test_gltf_read.py reads are ones the Khronos validator accepts."""
    v, f = box(2.0)
    q = np.round(v / 2 * 32767).astype(np.int16)
    files = []

    def save(name: str, g: Gltf) -> None:
        files.append(tmp_path / name)
        files[-1].write_bytes(g.glb())

    def prim(g: Gltf, pos: int, **extra) -> dict:
        return {"attributes": {"POSITION": pos, **extra},
                "indices": g.accessor(f.reshape(-1).astype(np.uint16), np.uint16)}

    g = Gltf()
    pos = g.accessor(q, np.int16, normalized=True, stride=8)
    g.doc["accessors"][pos].update(min=q.min(0).tolist(), max=q.max(0).tolist())
    uv = g.accessor(np.round((v[:, :2] + 1) / 2 * 255).astype(np.uint8), np.uint8, normalized=True, stride=4)
    g.node(mesh=g.mesh(prim(g, pos, TEXCOORD_0=uv)), scale=[2, 2, 2])
    g.doc["extensionsUsed"] = g.doc["extensionsRequired"] = ["KHR_mesh_quantization"]
    save("quantized.glb", g)

    g = Gltf()
    pos = g.accessor(np.zeros_like(v), no_view=True, sparse=(np.arange(8), v))
    g.doc["accessors"][pos].update(min=v.min(0).tolist(), max=v.max(0).tolist())
    child = g.node(root=False, mesh=g.mesh(prim(g, pos)), rotation=[0, 0, 0.7071068, 0.7071068])
    g.node(children=[child], translation=[1, 2, 3])
    save("sparse_hierarchy.glb", g)

    report = validate(*files)
    from engine.mesh.gltf_read import read_gltf
    for path in files:
        got = report[str(path)]
        assert got["numErrors"] == 0, (path.name, got["messages"][:5])
        assert read_gltf(path).faces.shape == (12, 3)
