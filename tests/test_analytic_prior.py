"""The analytic prior: exact ε* against autograd, guidance, parsing, reference renders and mesh scenes."""
import math

import numpy as np
import pytest
import torch
import trimesh
from PIL import Image
from scene_helpers import one_thread, orbit_cams  # noqa: F401  (autouse fixture)

from engine.errors import MeshInputError
from engine.priors.analytic import AnalyticPrior
from engine.priors.base import Conditioning, VariationalScore
from engine.priors.mesh_scene import MeshScene
from engine.priors.scenes import BUILTIN_SCENES, MARKER_COLOR, builtin_scene, sample_surface
from engine.priors.sdf import scene_sdf
from engine.spec import SpecError, StageSpec

VARIANTS = "marker-red,marker-green,marker-blue"


cams = orbit_cams


def mixture_log_density(x, means, log_pi, alpha, sigma, s):
    """log Σ_k π_k N(x; α m_k, v I) per batch element, written out independently of the prior."""
    v = alpha ** 2 * s ** 2 + sigma ** 2  # (B, 1, 1, 1)
    d = x[0].numel()
    sq = ((x[None] - alpha[None] * means) ** 2).flatten(2).sum(-1)  # (K, B)
    v_b = v.reshape(-1)
    return torch.logsumexp(log_pi[:, None] - sq / (2 * v_b) - 0.5 * d * torch.log(2 * math.pi * v_b), dim=0)


@pytest.mark.parametrize("name", ["marker", VARIANTS])
def test_eps_equals_minus_sigma_grad_log_density(name):
    prior = AnalyticPrior.from_name(name)
    c = cams([0, 100, 200, 300], res=8)
    gen = torch.Generator().manual_seed(0)
    bg = torch.rand(4, 8, 8, 3, generator=gen)
    cond = Conditioning(c, "", [""] * 4, background=bg)
    means = torch.stack([prior.encode(prior.reference_render(c, bg, k)) for k in range(len(prior.scenes))]).double()
    log_pi = torch.full((len(prior.scenes),), -math.log(len(prior.scenes)), dtype=torch.float64)
    spread = []
    for t_val in (20, 300, 700, 980):
        t = torch.full((4,), t_val)
        alpha, sigma = prior.schedule.alpha_sigma(t, means[0])
        # between the modes, so K=3 responsibilities are genuinely mixed
        x0 = 0.5 * means[0] + 0.5 * means[-1] + 0.1 * torch.randn(means[0].shape, generator=gen, dtype=torch.float64)
        x_t = (alpha * x0 + sigma * torch.randn(x0.shape, generator=gen, dtype=torch.float64)).requires_grad_(True)
        logp = mixture_log_density(x_t, means, log_pi, alpha, sigma, prior.noise_std)
        (grad,) = torch.autograd.grad(logp.sum(), x_t)
        expected = -sigma * grad
        got = prior.predict_noise(x_t.detach(), t, cond, guidance_scale=1.0)
        assert got.dtype == torch.float64 and got.shape == x_t.shape
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-8)
        spread.append(expected.abs().mean())
    assert len(set(float(s) for s in spread)) == 4  # different t really give different answers


def test_guidance_one_is_conditional_and_other_scales_mix_unconditional():
    c = cams([0, 180], res=8)
    cond = Conditioning(c, "", ["", ""], background=None)
    prior = AnalyticPrior.from_name("marker")
    gen = torch.Generator().manual_seed(1)
    x_t = torch.randn(2, 3, 8, 8, generator=gen)
    t = torch.tensor([500, 900])
    eps_1 = prior.predict_noise(x_t, t, cond, 1.0)
    assert set(prior._memo[1]) == {"marker"}  # no unconditional renders when g == 1
    uncond = AnalyticPrior([builtin_scene(n) for n in BUILTIN_SCENES])
    eps_u = uncond.predict_noise(x_t, t, cond, 1.0)
    assert not torch.allclose(eps_u, eps_1)
    eps_g = prior.predict_noise(x_t, t, cond, 7.5)
    torch.testing.assert_close(eps_g, eps_u + 7.5 * (eps_1 - eps_u), rtol=1e-4, atol=1e-4)
    assert set(prior._memo[1]) == set(BUILTIN_SCENES)  # each scene rendered once for both mixtures


