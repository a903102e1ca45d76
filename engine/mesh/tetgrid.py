"""A regular cube grid split into tetrahedra (Kuhn/Freudenthal: 6 tets per cube around its diagonal).

Every cube uses the same split, so neighbouring cubes share face diagonals and the tet mesh is
conforming: marching tets on it gives a watertight surface. Tets are only materialised for cubes
whose corners disagree in sign, so a 256³ grid costs memory in proportion to its surface, not
its volume.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch


def _kuhn_tets() -> torch.Tensor:
    """(6, 4, 3) corner offsets of the 6 positively oriented tets of the unit cube."""
    tets = []
    for perm in itertools.permutations(range(3)):
        corner = [0, 0, 0]
        verts = [tuple(corner)]
        for axis in perm:
            corner[axis] = 1
            verts.append(tuple(corner))
        t = torch.tensor(verts, dtype=torch.float64)
        if torch.linalg.det(t[1:] - t[0]) < 0:  # make every tet positively oriented
            verts[2], verts[3] = verts[3], verts[2]
        tets.append(verts)
    return torch.tensor(tets, dtype=torch.long)


KUHN_OFFSETS = _kuhn_tets()


@dataclass
class TetGrid:
    """`resolution` cubes per axis spanning [bbox_min, bbox_max]; (R+1)³ vertices, x-major order."""

    resolution: int
    bbox_min: torch.Tensor  # (3,)
    bbox_max: torch.Tensor  # (3,)

    @classmethod
    def cube(cls, resolution: int, half_extent: float = 1.0, device: torch.device | str = "cpu") -> TetGrid:
        h = torch.full((3,), float(half_extent), device=device)
        return cls(resolution, -h, h)

    @property
    def device(self) -> torch.device:
        return self.bbox_min.device

    @property
    def num_vertices(self) -> int:
        return (self.resolution + 1) ** 3

    @property
    def cell_size(self) -> torch.Tensor:
        return (self.bbox_max - self.bbox_min) / self.resolution

    def vertices(self) -> torch.Tensor:
        """(N, 3) float32 grid positions; index = (i·(R+1) + j)·(R+1) + k for x=i, y=j, z=k."""
        n = self.resolution + 1
        idx = torch.arange(n, device=self.device, dtype=torch.float32)
        ii, jj, kk = torch.meshgrid(idx, idx, idx, indexing="ij")
        unit = torch.stack([ii, jj, kk], dim=-1).reshape(-1, 3) / self.resolution
        return self.bbox_min + unit * (self.bbox_max - self.bbox_min)

    def _local_index_offsets(self) -> torch.Tensor:
        n = self.resolution + 1
        o = KUHN_OFFSETS.to(self.device)
        return o[..., 0] * n * n + o[..., 1] * n + o[..., 2]  # (6, 4)

    def tets_of_cubes(self, cube_base: torch.Tensor) -> torch.Tensor:
        """(C·6, 4) vertex indices of the tets of the cubes whose lowest-corner vertex index is given."""
        return (cube_base[:, None, None] + self._local_index_offsets()[None]).reshape(-1, 4)

    def all_tets(self) -> torch.Tensor:
        """Every tet of the grid (6·R³ of them): fine for small grids and tests."""
        r, n = self.resolution, self.resolution + 1
        c = torch.arange(r, device=self.device)
        ii, jj, kk = torch.meshgrid(c, c, c, indexing="ij")
        return self.tets_of_cubes(((ii * n + jj) * n + kk).reshape(-1))

    def surface_tets(self, sdf: torch.Tensor) -> torch.Tensor:
        """Tets of the cubes whose 8 corners do not all share the sign of `sdf` (N,)."""
        r, n = self.resolution, self.resolution + 1
        inside = (sdf.detach() < 0).reshape(n, n, n)
        any_in = torch.zeros(r, r, r, dtype=torch.bool, device=sdf.device)
        all_in = torch.ones(r, r, r, dtype=torch.bool, device=sdf.device)
        for dx, dy, dz in itertools.product((0, 1), repeat=3):
            corner = inside[dx:dx + r, dy:dy + r, dz:dz + r]
            any_in |= corner
            all_in &= corner
        ii, jj, kk = torch.nonzero(any_in & ~all_in, as_tuple=True)
        return self.tets_of_cubes((ii * n + jj) * n + kk)
