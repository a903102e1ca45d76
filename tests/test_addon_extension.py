"""The built extension zip validates, installs headless into an isolated user folder and enables.

The install runs in a fresh bpy subprocess because BLENDER_USER_RESOURCES must be set before bpy
is imported. Inside, the installed copy also starts the engine from its bundled backend.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import zipfile

import pytest

pytest.importorskip("bpy")

import addon_helpers  # noqa: E402,F401

import build_addon  # noqa: E402

SCENARIO = textwrap.dedent(r'''
    import json, sys, time
    import bpy
    zip_path = sys.argv[-1]
    out = {"user_extensions": bpy.utils.user_resource("EXTENSIONS")}
    out["install"] = sorted(bpy.ops.extensions.package_install_files(
        repo="user_default", filepath=zip_path, enable_on_install=True))
    name = "bl_ext.user_default.vsdream"
    out["enabled"] = name in bpy.context.preferences.addons
    out["scene_props"] = hasattr(bpy.types.Scene, "vsdream")
    mods = sys.modules
    out["protocol_file"] = mods[name + "._protocol_import"].protocol.__file__
    out["tls_pin_file"] = mods[name + "._protocol_import"].tls_pin.__file__
    out["tls_pin_protocol"] = mods[name + "._protocol_import"].tls_pin.protocol.__file__
    out["user_dir"] = str(mods[name + ".paths"].user_dir())
    prefs = bpy.context.preferences.addons[name].preferences
    prefs.engine_python = sys.executable
    bpy.ops.vsdream.check_engine(wait=True)
    out["check"] = bpy.context.window_manager.vsdream.check_report
    bpy.ops.vsdream.start_engine()
    pump, session = mods[name + ".pump"], mods[name + ".session"]
    out["ready"] = pump.run_until(lambda: session.SESSION.engine_view.state in ("READY", "ERROR"), 60)
    out["engine_state"] = bpy.context.window_manager.vsdream.engine_state
    out["engine_message"] = bpy.context.window_manager.vsdream.engine_message
    out["engine_cmd"] = " ".join(session.SESSION.engine.command()) if session.SESSION.engine else ""
    out["engine_pythonpath"] = (session.SESSION.engine.environment().get("PYTHONPATH", "")
                                if session.SESSION.engine else "")
    bpy.ops.vsdream.stop_engine()
    out["after_stop"] = bpy.context.window_manager.vsdream.engine_state
    print("RESULT " + json.dumps(out))
''')


def test_zip_builds_validates_installs_and_enables(tmp_path):
    zip_path = build_addon.build(out_dir=tmp_path / "dist", work=tmp_path / "build")  # validates too
    assert zip_path.name == f"vsdream-{build_addon.manifest_version()}.zip"
    names = set(zipfile.ZipFile(zip_path).namelist())
    protocol_files = sorted(f"protocol/{f.name}" for f in (addon_helpers.ROOT / "server/protocol").glob("*.py"))
    assert len(protocol_files) >= 5  # the package and its modules (framing, validation, messages, channel)
    assert {"blender_manifest.toml", "__init__.py", "tls_pin.py", "backend/requirements.txt", *protocol_files,
            "backend/engine/spec.py", "backend/server/__main__.py", "backend/pyproject.toml"} <= names
    assert not any("__pycache__" in n for n in names)
    # the zip's protocol/ is the server's package, byte for byte (one source of truth)
    for name in protocol_files:
        assert zipfile.ZipFile(zip_path).read(name) == (addon_helpers.ROOT / "server" / name).read_bytes(), name
    assert zipfile.ZipFile(zip_path).read("tls_pin.py") == (addon_helpers.ROOT / "server/tls_pin.py").read_bytes()

    script = tmp_path / "scenario.py"
    script.write_text(SCENARIO)
    user = tmp_path / "blender_user"
    env = {**os.environ, "BLENDER_USER_RESOURCES": str(user)}
    env.pop("VSDREAM_USER_DIR", None)
    env.pop("PYTHONPATH", None)
    proc = subprocess.run([sys.executable, str(script), str(zip_path)], capture_output=True, text=True,
                          env=env, timeout=240, cwd=tmp_path)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = json.loads(lines[-1][len("RESULT "):])
    assert out["install"] == ["FINISHED"] and out["enabled"] and out["scene_props"]
    assert out["user_extensions"].startswith(str(user))
    # the bundled protocol copy is the one in use, and files go to the extension's user folder
    assert out["protocol_file"].startswith(str(user / "extensions" / "user_default" / "vsdream"))
    assert out["tls_pin_file"].startswith(str(user / "extensions" / "user_default" / "vsdream"))
    assert out["tls_pin_protocol"] == out["protocol_file"]  # the pinned client frames with the bundled protocol
    assert out["user_dir"] == str(user / "extensions" / ".user" / "user_default" / "vsdream")
    # the engine code comes from the bundled backend
    bundled = str(user / "extensions" / "user_default" / "vsdream" / "backend")
    assert "torch 2." in out["check"] and bundled + "/engine" in out["check"], out["check"]
    assert out["ready"] and out["engine_state"] == "READY", out["engine_message"]
    assert out["engine_pythonpath"].split(os.pathsep)[0] == bundled
    assert out["after_stop"] == "OFFLINE"
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
