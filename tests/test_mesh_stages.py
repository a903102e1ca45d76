"""The mesh half of a job on the analytic prior: geometry → texture → export, resume, re-export,
and re-texturing a mesh with known colours."""
import json
import struct
from pathlib import Path

import numpy as np
import torch
import trimesh

from engine.cameras import CameraSampler
from engine.context import JobContext
from engine.events import Artifact, StageStarted
from engine.export_cli import main as export_main
from engine.mesh.bake import bake_texture
from engine.mesh.cleanup import clean_mesh
from engine.mesh.dmtet import DMTet
from engine.mesh.gltf_export import write_glb
from engine.mesh.tetgrid import TetGrid
from engine.mesh.types import TexturedMesh
from engine.mesh.uv import unwrap
from engine.pipeline import run_stages
from engine.presets import make_spec
from engine.preview import psnr
from engine.priors.analytic import AnalyticPrior
from engine.priors.scenes import builtin_scene
from engine.priors.sdf import scene_color, scene_sdf
from engine.run_dir import RunDir
from engine.stages.nerf import NerfStage


def _ctx(tmp_path: Path, overrides: dict) -> tuple[JobContext, list]:
    spec = make_spec("cpu-smoke", overrides)
    run = RunDir(tmp_path / "run").create()
    run.write_spec(spec)
    events: list = []
    return JobContext(spec, run, events.append), events


def test_text_mode_mesh_stages_per_particle_resume_and_reexport(tmp_path):
    ctx, events = _ctx(tmp_path, {
        "particles": 2,
        "nerf": {"steps": 0, "enabled": False},  # the blob-initialised fields stand in for a trained stage 1
        "geometry": {"steps": 3, "grid_resolution": 32, "resolution_schedule": [[0, 32]], "checkpoint_every": 2},
        "texture": {"steps": 3, "resolution_schedule": [[0, 32]]},
        "camera": {"eval_views": 2},
        "export": {"texture_size": 256, "formats": ["glb", "obj"]}})
    nerf = NerfStage(ctx)
    out = run_stages(ctx, {"nerf": nerf})
    glbs = [ctx.run.result / f"mesh_{i}.glb" for i in range(2)]  # each particle its own mesh
    assert all(p.exists() for p in glbs) and (ctx.run.result / "mesh_1.obj").exists()
    assert {"geometry-00000003.pt", "texture-00000003.pt"} <= {p.name for p in ctx.run.ckpt.iterdir()}
    parts = out["export"]["particles"]
    assert [p["particle"] for p in parts] == [0, 1] and all(p["uv_method"] == "xatlas" for p in parts)
    assert [p["faces"] for p in parts] == [p["faces"] for p in out["texture"]["particles"]]
    roles = [e.role for e in events if isinstance(e, Artifact)]
    assert roles.count("mesh") == 2 and "mesh_obj" in roles and "contact_sheet" in roles
    data = glbs[1].read_bytes()
    extras = json.loads(data[20:20 + struct.unpack_from("<I", data, 12)[0]])["asset"]["extras"]
    assert extras["particle"] == 1 and extras["seed"] == 0 and extras["spec"]["preset"] == "cpu-smoke"

    # running again resumes both stages at their last step and re-exports
    events.clear()
    run_stages(ctx, {"nerf": NerfStage(ctx)})
    starts = [e for e in events if isinstance(e, StageStarted)]
    assert [(s.stage, s.resumed_from) for s in starts] == [("geometry", 3), ("texture", 3), ("export", 0)]

    # `vsdream export RUN_DIR` rewrites the meshes from the texture checkpoint
    for p in glbs:
        p.unlink()
    assert export_main([str(ctx.run.root), "--formats", "glb"]) == 0
    mesh = next(iter(trimesh.load(glbs[0], process=False).geometry.values()))
    assert len(mesh.faces) == parts[0]["faces"] and glbs[1].exists()


def _reference_glbs(folder: Path) -> tuple[Path, Path]:
    """The marker toy, already centred in the unit sphere (so re-texture's normalisation is the
    identity and the analytic prior's mesh scene lines up): with its colours, and plain grey."""
    scene = builtin_scene("marker")
    v, f = DMTet.from_sdf_fn(lambda p: scene_sdf(scene, p), TetGrid.cube(32, 0.8)).extract()
    v, f = clean_mesh(v.detach().numpy(), f.numpy(), 1500)
    centre = 0.5 * (v.min(0) + v.max(0))
    radius = np.linalg.norm(v - centre, axis=1).max()
    layout = unwrap(v, f, 60, 256)
    texture = bake_texture(v, layout, lambda p: scene_color(scene, p), 256)
    vn = ((v - centre) / radius)[layout.vmapping]
    ref, grey = folder / "reference.glb", folder / "grey.glb"
    write_glb(ref, TexturedMesh(vn, layout.faces, layout.uvs, texture))
    write_glb(grey, TexturedMesh(vn, layout.faces, layout.uvs, np.full_like(texture, 0.5)))
    return ref, grey


def test_retexture_recovers_known_colours_in_the_users_uv_layout(tmp_path):
    ref, grey = _reference_glbs(tmp_path)
    ctx, events = _ctx(tmp_path, {
        "mode": "retexture", "input_mesh": str(grey), "prior": f"analytic:mesh={ref}",
        "texture": {"steps": 80, "method": "vsd", "guidance_scale": 1.0, "resolution_schedule": [[0, 32]],
                    "anneal_step": 40, "t_max_annealed": 0.1},
        "camera": {"eval_views": 4}, "export": {"texture_size": 256}})
    out = run_stages(ctx)
    assert out["input"]["had_uvs"]
    assert out["texture"]["psnr"] > 24.0, out["texture"]  # measured 26.6 dB (the grey start: 14.4 dB)
    result = ctx.run.result / "mesh.glb"
    src = next(iter(trimesh.load(grey, process=False).geometry.values()))
    new = next(iter(trimesh.load(result, process=False).geometry.values()))
    assert len(new.vertices) == len(src.vertices) and len(new.faces) == len(src.faces)
    np.testing.assert_allclose(new.vertices, src.vertices, atol=1e-5)  # original coordinates, same order
    np.testing.assert_allclose(new.visual.uv, src.visual.uv, atol=1e-6)  # same UV layout
    tex = np.asarray(new.visual.material.baseColorTexture.convert("RGB"), np.float32) / 255
    assert np.abs(tex - 0.5).mean() > 0.05  # the grey texture was replaced
    assert (ctx.run.result / "mesh_albedo.png").exists()
    # the exported file itself, rendered as a scene, looks like the reference from held-out views
    cams = CameraSampler(ctx.spec.camera).held_out_orbit(48, 4)
    white = torch.ones(4, 48, 48, 3)
    got = AnalyticPrior.from_name(f"mesh={result}").reference_render(cams, white)
    want = AnalyticPrior.from_name(f"mesh={ref}").reference_render(cams, white)
    assert psnr(got, want) > 24.0  # measured 27.6 dB
