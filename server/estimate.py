"""The `estimate` request: a spec's fit check (engine/fit_check.py) answered as JSON.

Why a child process: the server never imports torch (its memory stays small and its event loop
free), so it runs `vsdream fit --spec FILE --json` and relays the answer. The first estimate of a
Stable Diffusion configuration takes minutes on a CPU (the memory model runs SD-2.1's modules under
FakeTensorMode); later ones come from the engine's cache file in well under a second.
"""
from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from .protocol import ProtocolError

ESTIMATE_TIMEOUT_S = 900.0  # SD-2.1's first estimate with its suggestions on a slow CPU; cached after


async def run_estimate(spec: Any, free_gb: float | None, timeout_s: float = ESTIMATE_TIMEOUT_S) -> dict[str, Any]:
    """The FitCheck of `spec` (a validated JobSpec) as a dict; ProtocolError when the child fails."""
    with tempfile.TemporaryDirectory(prefix="vsdream-estimate-") as tmp:
        path = Path(tmp) / "spec.json"
        path.write_text(spec.to_json(), encoding="utf-8")
        args = [sys.executable, "-m", "engine.cli", "fit", "--spec", str(path), "--json"]
        if free_gb is not None:
            args += ["--free-gb", repr(float(free_gb))]
        proc = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.PIPE)
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
        except TimeoutError:
            raise ProtocolError("engine_error", f"the estimate took longer than {timeout_s:.0f} s") from None
        finally:  # timed out, or cancelled (the server stopping): no child outlives its request
            if proc.returncode is None:
                proc.kill()
                await asyncio.shield(proc.wait())
    if proc.returncode != 0:
        why = (err.decode("utf-8", "replace").strip().splitlines() or ["no message"])[-1]
        raise ProtocolError("invalid_spec", f"the fit check failed: {why}"[:2000])
    try:
        return json.loads(out.decode("utf-8").strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise ProtocolError("internal", "the fit check answered no JSON") from None