def test_clean_reference_is_denoised_and_encode_keeps_gradient():
    prior = AnalyticPrior.from_name("marker")
    c = cams([0, 120, 240], res=16)
    bg = torch.rand(3, 16, 16, 3, generator=torch.Generator().manual_seed(2))
    rgb = prior.reference_render(c, bg).clone().requires_grad_(True)
    x0 = prior.encode(rgb)
    assert x0.shape == (3, 3, 16, 16) and x0.requires_grad
    x0.sum().backward()
    assert torch.allclose(rgb.grad, torch.full_like(rgb, 2.0))
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(3))
    t = torch.tensor([50, 400, 800])
    x_t = prior.schedule.add_noise(x0.detach(), eps, t)
    pred = prior.predict_noise(x_t, t, Conditioning(c, "", [""] * 3, background=bg), 1.0)
    x0_hat = prior.schedule.x0_from_eps(x_t, pred, t)
    # the posterior mean of x₀ given x_t sits within the pixel noise s of the reference
    assert (x0_hat - x0.detach()).abs().mean() < 0.05
    # composited over the backdrop: pixels the object does not cover show it exactly
    r = prior.scenes[0].render(c)
    empty = (r.alpha == 0).expand(-1, -1, -1, 3)
    assert empty.any() and torch.allclose(rgb.detach()[empty], bg[empty])


def test_from_name_parses_scenes_noise_and_rejects_bad_names(tmp_path):
    p = AnalyticPrior.from_name(VARIANTS + ",s=0.05")
    assert p.names == VARIANTS.split(",") and p.noise_std == 0.05
    assert torch.allclose(p.log_weights.exp(), torch.full((3,), 1 / 3, dtype=torch.float64))
    for bad in ("teapot", "marker,s=abc", "", "mesh="):
        with pytest.raises(SpecError) as err:
            AnalyticPrior.from_name(bad)
        assert err.value.problems[0].field == "prior"
    with pytest.raises(MeshInputError):
        AnalyticPrior.from_name(f"mesh={tmp_path / 'missing.glb'}")


def test_scene_variants_share_geometry_and_differ_in_colour():
    c = cams([30], res=16)
    renders = [builtin_scene(n).render(c) for n in VARIANTS.split(",")]
    assert all(torch.equal(r.alpha, renders[0].alpha) for r in renders)
    body = renders[0].alpha[0, 8, 8, 0] > 0
    assert body and not torch.allclose(renders[0].rgb, renders[1].rgb)


@pytest.mark.parametrize("name", ["marker", "snowman", "table"])
def test_scenes_fit_radius_and_surface_samples_lie_on_the_surface(name):
    scene = builtin_scene(name)
    pts = sample_surface(scene, 2000, torch.Generator().manual_seed(0))
    assert pts.shape == (2000, 3)
    assert scene_sdf(scene, pts).abs().max() < 1e-3
    assert pts.norm(dim=-1).max() < 0.8
    # samples reach every side of the object, not one blob
    for axis in (0, 1):
        assert (pts[:, axis] < -0.15).sum() > 50 and (pts[:, axis] > 0.15).sum() > 50


def test_normal_map_variant_shows_the_front_normal():
    prior = AnalyticPrior.from_name("marker").for_normal_maps()
    img = prior.reference_render(cams([0], el_deg=0.0, res=32))
    # the front disc faces −Y: (n + 1)/2 = (0.5, 0, 0.5)
    assert torch.allclose(img[0, 17, 16], torch.tensor([0.5, 0.0, 0.5]), atol=0.02)


def _box_with_face_colours():
    box = trimesh.creation.box(extents=(0.8, 0.8, 0.8))
    colours = {(0, -1, 0): (255, 0, 0), (0, 1, 0): (0, 0, 255), (1, 0, 0): (0, 255, 0),
               (-1, 0, 0): (255, 255, 0), (0, 0, 1): (255, 0, 255), (0, 0, -1): (0, 255, 255)}
    fc = np.array([(*colours[tuple(n)], 255) for n in np.round(box.face_normals).astype(int)], dtype=np.uint8)
    box.visual.face_colors = fc
    return box


