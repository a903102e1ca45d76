"""Validation: every message's schema, the rules beyond types, and field-level problems.

A problem is {"field", "value", "allowed"}: it names the field and says what would be accepted,
so a client (or a user reading the add-on's report) can fix exactly that field.
"""
from __future__ import annotations

import json
import math
import re
from typing import Any

from .framing import is_int

JOB_STATES = ("queued", "running", "done", "failed", "cancelled", "interrupted")
TERMINAL_EVENTS = ("done", "failed", "cancelled")
MESH_SUFFIXES = (".glb", ".gltf", ".obj", ".ply")
MAX_SAFE_INT = 2**53 - 1             # offsets, lengths and seqs every JSON reader keeps exact
LIST_PAGE_MAX = 500                  # list_jobs: most jobs one page may ask for
MAX_NAME_CHARS = 255                 # a mesh_name: one file name on every common file system
MAX_ARTIFACT_NAME = 1024             # get_artifact's name: an artifact name or a run-folder relative path
_JOB_ID = re.compile(r"^[A-Za-z0-9_.-]{1,80}$")

# field -> kind; "!" suffix = required; kinds: str int num bool obj list any; "?" prefix = may be null
_COMMON = {"type": "str!", "id": "id", "payload_bytes": "int"}
CLIENT_MESSAGES: dict[str, dict[str, str]] = {
    "hello": {"token": "str!", "protocol": "int!", "client": "str"},
    "submit": {"spec": "obj", "preset": "str", "overrides": "obj", "mesh_name": "str", "attach": "bool",
               "previews": "bool"},
    "cancel": {"job_id": "str!"},
    "resume": {"job_id": "str!", "attach": "bool", "previews": "bool"},
    "list_jobs": {"offset": "int", "limit": "int"},
    "attach": {"job_id": "str!", "from_seq": "int", "previews": "bool"},
    "detach": {"job_id": "str!"},
    "get_artifact": {"job_id": "str!", "name": "str!", "offset": "int", "length": "int"},
    "ping": {"nonce": "any"},
    "estimate": {"spec": "obj", "preset": "str", "overrides": "obj", "free_gb": "num"},
    "shutdown": {},
}
_EVENT = {"job_id": "str!", "seq": "int!", "time": "num!"}
SERVER_MESSAGES: dict[str, dict[str, str]] = {
    "welcome": {"protocol": "int!", "version": "str!", "server_pid": "int!", "devices": "list!",
                "runs_dir": "str"},
    "accepted": {"job_id": "str!", "position": "int!", "run_dir": "str!", "resumed": "bool"},
    "attached": {"job_id": "str!", "state": "str!", "last_seq": "int!"},
    "detached": {"job_id": "str!"},
    "jobs": {"jobs": "list!", "workers": "list!", "unreadable": "list", "total": "int", "offset": "int",
             "next_offset": "?int", "unreadable_total": "int"},
    "artifact_data": {"job_id": "str!", "name": "str!", "size": "int!", "offset": "int!", "sha256": "str!"},
    "pong": {"nonce": "any", "time": "num!"},
    # engine/fit_check.FitCheck as JSON (null fields are left out)
    "estimate": {"device": "obj!", "memory_model": "str!", "peak_gb": "?num", "stage_peaks_gb": "obj", "fits": "?bool",
                 "seconds": "?num", "seconds_are_lower_bound": "bool", "time_note": "str", "suggestions": "list"},
    "ack": {"what": "str!", "job_id": "str", "state": "str"},
    "error": {"code": "str!", "message": "str!", "hint": "str", "problems": "list", "fatal": "bool!",
              "job_id": "str"},
    "heartbeat": {"time": "num!", "running": "list!", "queued": "int!"},
    # job events (also the lines of events.jsonl); "seq" orders them per job
    "queued": {**_EVENT, "position": "int"},
    "started": {**_EVENT, "device": "str", "worker_pid": "int"},
    "stage": {**_EVENT, "stage": "str!", "total": "int!", "resumed_from": "int"},
    "progress": {**_EVENT, "stage": "str!", "step": "int!", "total": "int!", "losses": "obj",
                 "it_per_s": "num", "eta_s": "num", "gpu_mem_mb": "?num"},
    "preview": {**_EVENT, "stage": "str!", "step": "int!", "width": "int!", "height": "int!",
                "rgb_bytes": "int!", "normal_bytes": "int", "path": "?str"},
    "artifact": {**_EVENT, "name": "str!", "path": "str!", "size": "int!", "role": "str"},
    "log": {**_EVENT, "level": "str!", "message": "str!"},
    "done": {**_EVENT, "result": "obj!"},
    "failed": {**_EVENT, "code": "str!", "message": "str!", "hint": "str", "traceback": "str",
               "exit_status": "?int", "log_tail": "str", "problems": "list", "checkpoint": "?str"},
    "cancelled": {**_EVENT, "stage": "str", "step": "int", "checkpoint": "?str", "reason": "str"},
}
JOB_EVENTS = ("queued", "started", "stage", "progress", "preview", "artifact", "log", "done", "failed",
              "cancelled")


def _kind_ok(kind: str, v: Any) -> bool:
    if kind.startswith("?"):
        if v is None:
            return True
        kind = kind[1:]
    if kind == "str":
        return isinstance(v, str)
    if kind == "int":
        return is_int(v)
    if kind == "num":
        return is_int(v) or isinstance(v, float) and math.isfinite(v)
    if kind == "bool":
        return isinstance(v, bool)
    if kind == "obj":
        return isinstance(v, dict)
    if kind == "list":
        return isinstance(v, list)
    if kind == "id":
        return isinstance(v, str) and len(v) <= 200 or is_int(v)
    return True  # any


