"""'Check engine': ask the engine's own Python what it has (Python, torch, CUDA, GPU, VSDream).

The probe below runs in the engine interpreter as a subprocess; Blender itself never imports
any of those packages.
"""
import json
import os
import subprocess
from pathlib import Path

ENGINE_PROBE = r"""
import json, sys
out = {"python": sys.version.split()[0], "executable": sys.executable}
try:
    import torch
    out["torch"] = torch.__version__
    out["cuda"] = bool(torch.cuda.is_available())
    if out["cuda"]:
        props = torch.cuda.get_device_properties(0)
        out["gpu"] = props.name
        out["gpu_mem_gb"] = round(props.total_memory / 2**30, 1)
    mps = getattr(torch.backends, "mps", None)
    out["mps"] = bool(mps is not None and mps.is_available())
except Exception as exc:
    out["torch_error"] = f"{type(exc).__name__}: {exc}"
try:
    import engine
    out["vsdream"] = getattr(engine, "__version__", "?")
    out["vsdream_path"] = engine.__path__[0]
except Exception as exc:
    out["vsdream_error"] = f"{type(exc).__name__}: {exc}"
try:  # the engine's prior table: what each prior needs (the add-on's list is checked against it)
    from engine.priors.registry import describe_priors
    out["priors"] = describe_priors()
except Exception as exc:
    out["priors_error"] = f"{type(exc).__name__}: {exc}"[:300]
try:  # cached weights only: the probe never downloads
    from engine.priors.weights import DEFAULT_MODEL, cached_path
    out["sd_weights"] = cached_path(DEFAULT_MODEL) is not None
except Exception as exc:
    out["sd_weights"] = False
    out["sd_weights_error"] = f"{type(exc).__name__}: {exc}"[:300]
try:  # every model in the Hugging Face cache the engine can use (no network)
    from engine.models_cli import model_rows
    out["models"] = model_rows()
except Exception as exc:
    out["models_error"] = f"{type(exc).__name__}: {exc}"[:300]
try:  # the engine's stage table: the add-on's stage list comes from it (engine/stage_table.py)
    from engine.stage_table import describe_stages
    out["stages"] = describe_stages()
except Exception as exc:
    out["stages_error"] = f"{type(exc).__name__}: {exc}"[:300]
print("VSDREAM_CHECK " + json.dumps(out))
"""


def run_check(python: str, backend_dir: str = "", timeout_s: float = 120.0) -> dict:
    """Run the probe (blocking: call it from a worker thread). Always returns a dict;
    'error' is set when the interpreter could not be run at all."""
    if not python or not Path(python).exists():
        return {"error": f"engine Python not found: {python!r}. Set it in the preferences or press 'Set up engine'"}
    env = dict(os.environ)
    env.pop("PYTHONHOME", None)
    if backend_dir:
        env["PYTHONPATH"] = os.pathsep.join([backend_dir] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    try:
        proc = subprocess.run([python, "-c", ENGINE_PROBE], capture_output=True, text=True,
                              timeout=timeout_s, env=env)
    except (OSError, subprocess.SubprocessError) as exc:
        return {"error": f"could not run {python}: {exc}"}
    for line in proc.stdout.splitlines():
        if line.startswith("VSDREAM_CHECK "):
            return json.loads(line[len("VSDREAM_CHECK "):])
    return {"error": f"{python} exited with {proc.returncode}: {proc.stderr.strip()[-500:]}"}


def format_report(info: dict) -> str:
    if "error" in info:
        return "Engine check failed: " + info["error"]
    lines = [f"Python {info.get('python')} ({info.get('executable')})"]
    if "torch" in info:
        gpu = (f"CUDA: {info.get('gpu')} with {info.get('gpu_mem_gb')} GB" if info.get("cuda")
               else "Apple GPU (MPS): available" if info.get("mps") else "CUDA: not available (CPU only)")
        lines += [f"torch {info['torch']}", gpu]
    else:
        lines.append("torch missing: " + info.get("torch_error", "?") + " — press 'Set up engine'")
    lines.append(f"VSDream {info['vsdream']} ({info.get('vsdream_path', '?')})" if "vsdream" in info
                 else "VSDream engine missing: " + info.get("vsdream_error", "?"))
    lines.append("Stable Diffusion weights: " + ("found" if info.get("sd_weights") else
                                                  "not found (press 'Download weights', or run: vsdream models fetch)"))
    for row in info.get("models", []):
        lines.append(f"Model {row.get('id')} ({row.get('role')}): {row.get('state')}")
    if "models_error" in info:
        lines.append("Cached models: unknown (" + info["models_error"] + ")")
    for entry in info.get("priors", []):
        needs = [] if entry.get("weights", "none").startswith("none") else ["weights"]
        needs += ["a prompt"] if entry.get("needs_prompt") else []
        suffix = f" (needs {', '.join(needs)})" if needs else ""
        lines.append(f"Prior {entry.get('name')}: {entry.get('summary')}{suffix}")
    return "\n".join(lines)


def engine_knows_prior(info: dict, value: str) -> bool | None:
    """Whether the checked engine's prior table accepts `value` (None: no table in the report).
    Mirrors registry.PriorEntry.matches on plain data, so Blender never imports the engine."""
    table = info.get("priors")
    if not isinstance(table, list):
        return None
    for e in table:
        name = e.get("name")
        if value == name and e.get("bare", True):
            return True
        if e.get("parametrised") and value.startswith(f"{name}:") and value[len(name) + 1:].strip():
            return True
    return False


def choose_prior(info: dict) -> str:
    """Stable Diffusion only with its weights and a GPU; else the analytic reference scene."""
    return "sd" if info.get("cuda") and info.get("sd_weights") else "analytic:marker"
