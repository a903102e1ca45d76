"""JobSpec: presets validate, JSON round-trips, and bad input names every field at once."""
import json

import pytest

from engine.presets import PRESETS, make_spec
from engine.spec import JobSpec, SpecError


@pytest.mark.parametrize("name", list(PRESETS))
def test_presets_validate_and_round_trip(name):
    spec = make_spec(name, {"prompt": "a ceramic owl"})
    again = JobSpec.from_json(spec.to_json())
    assert again == spec
    assert json.loads(again.to_json()) == json.loads(spec.to_json())


def test_paper_preset_matches_design():
    s = make_spec("paper", {"prompt": "a ceramic owl"})
    assert (s.nerf.steps, s.geometry.steps, s.texture.steps) == (25000, 15000, 30000)
    assert s.nerf.resolution_schedule == [[0, 64], [5000, 512]]
    assert (s.nerf.t_min, s.nerf.t_max, s.nerf.t_max_annealed, s.nerf.anneal_step) == (0.02, 0.98, 0.5, 5000)
    assert s.nerf.guidance_scale == 7.5 and s.geometry.guidance_scale == 100.0
    assert s.nerf.lr_grid == 1e-2 and s.nerf.lr_mlp == 1e-3 and s.nerf.lr_phi == 1e-4
    assert s.camera.elevation_deg == (-10.0, 45.0) and s.camera.fov_deg == (40.0, 70.0)
    assert s.field.log2_table_size == 19 and s.field.levels == 16


def test_every_bad_field_is_listed_with_value_and_range():
    with pytest.raises(SpecError) as info:
        make_spec("cpu-smoke", {"particles": 0, "seed": -1, "camera": {"fov_deg": [80, 10]},
                                "nerf": {"method": "dds", "steps": -5}, "export": {"texture_size": 300},
                                "colour": "red"})
    fields = {p.field: p for p in info.value.problems}
    assert set(fields) >= {"particles", "seed", "camera.fov_deg", "nerf.method", "nerf.steps",
                           "export.texture_size", "colour"}
    assert fields["particles"].value == 0 and "[1, 16]" in fields["particles"].allowed
    text = str(info.value)
    assert "nerf.method = 'dds'" in text and "one of 'vsd', 'sds'" in text
    assert info.value.to_list()[0].keys() == {"field", "value", "allowed"}


def test_wrong_types_and_sections_are_reported_not_crashing():
    with pytest.raises(SpecError) as info:
        JobSpec.from_dict({"camera": "front", "nerf": {"resolution_schedule": [[5, 64]]}, "prompt": "x"})
    fields = {p.field for p in info.value.problems}
    assert "camera" in fields and "nerf.resolution_schedule" in fields
    with pytest.raises(SpecError):
        JobSpec.from_json("[1, 2]")
    with pytest.raises(SpecError):
        JobSpec.from_json("{not json")


def test_retexture_needs_a_mesh_and_sd_needs_a_prompt():
    with pytest.raises(SpecError) as info:
        make_spec("cpu-smoke", {"mode": "retexture", "prior": "sd", "prompt": "  "})
    fields = {p.field for p in info.value.problems}
    assert {"input_mesh", "prompt"} <= fields


def test_the_product_presets_run_stable_diffusion_and_cpu_smoke_refuses_it():
    """What the CLI runs by default is the product (fast, Stable Diffusion with guidance), and a text
    prior with the analytic prior's test preset is refused with the presets that fit."""
    from engine.presets import DEFAULT_PRESET
    assert DEFAULT_PRESET == "fast" and make_spec("fast", {"prompt": "an owl"}).prior == "sd"
    with pytest.raises(SpecError) as info:
        make_spec("fast")
    assert [p.field for p in info.value.problems] == ["prompt"]
    with pytest.raises(SpecError) as info:
        make_spec("cpu-smoke", {"prior": "sd", "prompt": "an owl"})
    (problem,) = info.value.problems
    assert problem.field == "preset" and "'fast'" in problem.allowed and "'paper'" in problem.allowed
    assert make_spec("cpu-smoke").prior == "analytic:marker"  # the test preset keeps its own prior


def test_the_cli_defaults_to_the_product_preset(tmp_path, capsys):
    """`vsdream run --prompt … --out …` as the README writes it runs `fast` on Stable Diffusion: without
    a prompt it asks for one (usage error, nothing written) instead of running the test prior."""
    from engine.cli import main
    assert main(["run", "--out", str(tmp_path / "run")]) == 2
    assert "prompt" in capsys.readouterr().err and not (tmp_path / "run").exists()
    assert main(["run", "--preset", "cpu-smoke", "--prior", "sd", "--prompt", "an owl",
                 "--out", str(tmp_path / "run")]) == 2
    assert "'fast'" in capsys.readouterr().err
