"""Which files a job may read when its spec arrives over the protocol.

A spec names files in five places: `input_mesh`, `prior = analytic:mesh=<path>` (also as one of
several scenes), `prior = sd:<model>`, `model` and `phi_model`; `output_dir` names a folder to write.

- `output_dir` always belongs to the server: each job writes into `<runs-dir>/<job id>`, so a
  client-given one is refused rather than silently ignored.
- A *confined* server (started with `--allow-remote`, or `--confine-paths`) reads job inputs only
  from the job's own run folder (where uploads land) and from folders it was started to trust:
  every `--trust-models DIR` and the Hugging Face cache. A relative path means one inside the run
  folder; every accepted path is rewritten to its resolved absolute form (symlinks followed), so
  the engine opens exactly the file that was checked. A model given as a hub id (`org/name`) is
  not a path and stays as it is: it is looked up in the Hugging Face cache.
- A loopback server without those flags serves the user who started it (the Blender add-on's
  own engine): paths are taken as given, as a local command line would.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.priors.registry import analytic_tokens, canonical_prior, trimmed

MODEL_NAMES_NOT_PATHS = ("shared",)  # phi_model = "shared": a LoRA on the pretrained UNet
_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,95}(/[A-Za-z0-9][A-Za-z0-9_.-]{0,95})?")


def hub_cache_dir(env: dict[str, str] | None = None) -> Path:
    """The Hugging Face hub cache, as engine.priors.weights.hub_cache_dir finds it (a test keeps the
    two in step; this copy avoids importing torch into the server)."""
    env = os.environ if env is None else env
    if env.get("HF_HUB_CACHE"):
        return Path(env["HF_HUB_CACHE"]).expanduser()
    if env.get("HF_HOME"):
        return Path(env["HF_HOME"]).expanduser() / "hub"
    xdg = env.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "huggingface" / "hub"


@dataclass(frozen=True)
class PathPolicy:
    confined: bool = False
    trusted: tuple[Path, ...] = ()  # resolved; the Hugging Face cache is added by for_server()

    @classmethod
    def for_server(cls, allow_remote: bool, confine: bool, trust: list[Path] | tuple[Path, ...] = ()) -> PathPolicy:
        """The policy a server started with these flags applies: --allow-remote always confines."""
        roots = [Path(p).expanduser().resolve() for p in [*trust, hub_cache_dir()]]
        return cls(confined=allow_remote or confine, trusted=tuple(dict.fromkeys(roots)))

    def check(self, spec: Any, run_root: Path) -> list[dict[str, Any]]:
        """Problems ({"field", "value", "allowed"}) of a JobSpec's paths; when there are none, the
        accepted paths have been rewritten in place to their resolved absolute form."""
        problems: list[dict[str, Any]] = []
        if spec.output_dir is not None:
            problems.append(_problem("output_dir", spec.output_dir,
                                     "null: the server writes each job into its own run folder "
                                     "(<runs-dir>/<job id>); fetch results with get_artifact"))
        if not self.confined:
            return problems
        roots = (Path(run_root).resolve(), *self.trusted)
        where = "this job's run folder (send the mesh as the submit's payload) or a folder the server trusts: " \
                + ", ".join(str(r) for r in self.trusted)
        fixed: dict[str, Any] = {}
        if spec.input_mesh is not None:
            fixed["input_mesh"] = self._file("input_mesh", spec.input_mesh, roots, where, problems)
        for name in ("model", "phi_model"):
            value = getattr(spec, name)
            if value is not None:
                fixed[name] = self._model(name, value, roots, where, problems)
        fixed["prior"] = self._prior(spec.prior, roots, where, problems)
        if not problems:
            for name, value in fixed.items():
                setattr(spec, name, value)
        return problems

    # ------------------------------------------------------------ fields
    def _file(self, field: str, value: Any, roots: tuple[Path, ...], where: str,
              problems: list[dict[str, Any]], shown: Any = None) -> Any:
        resolved = _resolve(value, roots[0])
        if resolved is None or not any(resolved.is_relative_to(r) for r in roots):
            problems.append(_problem(field, value if shown is None else shown, "a path inside " + where))
            return value
        return str(resolved)

    def _model(self, field: str, value: Any, roots: tuple[Path, ...], where: str,
               problems: list[dict[str, Any]], shown: Any = None) -> Any:
        if isinstance(value, str) and _is_model_name(value):
            return value
        resolved = _resolve(value, roots[0])
        if resolved is None or not any(resolved.is_relative_to(r) for r in roots):
            problems.append(_problem(field, value if shown is None else shown,
                                     "null, a Hugging Face model id (org/name) or a folder inside " + where))
            return value
        return str(resolved)

    def _prior(self, prior: Any, roots: tuple[Path, ...], where: str, problems: list[dict[str, Any]]) -> Any:
        if not isinstance(prior, str):
            return prior  # the spec's own validation names it
        if prior != canonical_prior(prior):  # the spec refuses these too; never strip here and load padded
            problems.append(_problem("prior", prior, "the prior written without white space around it or its "
                                                     "parts (e.g. analytic:mesh=input/ref.glb)"))
            return prior
        if prior.startswith("sd:"):
            return "sd:" + self._model("prior", prior[3:], roots, where, problems, shown=prior)
        if not prior.startswith("analytic:"):
            return prior
        out = []
        for tok in analytic_tokens(prior[len("analytic:"):]):
            if tok.startswith("mesh="):
                tok = "mesh=" + self._file("prior", tok[5:], roots, where, problems, shown=prior)
            out.append(tok)
        return "analytic:" + ",".join(out)


def _problem(field: str, value: Any, allowed: str) -> dict[str, Any]:
    return {"field": field, "value": value if not isinstance(value, str) else value[:300], "allowed": allowed}


def _resolve(value: Any, base: Path) -> Path | None:
    """Absolute, symlink-free form of a path (relative = inside `base`); None when it is no path.

    The value is taken exactly as written (the spec refuses padded paths), and no answer depends on
    whether a path outside the roots exists: resolving is lexical where the file is missing."""
    if not isinstance(value, str) or not value or value != trimmed(value) or "\x00" in value:
        return None
    try:
        p = Path(value).expanduser()
        return (p if p.is_absolute() else base / p).resolve()
    except (OSError, RuntimeError, ValueError):  # ENAMETOOLONG, a symlink loop, no home directory
        return None


def _is_model_name(value: str) -> bool:
    """A hub id (`org/name`) or a built-in name rather than a file system path."""
    if value in MODEL_NAMES_NOT_PATHS:
        return True
    v = value
    if not _HUB_ID.fullmatch(v) or ".." in v.split("/"):  # the hub's own rule: [A-Za-z0-9_.-], ≤ 96 per part
        return False
    try:
        return not Path(v).exists()  # the engine would read a folder of that name in its working directory
    except (OSError, ValueError):
        return False
