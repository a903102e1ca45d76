"""Spec checks by type, derived from the dataclasses: every field, every value, only SpecError.

Issue 14 (defect 3): 23 fields had no type check, `prompt` accepted a list, and a non-string
`device` or `prompt` raised AttributeError/TypeError instead of naming the field.
"""
import dataclasses
import json
import math
from typing import Literal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.presets import make_spec
from engine.spec import JobSpec, SpecError
from engine.spec_types import all_paths, conforms, field_types, is_section

PATHS = all_paths(JobSpec)
SECTIONS = [name for name, tp in field_types(JobSpec).items() if is_section(tp)]


def nested(path: str, value) -> dict:
    out: dict = {}
    node = out
    parts = path.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


def problems_of(overrides: dict) -> dict:
    with pytest.raises(SpecError) as info:
        make_spec("cpu-smoke", overrides)
    return {p.field: p for p in info.value.problems}


# one case per field the hand-written checks missed, with a value of the wrong type
MISSED = (
    [(f"{s}.enabled", "no", "true or false") for s in ("nerf", "geometry", "texture")]
    + [(f"{s}.{lam}", "x", "a number") for s in ("nerf", "geometry", "texture")
       for lam in ("lambda_sparsity", "lambda_opaque", "lambda_normal_consistency", "lambda_laplacian")]
    + [(f"camera.{t}_threshold_deg", "30", "a number") for t in ("front", "back", "overhead")]
    + [("export.enabled", "false", "true or false"), ("negative_prompt", 5, "a string"),
       ("preset", ["paper"], "a string"), ("input_mesh", 5, "null or a string"),
       ("output_dir", {"path": "x"}, "null or a string")]
)


def test_the_missed_fields_are_the_23_of_the_issue():
    assert len(MISSED) == 23 and len({m[0] for m in MISSED}) == 23


@pytest.mark.parametrize("path,value,words", MISSED, ids=[m[0] for m in MISSED])
def test_each_previously_unchecked_field_is_type_checked(path, value, words):
    got = problems_of(nested(path, value))
    assert set(got) == {path}, f"expected exactly {path} to be reported, got {sorted(got)}"
    assert got[path].value == value and words in got[path].allowed


@pytest.mark.parametrize("path,value", [("prompt", ["an owl"]), ("prompt", None), ("prompt", 5),
                                        ("device", None), ("device", 5), ("device", ["cpu"])])
def test_non_string_prompt_and_device_are_named_not_crashing(path, value):
    got = problems_of({path: value, "prior": "sd"})
    assert path in got, f"{path} = {value!r} was not reported: {sorted(got)}"
    assert got[path].value == value and ("a string" in got[path].allowed or "'auto'" in got[path].allowed)


def test_bool_is_not_a_number_and_int_is_a_float():
    got = problems_of({"nerf": {"steps": True, "guidance_scale": False}, "particles": True})
    assert {"nerf.steps", "nerf.guidance_scale", "particles"} <= set(got)
    assert "an integer" in got["nerf.steps"].allowed and "a number" in got["nerf.guidance_scale"].allowed
    assert problems_of({"nerf": {"enabled": 1}}).keys() == {"nerf.enabled"}
    spec = make_spec("cpu-smoke", {"nerf": {"guidance_scale": 7, "lambda_sparsity": 10}})
    assert spec.nerf.guidance_scale == 7


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, 10**400])
def test_non_finite_numbers_are_refused(bad):
    got = problems_of({"nerf": {"t_min": bad}, "camera": {"fov_deg": [40.0, bad]}})
    assert {"nerf.t_min", "camera.fov_deg"} <= set(got)


def test_nan_and_huge_integers_in_json_text_are_spec_errors():
    with pytest.raises(SpecError) as info:
        JobSpec.from_json('{"seed": NaN, "nerf": {"lr_grid": Infinity}, "particles": ' + "9" * 400 + "}").validate()
    assert {p.field for p in info.value.problems} == {"seed", "nerf.lr_grid", "particles"}
    with pytest.raises(SpecError) as info:
        JobSpec.from_json('{"seed": ' + "9" * 5000 + "}")  # Python refuses to parse this many digits
    assert info.value.problems[0].field == "<json>"


def leaf_type(path: str):
    owner = JobSpec
    *sections, leaf = path.split(".")
    for name in sections:
        owner = field_types(owner)[name]
    return field_types(owner)[leaf]


STRING_PATHS = [p for p in PATHS if "str" in str(leaf_type(p))]


@pytest.mark.parametrize("path", STRING_PATHS)
def test_a_lone_surrogate_in_any_string_field_names_that_field(path):
    value = ["glb", "owl \ud83d"] if "list" in str(leaf_type(path)) else "owl \ud83d"
    with pytest.raises(SpecError) as info:
        make_spec("cpu-smoke", nested(path, value))
    got = {p.field: p for p in info.value.problems}
    assert path in got, f"{path} with a lone surrogate was not reported: {sorted(got)}"
    assert "UTF-8" in got[path].allowed
    # the problem itself (value included) is safe to print and to send as UTF-8 JSON
    json.dumps(info.value.to_list(), ensure_ascii=False).encode("utf-8")
    str(info.value).encode("utf-8")


def test_string_fields_include_the_issue_ones():
    assert {"prompt", "negative_prompt", "device", "preset", "input_mesh", "output_dir", "prior",
            "export.formats"} <= set(STRING_PATHS)


