"""The distillation step: the stop-gradient loss carries exactly w(t)(ε_pre − ε_φ)/B to the render."""
import torch

from engine.cameras import CameraSampler
from engine.diffusion import NoiseSchedule, sample_t, t_max_at
from engine.distill import distillation_loss
from engine.distill.phi_training import phi_optimizer
from engine.distill.phi_unet import PixelEpsPhi
from engine.priors.base import Conditioning, Prior
from engine.spec import CameraSpec, StageSpec


class ConstantPrior(Prior):
    """A real Prior whose ε prediction is a fixed tensor (so the expected gradient is known)."""

    space = "pixel"

    def __init__(self, value: torch.Tensor):
        self.value, self.schedule = value, NoiseSchedule.scaled_linear()

    def encode(self, rgb):
        return rgb.permute(0, 3, 1, 2) * 2 - 1

    def predict_noise(self, x_t, t, cond, guidance_scale):
        return self.value.expand_as(x_t)

    def make_variational_score(self, stage, gen):
        return PixelEpsPhi(3, stage, self.schedule, gen, width=8)


def _cond(res=16):
    cams = CameraSampler(CameraSpec()).sample(1, res, torch.Generator().manual_seed(0))
    return Conditioning(cams, "a toy", ["a toy, front view"])


def test_sds_gradient_is_weighted_noise_residual():
    x0 = torch.randn(2, 3, 8, 8, requires_grad=True)
    prior = ConstantPrior(torch.full((1, 3, 8, 8), 0.25))
    stage = StageSpec(steps=10, method="sds", t_min=0.3, t_max=0.6)
    gen = torch.Generator().manual_seed(3)
    res = distillation_loss(prior, None, x0, _cond(), stage, 0, gen)
    res.loss.backward()
    # replay the same draws
    g2 = torch.Generator().manual_seed(3)
    t = sample_t(2, 0.3, t_max_at(0, 10, 0.6, 0.5, 5000, "two_stage"), 1000, g2)
    eps = torch.randn(x0.shape, generator=g2)
    w = prior.schedule.weight(t, x0)
    expected = w * (0.25 - eps) / 2
    assert torch.allclose(x0.grad, expected, atol=1e-6)


def test_vsd_uses_phi_and_single_pass_at_scale_one():
    torch.manual_seed(0)
    x0 = torch.rand(1, 16, 16, 3).permute(0, 3, 1, 2).contiguous().requires_grad_(True)
    prior = ConstantPrior(torch.zeros(1, 3, 16, 16))
    stage = StageSpec(steps=10, method="vsd", guidance_scale_phi=1.0)
    phi = prior.make_variational_score(stage, torch.Generator().manual_seed(1))
    calls = []
    phi.register_forward_pre_hook(lambda *a: calls.append(1))
    phi.net.register_forward_pre_hook(lambda m, args: calls.append(float(args[2].abs().sum())))
    distillation_loss(prior, phi, x0, _cond(), stage, 0, torch.Generator().manual_seed(2)).loss.backward()
    assert len(calls) == 1, "no unconditional ε_φ pass when guidance_scale_phi == 1"
    calls.clear()
    stage.guidance_scale_phi = 2.0
    distillation_loss(prior, phi, x0, _cond(), stage, 0, torch.Generator().manual_seed(2))
    assert len(calls) == 2 and 0.0 in calls, "camera CFG runs one pass with the camera zeroed"


def test_phi_camera_mlp_starts_at_zero_and_training_reduces_loss():
    stage = StageSpec(lr_phi=1e-3, phi_camera_dropout=0.0)
    gen = torch.Generator().manual_seed(0)
    phi = PixelEpsPhi(3, stage, NoiseSchedule.scaled_linear(), gen, width=8)
    x_t, t = torch.randn(1, 3, 16, 16), torch.tensor([500])
    c1, c2 = _cond(), _cond()
    c2.cameras.c2w = c2.cameras.c2w * 3.0
    assert torch.equal(phi.predict_noise(x_t, t, c1), phi.predict_noise(x_t, t, c2))
    x0 = torch.rand(1, 3, 16, 16) * 2 - 1
    opt = phi_optimizer(phi, 3e-3)
    first = None
    for i in range(30):
        loss = phi.training_loss(x0, c1, torch.Generator().manual_seed(i % 4))
        first = first if first is not None else loss.item()
        opt.zero_grad(); loss.backward(); opt.step()
    with torch.no_grad():
        final = sum(phi.training_loss(x0, c1, torch.Generator().manual_seed(i)).item() for i in range(4)) / 4
    assert final < first


