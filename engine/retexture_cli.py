"""`vsdream retexture MESH --prompt …`: texture an existing mesh (stage 3 + export only).

The mesh is checked before a run folder is created, so a bad file gives one clear error and
leaves nothing behind. The result GLB keeps the input's coordinates, vertex order and UVs (when
it has them); `<out>/result/mesh_albedo.png` is the bare texture for swapping a material in place.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .cli_spec import SET_HELP, parse_set, report
from .errors import MeshInputError
from .mesh.mesh_io import DEFAULT_FACE_LIMIT, load_mesh
from .presets import DEFAULT_PRESET, PRESETS, make_spec
from .priors.registry import prior_syntax
from .run_cli import main as run_main
from .spec import SpecError


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="vsdream retexture", description="Re-texture a GLB/OBJ/PLY mesh.")
    ap.add_argument("mesh", type=Path, help="GLB, glTF, OBJ or PLY (as Blender exports them)")
    ap.add_argument("--prompt", required=True)
    ap.add_argument("--negative-prompt")
    ap.add_argument("--preset", default=DEFAULT_PRESET, choices=list(PRESETS),
                    help=f"settings to start from (default {DEFAULT_PRESET}, Stable Diffusion; cpu-smoke is the "
                         "analytic prior's test preset)")
    ap.add_argument("--prior", help=f"default: the preset's (sd for all but cpu-smoke); {prior_syntax()}")
    ap.add_argument("--seed", type=int)
    ap.add_argument("--device", help="auto | cpu | cuda[:N]")
    ap.add_argument("--decimate", action="store_true",
                    help=f"decimate meshes over {DEFAULT_FACE_LIMIT} faces instead of refusing them")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=SET_HELP)
    ap.add_argument("--out", type=Path, required=True, help="run folder to create")
    args = ap.parse_args(argv)
    try:
        overrides = parse_set(args.set)
        overrides.update(mode="retexture", input_mesh=str(args.mesh.resolve()), prompt=args.prompt,
                         input_mesh_decimate=bool(args.decimate))
        for key in ("prior", "negative_prompt", "seed", "device"):
            if getattr(args, key) is not None:
                overrides[key] = getattr(args, key)
        spec = make_spec(args.preset, overrides)
        load_mesh(spec.input_mesh, decimate=spec.input_mesh_decimate)  # fail before writing anything
    except SpecError as exc:
        return report(exc)
    except MeshInputError as exc:
        print(f"vsdream: {exc.code}: {exc}\nhint: {exc.hint}", file=sys.stderr)
        return 2
    # the run itself is an ordinary job: `vsdream run` with mode = retexture
    argv_run = ["--preset", args.preset, "--out", str(args.out), "--prompt", args.prompt]
    for key, value in spec.to_dict().items():
        if key in ("mode", "input_mesh", "input_mesh_decimate", "prior", "negative_prompt", "seed", "device"):
            argv_run += ["--set", f"{key}={json.dumps(value)}"]
    for item in args.set:
        argv_run += ["--set", item]
    return run_main(argv_run)
