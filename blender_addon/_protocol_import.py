"""The wire protocol module, from wherever this copy of the add-on can see it.

build_addon.py copies server/protocol.py into the zip as <addon>/protocol.py, so an installed
add-on imports its bundled copy. A source checkout has no copy (one file, one owner): there the
repository's server/protocol.py is used, found through sys.path or the folder above the add-on.
"""
import importlib
import sys
from pathlib import Path


def _load():
    try:
        return importlib.import_module(".protocol", __package__)
    except ImportError:
        pass
    repo = str(Path(__file__).resolve().parent.parent)
    try:
        return importlib.import_module("server.protocol")
    except ImportError:
        if repo not in sys.path:
            sys.path.append(repo)
        return importlib.import_module("server.protocol")


protocol = _load()
