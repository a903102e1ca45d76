"""`vsdream` command line. Sub-commands live in their own modules; each exposes main(argv) -> int."""
from __future__ import annotations

import importlib
import sys

# sub-command -> "module:function"; the function takes the remaining argv and returns an exit code
COMMANDS: dict[str, str] = {
    "run": "engine.run_cli:main",
    "fit": "engine.fit_cli:main",
    "retexture": "engine.retexture_cli:main",
    "export": "engine.export_cli:main",
    "serve": "server.__main__:main",
    "models": "engine.models_cli:main",
}
BENCHES: dict[str, str] = {
    "quality": "engine.bench.quality:main",
    "step": "engine.bench.step:main",
    "mesh": "engine.bench.mesh:main",
    "server": "server.bench:main",
    "upload": "server.bench_upload:main",
    "fuzz": "server.fuzz:main",
    "render": "engine.render.speed:main",
    "memory": "engine.bench.memory:main",
    "learned": "engine.bench.learned:main",
}

USAGE = """usage: vsdream <command> [options]

commands:
  run        run a job (all stages of a preset) into an output folder
  fit        will a job fit this device: estimated peak memory and time, settings that fit
  retexture  re-texture an existing mesh with a prompt
  export     re-export meshes from a run folder's checkpoint
  serve      start the engine server (same as python -m server)
  models     fetch or list diffusion model weights
  bench      quality | step | mesh | server | render | memory | learned benchmarks (print figures)
"""


def _call(target: str, argv: list[str]) -> int:
    module, func = target.split(":")
    from .spec import SpecError
    try:
        return int(getattr(importlib.import_module(module), func)(argv) or 0)
    except SpecError as exc:  # a sub-command that let a spec problem through: still a message, not a traceback
        print(f"vsdream: {exc}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    cmd, rest = argv[0], argv[1:]
    if cmd == "bench":
        if not rest or rest[0] not in BENCHES:
            print("usage: vsdream bench {" + ",".join(BENCHES) + "} [options]", file=sys.stderr)
            return 2
        return _call(BENCHES[rest[0]], rest[1:])
    if cmd not in COMMANDS:
        print(f"vsdream: unknown command {cmd!r}\n\n{USAGE}", file=sys.stderr)
        return 2
    return _call(COMMANDS[cmd], rest)


if __name__ == "__main__":
    sys.exit(main())
