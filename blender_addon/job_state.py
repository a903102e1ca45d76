"""What the panel shows about the engine and the current job, updated from protocol frames.

Pure Python (no bpy): the pump mirrors it into WindowManager properties, so a file load that
replaces the window manager loses nothing.
"""
import time
from dataclasses import dataclass, field
from pathlib import Path

# one vocabulary for the panel and the History list: the job states and what the user reads
STATE_LABELS = {"NONE": "No job", "SUBMITTING": "Sending", "QUEUED": "Queued", "RUNNING": "Running",
                "CANCELLING": "Stopping", "IMPORTING": "Importing", "DONE": "Done", "FAILED": "Failed", "CANCELLED": "Stopped"}
# a run folder's last terminal event (history.py) → job state; no terminal event = interrupted
HISTORY_STATES = {"done": "DONE", "failed": "FAILED", "cancelled": "CANCELLED", "unfinished": "CANCELLED"}
RESUMABLE = ("FAILED", "CANCELLED")  # a checkpoint may be kept: Resume continues from it


def state_label(state: str) -> str:
    return STATE_LABELS.get(state, state.title())


def history_state(status: str, job_id: str, current: "JobView") -> str:
    """The state History shows for a run folder: the live state when it is the job being followed."""
    if job_id and job_id == current.job_id and current.state != "NONE":
        return current.state
    return HISTORY_STATES.get(status, "UNKNOWN")


@dataclass
class JobView:
    job_id: str = ""
    state: str = "NONE"  # properties.JOB_STATES
    mode: str = "text"
    prompt: str = ""
    seed: int = 0
    run_dir: str = ""
    queue_position: int = 0
    stage: str = ""
    step: int = 0
    total: int = 0
    eta_s: float = 0.0
    it_per_s: float = 0.0
    progress_at: float = 0.0  # time.monotonic() of the last progress event (the ETA counts down from it)
    error_code: str = ""
    error_message: str = ""
    error_hint: str = ""
    last_seq: int = 0
    preview_frames: int = 0
    preview_caption: str = ""
    artifacts: dict = field(default_factory=dict)  # name -> absolute path (local engine) or name
    result: dict = field(default_factory=dict)
    target_object: str = ""  # re-texture: the object whose material gets swapped
    uv_map: str = ""  # re-texture: the object's UV map the texture was baked into
    pending_request: dict | None = None  # re-texture: the request while its GLB is being written
    auto_import: bool = True
    imported: bool = False
    imported_names: list = field(default_factory=list)
    warnings: list = field(default_factory=list)  # the engine's warning logs for this job (e.g. a flat texture)

    @property
    def active(self) -> bool:
        return self.state in ("SUBMITTING", "QUEUED", "RUNNING", "CANCELLING")

    @property
    def progress(self) -> float:
        return min(1.0, self.step / self.total) if self.total else 0.0

    @property
    def resumable(self) -> bool:
        return self.state in RESUMABLE and bool(self.job_id)

    def eta_now(self, now: float | None = None) -> float:
        """The last ETA minus the time since it came, while the job runs; 0 once it ended."""
        if not self.active or self.eta_s <= 0:
            return 0.0
        return max(0.0, self.eta_s - ((time.monotonic() if now is None else now) - self.progress_at))

    def end(self, state: str) -> None:
        """A terminal state: the ETA and rate of a job that no longer runs are cleared."""
        self.state, self.eta_s, self.it_per_s = state, 0.0, 0.0

    def fail(self, code: str, message: str, hint: str = "") -> None:
        self.end("FAILED")
        self.error_code, self.error_message, self.error_hint = code, message, hint

    def result_meshes(self) -> list:
        """GLB files of the result, one per particle, in name order (artifacts, else result/ on disk)."""
        glbs = sorted(p for n, p in self.artifacts.items() if n.lower().endswith(".glb"))
        if not glbs and self.run_dir:
            glbs = [str(p) for p in sorted((Path(self.run_dir) / "result").glob("*.glb"))]
        return glbs


@dataclass
class EngineView:
    state: str = "OFFLINE"  # properties.ENGINE_STATES
    message: str = ""
    version: str = ""
    log_path: str = ""
    last_rx: float = 0.0
    running: list = field(default_factory=list)
    queued: int = 0


