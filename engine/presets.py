"""Named presets: `paper` (DESIGN.md §3 settings), `fast`, `preview`, `low-vram` (Stable Diffusion) and
`cpu-smoke` (the analytic prior: tests, demo, benchmarks)."""
from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from .retexture_mode import retexture_bundle, wants_retexture
from .scene_mode import keep_evaluation_inside, scene_bundle, wants_scene
from .spec import CameraSpec, ExportSpec, FieldSpec, JobSpec, StageSpec


def paper() -> JobSpec:
    """The ProlificDreamer settings: 25k/15k/30k steps, 64²→512² at step 5k, Stable Diffusion."""
    spec = JobSpec(preset="paper", prior="sd", nerf=StageSpec(lambda_sparsity=10.0, preview_every=200,
                                                             checkpoint_every=1000))
    _reference_stage1(spec)
    # stage 3 in text mode starts from stage 1's colour field, so it never samples t above 0.5: the
    # official code inherits the colours and uses t ≤ 0.5 from step 0 (threestudio's 0.98 for the first
    # 5k steps is for a colour field trained from scratch, which re-texture mode is: engine/retexture_mode.py)
    spec.texture.t_max = 0.5
    return spec


def _reference_stage1(spec: JobSpec, fraction: float = 0.4) -> None:
    """What stage 1 of every SD preset takes from the references, scaled to its length.

    Opacity: threestudio's prolificdreamer.yaml `lambda_opaque [10000, 0, 1000, 10001]`, i.e. 0 until
    step 10k of 25k (this `fraction`), then 1000: once the shape has formed every ray either hits or
    misses, so the density-threshold mesh of stage 2 is what the renders showed (no fog for stage 3 to
    inherit). Sampling: the official code's 32 importance samples per ray on top of the bins (its
    64 + 32): the step where the weight is falls from 0.021 to ≈ 0.002 on a hard surface (bench
    render), below threestudio's 512-sample 0.0068, without its occupancy-grid CUDA kernels."""
    start = int(round(spec.nerf.steps * fraction))
    spec.nerf.lambda_opaque, spec.nerf.opaque_ramp = 1000.0, (start, start + 1)
    spec.nerf.importance_samples = 32


def fast() -> JobSpec:
    """About a tenth of the paper's steps at 256²: a usable asset in well under an hour on a GPU."""
    spec = paper()
    spec.preset = "fast"
    spec.nerf = StageSpec(steps=4000, resolution_schedule=[[0, 64], [1500, 256]], anneal_step=1500,
                          samples_per_ray=64, lambda_sparsity=10.0, preview_every=100, checkpoint_every=500)
    _reference_stage1(spec)
    spec.geometry.steps, spec.geometry.resolution_schedule = 2000, [[0, 256]]
    spec.texture.steps, spec.texture.resolution_schedule = 3000, [[0, 256]]
    spec.texture.anneal_step = 1000  # re-texture's annealing step (text mode stays at t ≤ 0.5 throughout)
    return spec


def preview() -> JobSpec:
    """A quick look at a prompt: stage 1 at 64² only, mesh stages short."""
    spec = paper()
    spec.preset = "preview"
    spec.nerf = StageSpec(steps=1500, resolution_schedule=[[0, 64]], anneal_step=800, samples_per_ray=64,
                          lambda_sparsity=10.0, preview_every=50, checkpoint_every=250)
    _reference_stage1(spec)
    spec.geometry.steps, spec.geometry.resolution_schedule = 300, [[0, 128]]
    spec.texture.steps, spec.texture.resolution_schedule = 500, [[0, 128]]
    spec.texture.anneal_step = 200
    spec.export = ExportSpec(texture_size=512, face_target=30_000)
    return spec


