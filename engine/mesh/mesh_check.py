"""`python -m engine.mesh.mesh_check PATH [--face-limit N]`: the re-texture loader's verdict on a file, as
one JSON line, in a process of its own.

The server asks this before it creates a run folder for an uploaded mesh, so a bad file is refused at
submit with the same words `vsdream retexture` uses, while the loader's memory (a 256 MiB mesh can
take gigabytes as arrays) is the child's and is gone when it exits, and the server never imports
trimesh. The verdict is {"ok": true, "faces": N} or {"ok": false, "message", "hint"}; never a traceback.
"""
from __future__ import annotations

import argparse
import json
import sys

from ..errors import MeshInputError
from .mesh_io import DEFAULT_FACE_LIMIT, load_mesh


def verdict(path: str, face_limit: int = DEFAULT_FACE_LIMIT) -> dict:
    """The loader's answer for `path` as plain data (any failure of the loader is the mesh's problem)."""
    try:
        loaded = load_mesh(path, face_limit=face_limit)
    except MeshInputError as exc:
        return {"ok": False, "message": str(exc), "hint": exc.hint}
    except (MemoryError, RecursionError, ValueError, OSError) as exc:
        return {"ok": False, "message": f"input_mesh {path!r} could not be read ({type(exc).__name__})",
                "hint": MeshInputError.hint}
    return {"ok": True, "faces": int(loaded.mesh.faces.shape[0])}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m engine.mesh.mesh_check")
    ap.add_argument("path")
    ap.add_argument("--face-limit", type=int, default=DEFAULT_FACE_LIMIT)
    args = ap.parse_args(argv)
    print(json.dumps(verdict(args.path, args.face_limit)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