def test_vsd_gradient_replays_exactly_with_a_fixed_phi():
    """grad on x0 = w(t)·(ε_pretrained − ε_φ(x_t))/B for the ε_φ the stage holds: replacing ε_φ's
    prediction by the sampled noise (VSD silently turning into SDS) breaks this equality."""
    x0 = (torch.rand(2, 3, 16, 16) * 2 - 1).requires_grad_(True)
    prior = ConstantPrior(torch.full((1, 3, 16, 16), 0.25))
    stage = StageSpec(steps=10, method="vsd", t_min=0.3, t_max=0.6, guidance_scale_phi=1.0)
    phi = prior.make_variational_score(stage, torch.Generator().manual_seed(7))
    with torch.no_grad():  # a non-trivial but fixed ε_φ: its output layer is not zero
        for p in phi.net.out.parameters():
            p.normal_(0.0, 0.3, generator=torch.Generator().manual_seed(8))
    cond = _cond()
    cond.cameras = CameraSampler(CameraSpec()).sample(2, 16, torch.Generator().manual_seed(0))
    res = distillation_loss(prior, phi, x0, cond, stage, 0, torch.Generator().manual_seed(3))
    res.loss.backward()
    replay = torch.Generator().manual_seed(3)
    t = sample_t(2, 0.3, t_max_at(0, 10, 0.6, 0.5, 5000, "two_stage"), 1000, replay)
    eps = torch.randn(x0.shape, generator=replay)
    x_t = prior.schedule.add_noise(x0.detach(), eps, t)
    with torch.no_grad():
        eps_phi = phi.predict_noise(x_t, t, cond)
    assert (eps_phi - eps).abs().mean() > 0.3, "the fixed ε_φ must differ from the sampled noise"
    expected = prior.schedule.weight(t, x0) * (0.25 - eps_phi) / 2
    torch.testing.assert_close(x0.grad, expected, atol=1e-6, rtol=1e-5)


def test_every_stage_builds_phi_with_the_one_builder():
    """Stage 1, the mesh stages and the benches get ε_φ and its optimiser from build_phi: AdamW at
    the stage's lr_phi with the documented weight decay; SDS builds none."""
    from engine.distill.phi_training import PHI_WEIGHT_DECAY, build_phi
    prior = ConstantPrior(torch.zeros(1, 3, 16, 16))
    stage = StageSpec(method="vsd", lr_phi=2e-4)
    trainer = build_phi(prior, stage, torch.Generator().manual_seed(0), torch.device("cpu"))
    group = trainer.opt.param_groups[0]
    assert isinstance(trainer.opt, torch.optim.AdamW)
    assert group["lr"] == 2e-4 and group["weight_decay"] == PHI_WEIGHT_DECAY == 0.01
    assert {id(p) for p in group["params"]} == {id(p) for p in trainer.phi.trainable_parameters()}
    assert build_phi(prior, StageSpec(method="sds"), torch.Generator(), torch.device("cpu")) is None


def test_sds_particles_collapse_and_vsd_particles_keep_the_true_spread():
    """The paper's central claim at reduced size: on an exact 4-mode mixture of 3×8×8 images,
    particles starting on the modes at half the true spread s are pulled onto the mode centres by
    SDS (ratio to the true spread → 0) and pushed out to the true spread by VSD (ratio ≈ 1).
    The bench (`vsdream bench quality`) runs the larger version from a uniform start."""
    from engine.bench.mixture2d import run_mixture2d
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: thread hand-offs would dominate
    try:
        # 192 dimensions: in a handful the modes blur together at large t and SDS settles between
        # them instead of on them (mixture2d's docstring); SGD, so SDS's noise fades with w(t)
        short = dict(steps=400, particles=32, shape=(3, 8, 8), optimizer="sgd", lr=0.7, init_spread=0.5,
                     phi_repeats=3, phi_warmup=300)
        vsd = run_mixture2d("vsd", **short)
        sds = run_mixture2d("sds", **short)
    finally:
        torch.set_num_threads(n)
    assert 0.7 <= vsd.spread_ratio <= 1.3, f"VSD spread ratio {vsd.spread_ratio:.3f} (true spread = 1)"
    assert sds.spread_ratio < 0.2, f"SDS spread ratio {sds.spread_ratio:.3f}: SDS should collapse onto the modes"
    assert min(vsd.mode_counts) > 0 and min(sds.mode_counts) > 0