def test_mesh_cube_coverage_colour_and_surface_samples(tmp_path):
    path = tmp_path / "cube.ply"
    _box_with_face_colours().export(path)
    scene = MeshScene.load(path)
    dist, fov, res = 2.0, 50.0, 40
    r = scene.render(cams([0, 90, 180], el_deg=0.0, dist=dist, fov_deg=fov, res=res))
    centre = r.rgb[:, res // 2, res // 2]
    assert torch.allclose(centre, torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]]))  # −Y, +X, +Y faces
    assert torch.allclose(r.normal[0, res // 2, res // 2], torch.tensor([0.0, -1.0, 0.0]), atol=1e-5)
    assert r.depth[0, res // 2, res // 2, 0] == pytest.approx(dist - 0.4, abs=0.01)
    focal = 0.5 * res / math.tan(math.radians(fov) / 2)
    side = 2 * focal * 0.4 / (dist - 0.4)  # the front face's projected width in pixels
    # area within the 2×2 supersampling quantisation (≤ ¼ px per edge, so ≤ ½ px on the side)
    assert float(r.alpha[0].sum()) == pytest.approx(side * side, abs=side)
    assert ((r.alpha > 0) & (r.alpha < 1)).any()  # antialiased edges
    pts = scene.sample_surface(500, torch.Generator().manual_seed(0))
    assert torch.allclose(pts.abs().amax(dim=-1), torch.full((500,), 0.4), atol=1e-5)


def _textured_quad_glb(path, material):
    """A square facing −Y in Blender's frame, written in glTF's Y-up axes, textured by `material`."""
    blender = np.array([[-0.5, 0, -0.5], [0.5, 0, -0.5], [0.5, 0, 0.5], [-0.5, 0, 0.5]])
    gltf = np.stack([blender[:, 0], blender[:, 2], -blender[:, 1]], axis=1)  # Blender → glTF axes
    uv = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], dtype=np.float64)
    quad = trimesh.Trimesh(gltf, [[0, 1, 2], [0, 2, 3]], process=False,
                           visual=trimesh.visual.TextureVisuals(uv=uv, material=material))
    quad.export(path)
    return MeshScene.load(path)


def test_glb_is_y_up_and_texture_is_sampled_at_the_hit(tmp_path):
    # left (−X) half red, right half blue
    tex = Image.fromarray(np.array([[[255, 0, 0]] * 4 + [[0, 0, 255]] * 4] * 4, dtype=np.uint8))
    scene = _textured_quad_glb(tmp_path / "quad.glb", trimesh.visual.material.PBRMaterial(baseColorTexture=tex))
    r = scene.render(cams([0], el_deg=0.0, dist=1.5, res=32))
    row = r.rgb[0, 16]
    assert r.alpha[0, 16, 16] == 1.0 and r.alpha[0, 1, 1] == 0.0
    assert torch.allclose(row[11], torch.tensor([1.0, 0, 0]), atol=0.02)  # left quarter: red
    assert torch.allclose(row[20], torch.tensor([0, 0, 1.0]), atol=0.02)  # right quarter: blue
    assert scene.render(cams([180], el_deg=0.0, res=32)).alpha.sum() > 0  # one-sided faces still block rays
    # a base colour factor multiplies the texture (trimesh's simple material writes 0.4 grey)
    dim = _textured_quad_glb(tmp_path / "dim.glb", trimesh.visual.material.SimpleMaterial(image=tex))
    row = dim.render(cams([0], el_deg=0.0, dist=1.5, res=32)).rgb[0, 16]
    assert torch.allclose(row[11], torch.tensor([0.4, 0, 0]), atol=0.02)


def test_obj_is_y_up_and_ply_is_z_up_like_blender(tmp_path):
    tri = trimesh.Trimesh([[0, 0, 0], [0.5, 0, 0], [0, 0.5, 0]], [[0, 1, 2]], process=False)
    for suffix, expected in ((".obj", [0.0, 0.0, 0.5]), (".ply", [0.0, 0.5, 0.0])):
        tri.export(tmp_path / f"tri{suffix}")
        corners = MeshScene.load(tmp_path / f"tri{suffix}").tris.reshape(-1, 3)
        assert (corners - torch.tensor(expected)).norm(dim=-1).min() < 1e-6, suffix


def test_mesh_prior_from_name_and_bad_mesh(tmp_path):
    path = tmp_path / "cube.ply"
    _box_with_face_colours().export(path)
    prior = AnalyticPrior.from_name(f"mesh={path}")
    img = prior.reference_render(cams([0], el_deg=0.0, dist=2.0, res=16))
    assert torch.allclose(img[0, 8, 8], torch.tensor([1.0, 0, 0]))
    empty = tmp_path / "empty.obj"
    empty.write_text("# nothing\n")
    with pytest.raises(MeshInputError):
        MeshScene.load(empty)


def test_variational_score_is_a_pixel_eps_phi():
    prior = AnalyticPrior.from_name("marker")
    phi = prior.make_variational_score(StageSpec(), torch.Generator().manual_seed(0))
    assert isinstance(phi, VariationalScore)
    c = cams([0, 90], res=16)
    out = phi.predict_noise(torch.zeros(2, 3, 16, 16), torch.tensor([10, 500]), Conditioning(c, "", ["", ""]))
    assert out.shape == (2, 3, 16, 16)


def test_marker_colour_reaches_the_reference_image():
    img = AnalyticPrior.from_name("marker").reference_render(cams([0, 180], el_deg=10.0, res=24))
    is_marker = (img - torch.tensor(MARKER_COLOR)).abs().amax(-1) < 0.1
    assert is_marker[0].sum() > 10 and is_marker[1].sum() == 0
