"""Past jobs, read from the run folders on disk (so they survive Blender and engine restarts)."""
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from .job_state import JobView, history_state

STATUS_BY_EVENT = {"done": "done", "failed": "failed", "cancelled": "cancelled"}


@dataclass
class RunInfo:
    job_id: str
    run_dir: str
    prompt: str
    status: str
    mode: str
    created: float


def _last_status(events_path: Path) -> str:
    """The last terminal event in events.jsonl ('unfinished' when there is none)."""
    try:
        with open(events_path, "rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - 16384))
            tail = fh.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return "unknown"
    for line in reversed(tail):
        try:
            kind = json.loads(line).get("type")
        except (ValueError, AttributeError):
            continue
        if kind in STATUS_BY_EVENT:
            return STATUS_BY_EVENT[kind]
    return "unfinished"


def scan(runs_dir: Path, limit: int = 50) -> list:
    """RunInfo for every run folder with a spec.json, newest first."""
    runs = []
    try:
        candidates = [p for p in Path(runs_dir).iterdir() if (p / "spec.json").is_file()]
    except OSError:
        return []
    for run in candidates:
        try:
            spec = json.loads((run / "spec.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            spec = {}
        runs.append(RunInfo(job_id=run.name, run_dir=str(run), prompt=str(spec.get("prompt", "")),
                            status=_last_status(run / "events.jsonl"), mode=str(spec.get("mode", "text")),
                            created=(run / "spec.json").stat().st_mtime))
    runs.sort(key=lambda r: r.created, reverse=True)
    return runs[:limit]


PAGE = 50  # History rows per list_jobs page
_BY_STATE = {"done": "done", "failed": "failed", "cancelled": "cancelled"}  # others: not ended


def page_request(offset: int, protocol, limit: int = PAGE):
    """The list_jobs request for one History page (newest first); its reply is recognised by its id."""
    return protocol.list_jobs(offset=max(0, int(offset)), limit=limit, id=f"history:{max(0, int(offset))}")


def is_page_reply(frame) -> bool:
    return frame.type == "jobs" and str(frame.get("re", "")).startswith("history:")


def runs_from_page(frame) -> tuple:
    """(RunInfo list, offset, total, next_offset) from a list_jobs reply: the engine's own history,
    which also serves a remote engine whose run folders are not on this machine."""
    runs = [RunInfo(job_id=str(j.get("job_id", "")), run_dir=str(j.get("run_dir", "")),
                    prompt=str(j.get("prompt", "")), status=_BY_STATE.get(j.get("state"), "unfinished"),
                    mode=str(j.get("mode", "text")), created=float(j.get("created") or 0.0))
            for j in frame.get("jobs") or [] if isinstance(j, dict)]
    total = int(frame.get("total") or len(runs))
    return runs, int(frame.get("offset") or 0), total, frame.get("next_offset")


def result_meshes(run_dir: str) -> list:
    return [str(p) for p in sorted((Path(run_dir) / "result").glob("*.glb"))]


def delete_run(run_dir: str, runs_root: Path) -> None:
    """Remove a run folder, refusing anything outside the runs folder."""
    target = Path(run_dir).resolve()
    root = Path(runs_root).resolve()
    if root not in target.parents:
        raise ValueError(f"refusing to delete {target}: not inside the runs folder {root}")
    shutil.rmtree(target)


def fill(collection, runs: list, current: JobView | None = None) -> None:
    """Mirror RunInfo entries into a CollectionProperty of VSDREAM_PG_history_item; `state` speaks the
    panel's vocabulary (job_state.STATE_LABELS), live for the job being followed (`current`)."""
    current = current if current is not None else JobView()
    collection.clear()
    for r in runs:
        item = collection.add()
        item.job_id, item.run_dir, item.prompt = r.job_id, r.run_dir, r.prompt
        item.status, item.mode, item.created = r.status, r.mode, r.created
        item.state = history_state(r.status, r.job_id, current)