def apply_frame(job: JobView, engine: EngineView, frame) -> set:
    """Fold one server frame into the views; returns what changed: 'engine', 'job', 'preview',
    'terminal' (job just finished), 'error'."""
    engine.last_rx = time.monotonic()
    h = frame.header
    t = frame.type
    changed = set()
    if engine.state == "STALLED":
        engine.state = "BUSY" if engine.running else "READY"
        engine.message = "the engine answers again"
        changed.add("engine")
    if t == "heartbeat":
        running, queued = list(h.get("running") or []), int(h.get("queued") or 0)
        state = "BUSY" if running or queued else "READY"
        if (state, running, queued) != (engine.state, engine.running, engine.queued):
            engine.state, engine.running, engine.queued = state, running, queued
            changed.add("engine")
        return changed
    if t == "welcome":
        engine.state, engine.version = "READY", str(h.get("version", ""))
        engine.message = f"engine {engine.version} on {', '.join(map(str, h.get('devices') or [])) or 'cpu'}"
        return {"engine"}
    if t == "error":
        changed |= _apply_error(job, h)
        return changed
    if t == "accepted":
        if job.state in ("SUBMITTING", "NONE") or job.job_id in ("", h.get("job_id")):
            job.job_id, job.run_dir = h["job_id"], h.get("run_dir", "")
            job.queue_position = int(h.get("position", 0))
            job.state = "QUEUED"
            return {"job"}
        return set()
    if t == "attached":
        if h.get("job_id") == job.job_id:
            state = str(h.get("state", ""))
            job.state = {"queued": "QUEUED", "running": "RUNNING"}.get(state, job.state)
            return {"job"}
        return set()
    if t == "ack":
        if h.get("what") == "cancel" and h.get("job_id") == job.job_id and job.active:
            job.state = "CANCELLING"
            return {"job"}
        return set()
    if h.get("job_id") != job.job_id or not job.job_id:
        return set()
    seq = h.get("seq")
    if isinstance(seq, int):
        job.last_seq = max(job.last_seq, seq)
    if t == "queued":
        job.queue_position = int(h.get("position", job.queue_position))
        job.state = "QUEUED"
    elif t == "started":
        job.state = "RUNNING" if job.state != "CANCELLING" else job.state
    elif t == "stage":
        job.stage, job.total, job.step = h["stage"], int(h["total"]), int(h.get("resumed_from", 0))
        job.state = "RUNNING" if job.state != "CANCELLING" else job.state
    elif t == "progress":
        job.stage, job.step, job.total = h["stage"], int(h["step"]), int(h["total"])
        job.eta_s, job.it_per_s = float(h.get("eta_s") or 0.0), float(h.get("it_per_s") or 0.0)
        job.progress_at = time.monotonic()
        if job.state in ("QUEUED", "SUBMITTING"):
            job.state = "RUNNING"
    elif t == "preview":
        job.preview_frames += 1
        job.preview_caption = f"{h['stage']} step {h['step']}"
        changed.add("preview")
    elif t == "artifact":
        path = Path(str(h["path"]))
        if not path.is_absolute() and job.run_dir:
            path = Path(job.run_dir) / path
        job.artifacts[str(h["name"])] = str(path)
    elif t == "log":
        message = str(h.get("message") or "")
        if h.get("level") == "warning" and message and message not in job.warnings and len(job.warnings) < 5:
            job.warnings.append(message)
            changed.add("job")
        return changed
    elif t == "done":
        job.end("DONE")
        job.result = dict(h.get("result") or {})
        changed.add("terminal")
    elif t == "failed":
        tail = str(h.get("log_tail") or "").strip().splitlines()[-3:]
        job.fail(str(h["code"]), str(h["message"]) + ("\n" + "\n".join(tail) if tail else ""),
                 str(h.get("hint") or ""))
        changed |= {"terminal", "error"}
    elif t == "cancelled":
        job.end("CANCELLED")
        job.stage = str(h.get("stage") or job.stage)
        job.step = int(h.get("step") or job.step)
        changed.add("terminal")
    changed.add("job")
    return changed


def _apply_error(job: JobView, h: dict) -> set:
    """An error reply: it fails the job while it is being submitted or names it explicitly."""
    problems = h.get("problems") or []
    detail = "; ".join(f"{p.get('field')}: {p.get('allowed')}" for p in problems[:6] if isinstance(p, dict))
    message = str(h.get("message", "")) + (f" ({detail})" if detail else "")
    if job.state == "SUBMITTING" or (h.get("job_id") and h.get("job_id") == job.job_id):
        job.fail(str(h.get("code", "error")), message, str(h.get("hint", "")))
        return {"job", "error", "terminal"}
    job.error_code, job.error_message, job.error_hint = str(h.get("code", "error")), message, str(h.get("hint", ""))
    return {"error"}
