"""The one persistent bpy.app.timers function: drains the session inbox on the main thread.

It never raises (a timer that raises is silently unregistered), coalesces preview frames
(latest wins), imports results when a job finishes, mirrors the session into the WindowManager
properties and redraws only when something changed. Tests and the headless demo call `tick()`
directly, because timers do not fire under the bpy module.
"""
import queue
import threading
import time
import traceback
from pathlib import Path

import bpy
from bpy.app.handlers import persistent

from . import glb_mesh, history, importer, panorama_result, paths, preferences, preview, result_texture
from ._protocol_import import protocol
from .job_state import apply_frame
from .session import SESSION

INTERVAL_S = 0.1
CLOCK_S = 1.0  # while a job runs the progress line (ETA) refreshes at least this often
MAX_ITEMS_PER_TICK = 500
_hooks = []  # callables(kind, data) run for every inbox item (used by set-up / check operators)
_force_sync = True
_last_sync = 0.0
_history_for = ("", "NONE")  # (job id, state) the History list was last filled for
_history_offset = 0  # the History page shown (jobs skipped from the newest), when connected


def on_item(hook):
    """Register a handler for non-frame inbox items such as ('setup_line', text)."""
    _hooks.append(hook)
    return hook


def tick():
    """Timer entry point: always returns the interval."""
    try:
        drain()
    except Exception:  # noqa: BLE001 - keep pumping whatever happens; the console gets the details
        traceback.print_exc()
    return INTERVAL_S


def drain(context=None) -> set:
    """Process everything waiting in the inbox; returns the set of what changed."""
    global _force_sync, _last_sync
    context = context or bpy.context
    changed, latest_preview, terminal = set(), None, False
    for _ in range(min(MAX_ITEMS_PER_TICK, SESSION.inbox.qsize())):  # items queued meanwhile: next tick
        try:
            kind, data = SESSION.inbox.get_nowait()
        except queue.Empty:
            break
        if kind == "frame" and history.is_page_reply(data):
            _fill_history(*history.runs_from_page(data))
            changed.add("job")
        elif kind == "frame":
            what = apply_frame(SESSION.job, SESSION.engine_view, data)
            if "preview" in what:
                latest_preview = data
            if data.type == "artifact_data":
                _save_download(data)
            terminal |= "terminal" in what
            changed |= what
        elif kind == "connected":
            if SESSION.on_connected(*data):
                changed.add("engine")
        elif kind == "connect_failed":
            if SESSION.on_connect_failed(*data):
                changed |= {"engine", "job"}
        elif kind == "disconnected":
            SESSION.on_lost(data)
            changed |= {"engine", "job"}
        elif kind == "import_ready":
            job, sources = data
            if isinstance(sources, Exception):
                job.error_code, job.error_message = "import_failed", f"reading the result failed: {sources}"
                job.state = "DONE" if job.state == "IMPORTING" else job.state
            else:
                _import_now(context, job, sources)
            changed.add("job")
        elif kind == "send_failed":
            SESSION.job.error_message = data
            changed.add("job")
        for hook in _hooks:
            if hook(kind, data):
                changed.add("ui")
    if SESSION.check_engine_process():
        changed |= {"engine", "job"}
    if SESSION.check_stalled(float(getattr(preferences.get(context), "stall_after", 30.0))):
        changed.add("engine")
    if latest_preview is not None:
        _show_preview(latest_preview)
    if terminal:
        _finish_job(context)
    if terminal or (SESSION.job.job_id, SESSION.job.state) != _history_for:  # History shows the live state
        refresh_history(context)
        changed.add("job")
    if changed or _force_sync or (SESSION.job.active and time.monotonic() - _last_sync >= CLOCK_S):
        _force_sync, _last_sync = False, time.monotonic()
        sync_runtime()
        redraw(context)
    return changed


def _show_preview(frame) -> None:
    from ._protocol_import import protocol
    try:
        width, height, rgb, _normal = protocol.preview_images(frame)
        preview.show_frame(rgb, width, height)
    except (ValueError, KeyError) as exc:  # skip the frame; a real error message wins
        print(f"VSDream: bad preview frame skipped: {exc}")


