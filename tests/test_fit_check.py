"""Fit check (issue 23 item 2): the real memory estimator (bench memory's FakeTensorMode model) on the
tiny random-weight SD, a free memory given as a parameter, the real CLI in-process."""
from __future__ import annotations

import time

import pytest
import torch  # noqa: F401 - imported here, so the timings below measure the check, not torch's import

from engine.fit_check import apply_suggestion, fit_check, memory_model
from engine.presets import make_spec

# stage 1 only, 2 particles at 128²: three estimates (2 particles, 1 particle, 64²) cover every claim
SMALL = {"prior": "tiny-sd", "particles": 2, "nerf": {"steps": 2, "resolution_schedule": [[0, 128]]},
         "geometry": {"enabled": False}, "texture": {"enabled": False}, "export": {"enabled": False}}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("fit") / "fit_check.json"


@pytest.fixture(scope="module")
def spec():
    return make_spec("cpu-smoke", SMALL)


def test_the_analytic_prior_has_no_gpu_model_and_costs_nothing(tmp_path):
    spec = make_spec("cpu-smoke")
    t0 = time.perf_counter()
    check = fit_check(spec, cache_path=tmp_path / "c.json")
    assert time.perf_counter() - t0 < 2.0
    assert check.peak_gb is None and check.fits is None and "no GPU model to estimate" in check.memory_model
    assert check.device.kind == "cpu" and check.device.total_gb and check.device.free_gb
    assert not (tmp_path / "c.json").exists()


def test_a_job_that_does_not_fit_is_refused_with_settings_that_fit(spec, cache):
    assert memory_model(spec) == "tiny-sd"
    roomy = fit_check(spec, free_gb=1000.0, cache_path=cache, time_estimate=False)
    assert roomy.fits is True and roomy.suggestions == [] and roomy.peak_gb > 0
    t0 = time.perf_counter()  # the same configuration again: from the cache file
    again = fit_check(spec, free_gb=1000.0, cache_path=cache, time_estimate=False)
    assert time.perf_counter() - t0 < 2.0 and again.peak_gb == roomy.peak_gb
    tight = roomy.peak_gb - 0.001
    check = fit_check(spec, free_gb=tight, cache_path=cache, time_estimate=False)
    assert check.fits is False
    labels = [s.label for s in check.suggestions]
    assert labels == ["1 particle", "final resolution 64²"], labels
    for s in check.suggestions:  # each suggestion, applied to the spec, fits by the same estimator
        fixed = apply_suggestion(spec, s)
        assert s.preset is None and fixed.to_dict() == make_spec("cpu-smoke", _merge(SMALL, s.overrides)).to_dict()
        verdict = fit_check(fixed, free_gb=tight, cache_path=cache, time_estimate=False)
        assert verdict.fits is True and verdict.peak_gb == s.peak_gb < tight
    assert cache.is_file()


def test_time_estimate_on_cpu_is_a_measured_lower_bound(spec, cache):
    check = fit_check(spec, free_gb=1000.0, cache_path=cache)
    assert check.seconds is not None and check.seconds > 0 and check.seconds_are_lower_bound
    assert "GFLOP/s" in check.time_note and "2 steps" in check.time_note
    assert any(line.startswith("time: at least") for line in check.lines())


def test_the_cli_refuses_a_job_that_cannot_fit_unless_forced(spec, cache, tmp_path, monkeypatch, capsys):
    from engine.cli import main
    monkeypatch.setenv("VSDREAM_CACHE_DIR", str(cache.parent))  # the estimates above, not the user's cache
    peak = fit_check(spec, free_gb=1000.0, cache_path=cache, time_estimate=False).peak_gb
    args = ["run", "--preset", "cpu-smoke", "--prior", "tiny-sd", "--particles", "2",
            "--set", "nerf.steps=2", "--set", "nerf.resolution_schedule=[[0,128]]", "--set", "geometry.enabled=false",
            "--set", "texture.enabled=false", "--set", "export.enabled=false", "--free-gb", f"{peak - 0.001}"]
    assert main([*args, "--out", str(tmp_path / "refused")]) == 2
    out = capsys.readouterr()
    assert "does NOT fit" in out.out and "--particles 1" in out.err and "--force" in out.err
    assert "Traceback" not in out.err and not (tmp_path / "refused").exists()
    # the suggested setting, still below its own estimate, forced (1 step, 1 held-out view: a short run)
    small = fit_check(make_spec("cpu-smoke", {**SMALL, "particles": 1}), free_gb=1000.0, cache_path=cache,
                      time_estimate=False).peak_gb
    args = [*args, "--particles", "1", "--set", "nerf.steps=1", "--set", "camera.eval_views=1",
            "--free-gb", f"{small - 0.001}"]
    assert main([*args, "--force", "--out", str(tmp_path / "forced")]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "forced" / "result").is_dir() and "starting although" in out


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def test_vsdream_fit_answers_the_check_as_json(spec, cache, tmp_path, monkeypatch, capsys):
    """The seam the server's estimate request and the add-on use: a spec file in, the FitCheck out."""
    import json

    from engine.cli import main
    monkeypatch.setenv("VSDREAM_CACHE_DIR", str(cache.parent))
    assert main(["fit", "--preset", "cpu-smoke", "--json"]) == 0
    analytic = json.loads(capsys.readouterr().out)
    assert analytic["peak_gb"] is None and "no GPU model to estimate" in analytic["memory_model"]
    path = tmp_path / "spec.json"
    path.write_text(spec.to_json(), encoding="utf-8")
    peak = fit_check(spec, free_gb=1000.0, cache_path=cache, time_estimate=False).peak_gb
    assert main(["fit", "--spec", str(path), "--free-gb", f"{peak - 0.001}", "--no-time", "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["fits"] is False and answer["peak_gb"] == peak and answer["device"]["free_gb"] == peak - 0.001
    assert [s["overrides"] for s in answer["suggestions"]][0] == {"particles": 1}


def test_the_server_answers_an_estimate_request(spec, cache, tmp_path):
    """A real server subprocess: `estimate` runs the same check in a child (the server never imports torch)."""
    from server import protocol as P
    from server.launcher import ServerProcess
    peak = fit_check(spec, free_gb=1000.0, cache_path=cache, time_estimate=False).peak_gb
    with ServerProcess(tmp_path / "runs", "--device", "cpu", env={"VSDREAM_CACHE_DIR": str(cache.parent)}) as srv:
        chan = srv.connect()
        reply = P.raise_for_error(chan.request(P.make("estimate", preset="cpu-smoke")))
        assert reply.type == "estimate" and "no GPU model to estimate" in reply["memory_model"]
        assert "peak_gb" not in reply.header and reply["device"]["kind"] == "cpu"
        reply = P.raise_for_error(chan.request(P.make("estimate", spec=spec.to_dict(), free_gb=peak - 0.001)))
        assert reply["fits"] is False and reply["peak_gb"] == peak
        assert reply["suggestions"][0]["overrides"] == {"particles": 1}
        bad = chan.request(P.make("estimate", preset="cpu-smoke", overrides={"nerf": {"steps": -1}}))
        assert bad.type == "error" and bad["code"] == "invalid_spec" and "nerf.steps" in bad["message"]
