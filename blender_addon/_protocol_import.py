"""The wire protocol module (and its TLS pinning client), from wherever this copy of the add-on can see them.

build_addon.py copies the server/protocol/ package and server/tls_pin.py into the zip as
<addon>/protocol/ and <addon>/tls_pin.py, so an installed add-on imports its bundled copies. A source checkout has
no copy (one file, one owner): there the repository's server/ modules are used, found through
sys.path or the folder above the add-on.
"""
import importlib
import sys
from pathlib import Path


def _load(name: str):
    try:
        return importlib.import_module(f".{name}", __package__)
    except ImportError:
        pass
    repo = str(Path(__file__).resolve().parent.parent)
    try:
        return importlib.import_module(f"server.{name}")
    except ImportError:
        if repo not in sys.path:
            sys.path.append(repo)
        return importlib.import_module(f"server.{name}")


protocol = _load("protocol")
tls_pin = _load("tls_pin")