def _finish_job(context) -> None:
    """Import a finished job's meshes, or swap the re-textured material in place."""
    job = SESSION.job
    if job.state != "DONE" or not job.auto_import or job.imported:
        return
    meshes = job.result_meshes()
    # a scene job's panorama comes along from a remote engine, for 'Use as World background'
    panoramas = [p for n, p in job.artifacts.items() if panorama_result.is_panorama_name(n)] if SESSION.remote else []
    missing = [m for m in meshes + panoramas if SESSION.remote and m not in _downloaded or not Path(m).is_file()]
    if missing and SESSION.connected:  # remote engine: fetch the files, finish when they arrive
        _request_downloads(missing)
        return
    if not meshes:
        job.error_message = f"the job finished but left no GLB in {job.run_dir}/result"
        return
    target = bpy.data.objects.get(job.target_object) if job.target_object else None
    if job.mode == "retexture" and target is not None:  # only the texture: a few ms, whatever the mesh size
        _import_now(context, job, meshes)
        return
    job.state = "IMPORTING"  # 'Done' once the objects are in the scene
    read_in_background(job, meshes)


def read_in_background(job, meshes: list) -> None:
    """Read the result GLBs in a worker thread; the pump builds the objects when they are ready."""
    def work():
        sources = []
        for path in meshes:
            try:
                sources.append(glb_mesh.read(path))
            except glb_mesh.NotEngineGlb:
                sources.append(path)  # Blender's own importer, on the main thread
            except Exception as exc:  # noqa: BLE001 - reported through the job, never lost
                SESSION.inbox.put(("import_ready", (job, exc)))
                return
        SESSION.inbox.put(("import_ready", (job, sources)))
    threading.Thread(target=work, name="vsdream-read-result", daemon=True).start()


def _import_now(context, job, sources: list) -> None:
    try:
        import_job_meshes(context, job, sources)
    except Exception as exc:  # noqa: BLE001 - a broken file must not kill the pump
        job.error_code, job.error_message = "import_failed", f"importing the result failed: {exc}"
        traceback.print_exc()
    if job.state == "IMPORTING":
        job.state = "DONE"


def import_job_meshes(context, job, meshes: list) -> list:
    """Swap the material (re-texture) or import the meshes (text mode, or a re-texture result whose
    object is gone: the GLB keeps the object's coordinates, so it lands in place). Marks the job."""
    target = bpy.data.objects.get(job.target_object) if job.target_object else None
    if job.mode == "retexture" and target is not None:  # only the texture: a few ms, whatever the mesh size
        image = result_texture.extract_base_color(meshes[0], Path(meshes[0]).parent)
        mat = result_texture.apply_texture(target, image, job.uv_map)
        job.imported, job.imported_names = True, [target.name]
        return [mat]
    size = float(getattr(getattr(context.scene, "vsdream", None), "size", 1.0))
    info = {"job_id": job.job_id, "prompt": job.prompt, "seed": job.seed, "run_dir": job.run_dir}
    in_place = job.mode == "retexture"
    objs = importer.import_results(context, meshes, info, size=1.0 if in_place else size, at_cursor=not in_place)
    job.imported, job.imported_names = True, [o.name for o in objs]
    return objs


_downloads = {}  # artifact name -> local path being written
_downloaded = set()  # local paths of finished downloads


def _request_downloads(missing: list) -> None:
    """Ask a remote engine for the result files, in chunks (MAX_PAYLOAD caps one frame)."""
    from ._protocol_import import protocol
    job = SESSION.job
    local_dir = paths.output_dir(preferences.get()) / "downloads" / job.job_id
    local_dir.mkdir(parents=True, exist_ok=True)
    for path in missing:
        name = next((n for n, p in job.artifacts.items() if p == path), Path(path).name)
        _downloads[name] = local_dir / Path(name).name
        _downloads[name].write_bytes(b"")
        SESSION.send(protocol.get_artifact(job.job_id, name, offset=0, length=DOWNLOAD_CHUNK))


DOWNLOAD_CHUNK = 32 << 20