def cpu_smoke() -> JobSpec:
    """Tiny and CPU-friendly: the analytic prior's reference scene in a few minutes (tests, demo)."""
    return JobSpec(
        preset="cpu-smoke",
        prior="analytic:marker",
        camera=CameraSpec(distance=(2.2, 2.6), fov_deg=(40.0, 50.0), eval_distance=2.4, eval_fov_deg=45.0,
                          eval_views=8),
        field=FieldSpec(levels=8, features_per_level=2, log2_table_size=14, base_resolution=8, growth=1.5,
                        hidden=32, background="random_half"),
        # guidance 1: the analytic prior's conditional mixture is exact, so CFG adds nothing but
        # the cost of rendering every unconditional scene. t anneals to ≤ 0.1 T at step 100: a
        # from-scratch ε_φ is only sharp at low noise after a few hundred steps, and VSD settles
        # where ε_φ's belief matches the prior (held-out PSNR 26 → 30 dB, see the closing notes)
        nerf=StageSpec(steps=400, resolution_schedule=[[0, 64]], samples_per_ray=64, anneal_step=100,
                       t_max_annealed=0.1, guidance_scale=1.0, lr_grid=3e-2, lr_mlp=3e-3, lr_phi=1e-3, preview_every=50,
                       checkpoint_every=100),
        # normal maps at 256²: geometry detail of a pixel or two at 64² gives SDS nothing to see
        # (textured mesh 28.5 → 29.0 dB for ~10 s; bench mesh refine: Chamfer 0.0148 → 0.0081).
        # Laplacian 1e-3: the same pull as 1.0 had before the regulariser became threestudio's ‖L·v‖
        # (its gradient on this 64³ DMTet's surface is ~760× the old mean-squared form's)
        geometry=StageSpec(steps=60, method="sds", guidance_scale=1.0, t_max=0.5, t_max_annealed=0.5,
                           resolution_schedule=[[0, 256]], grid_resolution=64, lambda_normal_consistency=1.0,
                           lambda_laplacian=1e-3, preview_every=20, checkpoint_every=50),
        # stage 3 starts from stage 1's colours, so t ≤ 0.1 T soon (step 25): at larger t the fresh
        # ε_φ is still noise and so is its VSD gradient (textured mesh 25.8 → 28.5 dB, closing notes)
        # t ≤ 0.5 before that in text mode (it inherits stage 1's colours); re-texture starts at 0.98
        texture=StageSpec(steps=150, method="vsd", resolution_schedule=[[0, 64]], t_max=0.5, anneal_step=25,
                          t_max_annealed=0.1,
                          guidance_scale=1.0, lr_grid=3e-2, lr_mlp=3e-3, lr_phi=1e-3, preview_every=25, checkpoint_every=50),
        export=ExportSpec(texture_size=256, face_target=5000, unwrap_timeout_s=60.0),
    )


def low_vram() -> JobSpec:
    """12 GB cards with no compiled accelerators: ε_φ a LoRA on the prior's own UNet (one UNet in
    memory), stage 1 up to 256² at 64 samples per ray, mesh stages at 256². `vsdream bench memory
    --preset low-vram`: 3.5 GB stage 1 with one particle, 6.5 GB with four (SD-2.1 in fp16)."""
    spec = paper()
    spec.preset, spec.phi_model = "low-vram", "shared"
    spec.nerf.resolution_schedule, spec.nerf.samples_per_ray = [[0, 64], [5000, 256]], 64
    spec.geometry.resolution_schedule = [[0, 256]]
    spec.texture.resolution_schedule = [[0, 256]]
    return spec


PRESETS: dict[str, Callable[[], JobSpec]] = {
    "paper": paper, "fast": fast, "preview": preview, "cpu-smoke": cpu_smoke, "low-vram": low_vram,
}
# made for the analytic prior (guidance 1, distant cameras, tiny field): refused with a text prior
ANALYTIC_PRESETS = ("cpu-smoke",)
# what the command line runs when no --preset is given: the product's setting, not the test one
DEFAULT_PRESET = "fast"


def text_presets() -> list[str]:
    """The presets made for a text prior such as Stable Diffusion."""
    return [name for name in PRESETS if name not in ANALYTIC_PRESETS]


def make_spec(preset: str = "paper", overrides: dict[str, Any] | None = None) -> JobSpec:
    """Build a preset and apply nested overrides ({"nerf": {"steps": 10}, "seed": 3})."""
    from .spec import FieldProblem, SpecError
    if not isinstance(preset, str) or preset not in PRESETS:
        raise SpecError([FieldProblem("preset", preset, "one of " + ", ".join(map(repr, PRESETS)))])
    if overrides is not None and not isinstance(overrides, dict):
        raise SpecError([FieldProblem("overrides", overrides, "a JSON object of spec fields")])
    base = PRESETS[preset]().to_dict()
    over = copy.deepcopy(overrides or {})
    scene = wants_scene(base, over)
    if scene:  # scene mode: the preset's scene settings, under the user's overrides
        base = _deep_merge(base, scene_bundle(preset))
    if wants_retexture(base, over):  # a fresh colour field on the user's mesh: t up to 0.98 first
        base = _deep_merge(base, retexture_bundle())
    merged = _deep_merge(base, over)
    if scene:
        merged = keep_evaluation_inside(merged, over)
    return JobSpec.from_dict(merged).validate()


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = _deep_merge(base[key], value)
        else:
            base[key] = value
    return base
