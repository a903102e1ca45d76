"""Child process for uv.unwrap: runs xatlas on an .npz and writes the atlas to another .npz.

A separate process because xatlas cannot be interrupted from Python and has run for over an hour
on big meshes (threestudio#511); the parent kills us when the time bound passes. numpy + xatlas only.
"""
from __future__ import annotations

import sys

import numpy as np


def main(argv: list[str]) -> int:
    import xatlas
    src, dst = argv
    data = np.load(src)
    chart = xatlas.ChartOptions()
    chart.max_iterations = int(data["max_iterations"])  # 1 is far faster than the default and good enough
    pack = xatlas.PackOptions()
    pack.resolution = int(data["resolution"])
    pack.padding = int(data["padding"])
    atlas = xatlas.Atlas()
    atlas.add_mesh(data["vertices"].astype(np.float32), data["faces"].astype(np.uint32))
    atlas.generate(chart, pack)
    vmapping, indices, uvs = atlas[0]
    with open(dst, "wb") as fh:
        np.savez(fh, vmapping=vmapping.astype(np.int64), faces=indices.astype(np.int64), uvs=uvs.astype(np.float32))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