def _save_download(frame) -> None:
    """Write one artifact_data chunk; ask for the next, or import once every file is complete."""
    import hashlib

    from ._protocol_import import protocol
    name = frame.get("name")
    target = _downloads.get(name)
    if target is None:
        return
    if hashlib.sha256(frame.payload).hexdigest() != frame.get("sha256"):
        SESSION.job.error_message = f"download of {name} was corrupted; use 'Import' from the history to retry"
        del _downloads[name]
        return
    offset = int(frame.get("offset", 0))
    with open(target, "r+b") as fh:
        fh.seek(offset)
        fh.write(frame.payload)
    end, size = offset + len(frame.payload), int(frame.get("size", 0))
    if end < size and frame.payload:
        SESSION.send(protocol.get_artifact(SESSION.job.job_id, name, offset=end, length=DOWNLOAD_CHUNK))
        return
    SESSION.job.artifacts[name] = str(target)
    _downloaded.add(str(target))
    del _downloads[name]
    if not _downloads:
        _finish_job(bpy.context)


def sync_runtime() -> None:
    """Mirror the session's views into every window manager's VSDream properties."""
    job, ev = SESSION.job, SESSION.engine_view
    for wm in bpy.data.window_managers:
        rt = getattr(wm, "vsdream", None)
        if rt is None:
            continue
        rt.engine_state, rt.engine_message, rt.engine_version = ev.state, ev.message[:1000], ev.version
        rt.log_path = ev.log_path
        rt.job_id, rt.job_state, rt.job_mode = job.job_id, job.state, job.mode
        rt.queue_position, rt.stage, rt.step, rt.total = job.queue_position, job.stage, job.step, job.total
        rt.eta_s, rt.it_per_s, rt.progress = job.eta_now(), job.it_per_s, job.progress
        rt.error_code, rt.error_message, rt.error_hint = job.error_code, job.error_message[:2000], job.error_hint
        rt.preview_frames, rt.preview_caption = job.preview_frames, job.preview_caption
        rt.warnings = "\n".join(job.warnings)[:2000]
        rt.imported = ", ".join(job.imported_names)


def refresh(context=None) -> None:
    """Show session changes an operator just made (without waiting for the next tick)."""
    sync_runtime()
    redraw(context)


def refresh_history(context=None) -> None:
    """Connected: ask the engine for the History page shown (list_jobs, newest first; the reply fills
    the list); otherwise read the newest run folders on disk."""
    global _history_for
    _history_for = (SESSION.job.job_id, SESSION.job.state)
    if SESSION.connected:
        SESSION.send(history.page_request(_history_offset, protocol))
        return
    runs = history.scan(paths.output_dir(preferences.get(context)), limit=history.PAGE)
    _fill_history(runs, 0, len(runs), None)


def history_page(older: bool, context=None) -> None:
    """Show the next older (or newer) page of the engine's job history."""
    global _history_offset
    _history_offset = max(0, _history_offset + (history.PAGE if older else -history.PAGE))
    refresh_history(context)


def _fill_history(runs: list, offset: int, total: int, next_offset) -> None:
    for wm in bpy.data.window_managers:
        rt = getattr(wm, "vsdream", None)
        if rt is not None:
            history.fill(rt.history, runs, SESSION.job)
            rt.history_offset, rt.history_total = offset, total
            rt.history_more = next_offset is not None


def redraw(context=None) -> None:
    wm = getattr(context or bpy.context, "window_manager", None)
    for window in getattr(wm, "windows", []):
        for area in window.screen.areas:
            if area.type in ("VIEW_3D", "PREFERENCES", "IMAGE_EDITOR"):
                area.tag_redraw()


def run_until(predicate, timeout_s: float, context=None, interval_s: float = 0.05) -> bool:
    """Headless helper (tests, demo): pump until predicate() or timeout; True when it held."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        drain(context)
        if predicate():
            return True
        time.sleep(interval_s)
    drain(context)
    return bool(predicate())


@persistent
def on_load_post(_dummy=None):
    """A new file brings a fresh window manager: show the session's state again."""
    global _force_sync
    _force_sync = True
    try:
        refresh_history()
        sync_runtime()
    except Exception:  # noqa: BLE001 - a load handler that raises would break file loading
        traceback.print_exc()


def start() -> None:
    if not bpy.app.timers.is_registered(tick):
        bpy.app.timers.register(tick, first_interval=INTERVAL_S, persistent=True)
    if on_load_post not in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.append(on_load_post)


def stop() -> None:
    if bpy.app.timers.is_registered(tick):
        bpy.app.timers.unregister(tick)
    if on_load_post in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.remove(on_load_post)
