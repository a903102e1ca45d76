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
    vertices, faces, groups = data["vertices"].astype(np.float32), data["faces"].astype(np.int64), data["groups"]
    chart = xatlas.ChartOptions()
    chart.max_iterations = int(data["max_iterations"])  # 1 is far faster than the default and good enough
    pack = xatlas.PackOptions()
    pack.resolution = int(data["resolution"])
    pack.padding = int(data["padding"])
    atlas = xatlas.Atlas()
    pieces = []
    for g in np.unique(groups):  # charting cost grows faster than linearly: unwrap pieces, pack together
        sel = np.nonzero(groups == g)[0]
        used, local = np.unique(faces[sel], return_inverse=True)
        atlas.add_mesh(vertices[used], local.reshape(-1, 3).astype(np.uint32))
        pieces.append((sel, used))
    atlas.generate(chart, pack)
    out_faces = np.zeros_like(faces)
    vmapping, uvs, offset = [], [], 0
    for k, (sel, used) in enumerate(pieces):
        vm, idx, uv = atlas[k]
        out_faces[sel] = idx.astype(np.int64) + offset
        vmapping.append(used[vm])
        uvs.append(uv)
        offset += len(vm)
    with open(dst, "wb") as fh:
        np.savez(fh, vmapping=np.concatenate(vmapping).astype(np.int64), faces=out_faces,
                 uvs=np.concatenate(uvs).astype(np.float32))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