@pytest.mark.parametrize("path", PATHS)
def test_every_leaf_field_refuses_an_object(path):
    """No field is left unchecked: an object fits none of the declared types."""
    got = problems_of(nested(path, {"oops": 1}))
    assert path in got and got[path].allowed


def test_from_dict_reports_structural_type_and_value_problems_together():
    with pytest.raises(SpecError) as info:
        JobSpec.from_dict({"colour": "red", "camera": "front", "nerf": {"enabled": "no", "steps": -5},
                           "device": None})
    fields = {p.field for p in info.value.problems}
    assert {"colour", "camera", "nerf.enabled", "nerf.steps", "device"} <= fields


def test_range_text_is_the_same_for_a_bad_type_and_a_bad_value():
    a, b = problems_of({"particles": "2"})["particles"], problems_of({"particles": 99})["particles"]
    assert a.allowed == b.allowed == "an integer in [1, 16]"


# ---------------------------------------------------------------- property: only SpecError, real paths
SAMPLES = ["\ud83d", "owl \udcff", "vsd", "sds", "cpu", "cuda:0", "sd", "analytic:marker", "retexture",
           "", "  ", "glb", "obj", "text", "object", "sqrt"]
scalars = (st.none() | st.booleans() | st.integers() | st.integers(min_value=-2**80, max_value=2**80)
           | st.floats() | st.text(max_size=8) | st.sampled_from(SAMPLES))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=10)
KNOWN = set(PATHS) | set(SECTIONS) | {"<root>"}


def _apply(base: dict, assignments: list) -> dict:
    for path, value in assignments:
        node, parts = base, path.split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[parts[-1]] = value
    return base


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(PATHS + SECTIONS), values), max_size=8), st.booleans())
def test_any_json_values_give_spec_error_or_a_spec(assignments, from_preset):
    data = _apply(make_spec("cpu-smoke").to_dict() if from_preset else {}, assignments)
    try:
        JobSpec.from_dict(data).validate()
    except SpecError as exc:
        assert exc.problems
        for p in exc.problems:
            assert isinstance(p.allowed, str) and p.allowed
            if p.field not in KNOWN:  # an unknown key: named by its path, at the top or in a real section
                at_top = p.field in data
                in_section = any(p.field.startswith(s + ".") and isinstance(data.get(s), dict)
                                 and p.field[len(s) + 1:] in data[s] for s in SECTIONS)
                assert "not a known field" in p.allowed and (at_top or in_section), \
                    f"problem names no real field: {p.field!r}"
        json.dumps(exc.to_list(), ensure_ascii=False).encode("utf-8")
        str(exc).encode("utf-8")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(PATHS + SECTIONS),
                          values | st.builds(object) | st.binary(max_size=4) | st.sets(st.integers(), max_size=2)),
                max_size=6))
def test_validate_on_any_python_values_raises_only_spec_error(assignments):
    spec = make_spec("cpu-smoke")
    for path, value in assignments:
        owner = spec
        head, _, leaf = path.rpartition(".")
        if head:
            owner = getattr(spec, head)
            if not dataclasses.is_dataclass(owner):
                continue  # the section itself was replaced by a value: nothing to set inside it
        setattr(owner, leaf, value)
    try:
        spec.validate()
    except SpecError as exc:
        assert all(p.field in KNOWN for p in exc.problems)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60) | st.sampled_from(["[" * 5000 + "]" * 5000, '{"nerf": ' * 3000 + "1" + "}" * 3000,
                                               "{}", '{"seed": 1e999}', '"\\ud83d"', '{"prompt": "\\ud83d"}']))
def test_from_json_of_any_text_raises_only_spec_error(text):
    try:
        JobSpec.from_json(text).validate()
    except SpecError as exc:
        assert exc.problems
        str(exc).encode("utf-8")


@pytest.mark.parametrize("tp,good,bad", [
    (bool, [True, False], [0, 1, "no", None]),
    (int, [0, -3, 10**30], [True, 1.0, "1", None]),
    (float, [0, 1.5, -2, 10**300], [math.nan, math.inf, -math.inf, 10**400, True, "1.5", None]),
    (str, ["", "owl", "é 🦉"], ["owl \ud83d", 5, None, ["a"]]),
    (str | None, [None, "x"], [5, "\udcff"]),
    (Literal["vsd", "sds"], ["vsd"], ["dds", 0, None]),
    (tuple[float, float], [(1, 2), [1.0, 2.0]], [[1], [1, 2, 3], [1, math.nan], "12"]),
    (list[list[int]], [[], [[0, 64]]], [[[0, 6.4]], [0, 64], [[True]]]),
    (list[str], [[], ["glb"]], ["glb", [1], ["\ud83d"]]),
])
def test_conforms_follows_the_annotation(tp, good, bad):
    """The type table alone (no range rule): bool ≠ int, int ⊂ float, finite numbers, UTF-8 text."""
    assert [v for v in good if not conforms(v, tp)] == []
    assert [v for v in bad if conforms(v, tp)] == []


def test_json_tuples_come_back_as_tuples():
    spec = JobSpec()
    again = JobSpec.from_json(spec.to_json())
    assert again == spec and isinstance(again.camera.fov_deg, tuple)
