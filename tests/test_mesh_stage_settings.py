"""The mesh stages train what the references train, with their optimiser settings."""
import torch

from engine.context import JobContext
from engine.field import Background
from engine.presets import make_spec
from engine.representation import new_color_field
from engine.run_dir import RunDir


def _ctx(tmp_path, **over):
    spec = make_spec("cpu-smoke", {"geometry": {"grid_resolution": 32, "resolution_schedule": [[0, 32]]},
                                   "texture": {"resolution_schedule": [[0, 32]]}, **over})
    return JobContext(spec, RunDir(tmp_path / "run").create(), lambda e: None, device=torch.device("cpu"))


def _ball(x: torch.Tensor) -> torch.Tensor:
    return 60.0 * (0.5 - x.norm(dim=-1)).clamp_min(0) / 0.5


def test_stage_3_keeps_training_the_background_it_inherits(tmp_path):
    """threestudio's texture stage trains the background network (lr 1e-3) with the colour field; the
    stage-1 particle's own network is left as it finished (the stage trains a copy)."""
    from engine.stages.texture import TextureStage
    ctx = _ctx(tmp_path, field={"background": "network"})
    bg = Background(gen=torch.Generator().manual_seed(0))
    before = [p.detach().clone() for p in bg.parameters()]
    from engine.mesh.extract import dmtet_from_density
    v, f = dmtet_from_density(_ball, 32, 25.0, 1.0).extract()
    field = new_color_field(ctx.spec, torch.Generator().manual_seed(1), ctx.device)
    stage = TextureStage(ctx, [(v.detach(), f)], [field], [bg])
    stage.step(0)
    trained = stage.backgrounds[0]
    assert any(not torch.equal(a, b) for a, b in zip(before, trained.parameters(), strict=True))
    assert all(torch.equal(a, b) for a, b in zip(before, bg.parameters(), strict=True))
    assert any(g.get("name") == "background" and g["lr"] == ctx.spec.texture.lr_background for g in stage.opt.param_groups)


def test_the_geometry_stage_uses_threestudios_adam(tmp_path):
    from engine.stages.geometry import GeometryStage
    stage = GeometryStage(_ctx(tmp_path), [_ball])
    for g in stage.opt.param_groups:
        assert g["betas"] == (0.9, 0.99) and g["eps"] == 1e-15
