"""The add-on's History pages through the engine's list_jobs (real bpy, a real remote server over TLS):
the engine's own history, newest first, one bounded page at a time (issue 25, finding 5)."""
from __future__ import annotations

import time

import pytest

bpy = pytest.importorskip("bpy")

from addon_helpers import ADDON, pump_until, remote_server  # noqa: E402

from server.bench_load import write_run  # noqa: E402

TOKEN = "history-pages-secret"


def test_history_pages_through_the_engines_job_list(tmp_path, addon):
    from blender_addon import history, preferences, pump
    runs = tmp_path / "server_runs"
    t = time.time() - 1000
    for i in range(120):
        write_run(runs, f"job-{i:03d}", prompt=f"prompt {i}", created=t + i)
    with remote_server(runs, TOKEN, tmp_path / "server.log", "--job-fn", "server.bench:preview_flood") as ready:
        prefs = bpy.context.preferences.addons[ADDON].preferences
        prefs.connection_mode, prefs.remote_host, prefs.remote_port = "REMOTE", "127.0.0.1", ready["port"]
        prefs.remote_token, prefs.remote_fingerprint = TOKEN, ready["fingerprint"]
        rt = bpy.context.window_manager.vsdream
        pump.SESSION.ensure_connected(preferences.connect_config())
        assert pump_until(lambda: pump.SESSION.connected, 30), rt.engine_message
        pump.refresh_history()
        assert pump_until(lambda: rt.history_total == 120, 20)
        assert [h.job_id for h in rt.history][:2] == ["job-119", "job-118"] and len(rt.history) == history.PAGE
        assert rt.history[0].state and rt.history[0].prompt == "prompt 119" and rt.history_more
        pump.history_page(older=True)
        assert pump_until(lambda: rt.history_offset == history.PAGE, 20)
        assert rt.history[0].job_id == f"job-{119 - history.PAGE:03d}"
        pump.history_page(older=True)
        assert pump_until(lambda: rt.history_offset == 2 * history.PAGE, 20)
        assert len(rt.history) == 120 - 2 * history.PAGE and not rt.history_more
        assert rt.history[-1].job_id == "job-000"
        pump.SESSION.disconnect(stop_engine=False)
