"""Spec input for the CLIs: --set overrides and run folders, each mistake a SpecError (exit status 2).

The sub-commands print `vsdream: <error>` and return 2 for any SpecError, so everything a user can
get wrong on the command line (a bad value, a null, a missing or unreadable run folder) ends as a
message naming the thing, its value and what is allowed, never as a traceback.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from .run_dir import RunDir
from .spec import FieldProblem, JobSpec, SpecError

SET_HELP = ("override any spec field, e.g. --set nerf.steps=200; values are JSON "
            "(quote text that looks like a number: --set 'prompt=\"1984\"')")
_SET_FORM = "KEY=VALUE with KEY a field path such as nerf.steps or prompt"


def parse_set(items: list[str]) -> dict[str, Any]:
    """--set nerf.steps=100 --set camera.fov_deg=[40,60] → nested overrides (values parsed as JSON)."""
    out: dict[str, Any] = {}
    for item in items:
        key, eq, raw = item.partition("=")
        parts = key.strip().split(".")
        if not eq or not all(parts):
            raise SpecError([FieldProblem("--set", item, _SET_FORM)], title="invalid --set")
        try:
            value = json.loads(raw)
        except (ValueError, RecursionError):  # not JSON: plain text
            value = raw
        node = out
        for i, part in enumerate(parts[:-1]):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                section = ".".join(parts[:i + 1])
                raise SpecError([FieldProblem("--set", item, f"either {section}=VALUE or {section}.FIELD=VALUE, "
                                              "not both")], title="invalid --set")
        node[parts[-1]] = value
    return out


def read_run_spec(folder: Path, what: str, validate: bool = True) -> JobSpec:
    """The spec of run folder `folder`, validated unless the caller changes it first (then it
    validates); `what` names the argument in messages, e.g. --resume."""
    run = RunDir(Path(folder))

    def fail(allowed: str) -> SpecError:
        return SpecError([FieldProblem(what, str(folder), allowed)], title=f"cannot use {what} {folder}")

    if not run.root.is_dir():
        raise fail("an existing run folder (one made by vsdream run --out); there is no such folder")
    if not run.spec_path.is_file():
        raise fail("a run folder holding spec.json; this folder has none (was it made by vsdream run --out?)")
    try:
        spec = run.read_spec()
        return spec.validate() if validate else spec
    except (OSError, UnicodeDecodeError) as exc:
        raise fail(f"a readable UTF-8 spec.json ({type(exc).__name__}: {exc})") from None
    except SpecError as exc:
        raise SpecError(exc.problems, title=f"{run.spec_path} is not a valid job spec") from None


def report(exc: SpecError) -> int:
    """Print a spec problem the way every sub-command does; the exit status for a usage error."""
    print(f"vsdream: {exc}", file=sys.stderr)
    return 2