_KIND_WORDS = {"str": "a string", "int": "an integer", "num": "a finite number", "bool": "true or false",
               "obj": "a JSON object", "list": "a JSON array", "id": "a string (≤ 200 chars) or an integer",
               "any": "any JSON value"}


def problem(name: str, value: Any, allowed: str) -> dict[str, Any]:
    """One field-level problem {"field", "value", "allowed"}; long values are shortened for the wire."""
    try:
        small = len(json.dumps(value, allow_nan=False)) <= 200
    except (TypeError, ValueError, RecursionError):
        small = False
    if not small:
        value = f"<{type(value).__name__}>" if isinstance(value, (dict, list)) else repr(value)[:80] + "…"
    return {"field": name, "value": value, "allowed": allowed}


def validate(header: dict[str, Any], side: str = "client") -> list[dict[str, Any]]:
    """Field-level problems of one message ([] = valid), each {"field", "value", "allowed"}.

    side="client" checks what a client may send (strict: unknown fields are problems);
    side="server" checks what a server sends (extra fields are allowed for forward compatibility)."""
    table = CLIENT_MESSAGES if side == "client" else SERVER_MESSAGES
    mtype = header.get("type")
    if mtype not in table:
        return [problem("type", mtype, "one of " + ", ".join(sorted(table)))]
    schema = {**_COMMON, **table[mtype]}
    problems = []
    for name, kind in schema.items():
        required = kind.endswith("!")
        kind = kind.rstrip("!")
        if name not in header:
            if required:
                problems.append(problem(name, None, "required: " + _KIND_WORDS[kind.lstrip("?")]))
            continue
        if not _kind_ok(kind, header[name]):
            words = _KIND_WORDS[kind.lstrip("?")] + (" or null" if kind.startswith("?") else "")
            problems.append(problem(name, header[name], words))
    if side == "client":
        problems += [problem(k, header[k], "not a field of " + mtype) for k in header if k not in schema]
        problems += _client_rules(mtype, header)
    return problems


def _client_rules(mtype: str, h: dict[str, Any]) -> list[dict[str, Any]]:
    """Checks beyond types: ids, ranges, which payloads are allowed."""
    out = []
    if "job_id" in h and isinstance(h["job_id"], str) and not _JOB_ID.match(h["job_id"]):
        out.append(problem("job_id", h["job_id"], "letters, digits, '_', '-', '.' (1-80 chars)"))
    for name in ("from_seq", "offset", "length"):
        if is_int(h.get(name)) and not 0 <= h[name] <= MAX_SAFE_INT:
            out.append(problem(name, h[name], "an integer in [0, 2^53 - 1]"))
    if mtype == "list_jobs" and is_int(h.get("limit")) and not 1 <= h["limit"] <= LIST_PAGE_MAX:
        out.append(problem("limit", h["limit"], f"an integer in [1, {LIST_PAGE_MAX}] (jobs per page)"))
    has_payload = is_int(h.get("payload_bytes")) and h["payload_bytes"] > 0
    if mtype == "estimate":
        if ("spec" in h) == ("preset" in h):
            out.append(problem("spec", h.get("spec"), "exactly one of spec (a full JobSpec) or preset"))
        if "overrides" in h and "preset" not in h:
            out.append(problem("overrides", h["overrides"], "only together with preset"))
        if isinstance(h.get("free_gb"), (int, float)) and not 0 < h["free_gb"] <= 1e6:
            out.append(problem("free_gb", h["free_gb"], "a number of GB in (0, 1000000]"))
    if mtype == "submit":
        if ("spec" in h) == ("preset" in h):
            out.append(problem("spec", h.get("spec"), "exactly one of spec (a full JobSpec) or preset"))
        if "overrides" in h and "preset" not in h:
            out.append(problem("overrides", h["overrides"], "only together with preset"))
        name = h.get("mesh_name")
        if has_payload and not _mesh_name_ok(name):
            out.append(problem("mesh_name", name, "a file name of at most " + str(MAX_NAME_CHARS) + " characters "
                                "ending in " + ", ".join(MESH_SUFFIXES) + ", with a name before the suffix "
                                "(e.g. chair.glb), when a mesh payload is sent"))
        if "mesh_name" in h and not has_payload:
            out.append(problem("payload_bytes", h.get("payload_bytes", 0), "> 0 (the mesh bytes) with mesh_name"))
    elif has_payload:
        out.append(problem("payload_bytes", h["payload_bytes"], "0: only submit carries a payload"))
    if mtype == "get_artifact" and isinstance(h.get("name"), str) and not 0 < len(h["name"]) <= MAX_ARTIFACT_NAME:
        out.append(problem("name", h["name"], f"an artifact name or a path inside the run folder, 1 to "
                                              f"{MAX_ARTIFACT_NAME} characters"))
    return out


def _mesh_name_ok(name: Any) -> bool:
    """A mesh upload's file name: a known suffix after a non-empty name ('.glb' alone is a hidden file
    with no suffix to the mesh loader), short enough for one path component."""
    if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME_CHARS:
        return False
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    stem, dot, suffix = base.rpartition(".")
    return bool(dot) and bool(stem.strip(". ")) and ("." + suffix).lower() in MESH_SUFFIXES
