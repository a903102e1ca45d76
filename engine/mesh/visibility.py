"""Which parts of a mesh any camera can see: used to drop the closed bubbles a NeRF leaves inside
an object (invisible, yet they cost faces, texture space and Chamfer distance)."""
from __future__ import annotations

import torch

from ..cameras import Cameras, framing_cameras
from .raster.base import Rasterizer
from .render import clip_positions
from .topology import face_neighbors


def connected_components(faces: torch.Tensor, num_vertices: int | None = None) -> torch.Tensor:
    """(F,) component label per face (edge-connected), by min-label hooking and pointer jumping."""
    nb = face_neighbors(faces, num_vertices)
    fi, k = torch.nonzero(nb >= 0, as_tuple=True)
    a, b = fi, nb[fi, k]
    label = torch.arange(faces.shape[0], device=faces.device)
    while True:
        lo = torch.minimum(label[a], label[b])
        new = label.clone().scatter_reduce_(0, a, lo, reduce="amin").scatter_reduce_(0, b, lo, reduce="amin")
        new = new.scatter_reduce(0, label, new, reduce="amin")  # hook roots as well
        while True:  # pointer jumping
            jumped = new[new]
            if torch.equal(jumped, new):
                break
            new = jumped
        if torch.equal(new, label):
            return label
        label = new


def visible_faces(vertices: torch.Tensor, faces: torch.Tensor, raster: Rasterizer, resolution: int = 128,
                  radius: float = 1.0, cams: Cameras | None = None) -> torch.Tensor:
    """(F,) bool: the face covers a pixel centre in at least one of `cams`; by default 14 views
    around the object (6 azimuths at −35° and at 35°, plus straight above and below)."""
    if cams is None:
        elev = torch.tensor([-35.0] * 6 + [35.0] * 6 + [89.0, -89.0])
        azim = torch.cat([torch.arange(6.0) * 60.0, torch.arange(6.0) * 60.0 + 30.0, torch.zeros(2)])
        cams = framing_cameras(elev, azim, radius, resolution, distance_factor=3.0)
    cams = cams.to(vertices.device)
    resolution = cams.height
    seen = torch.zeros(faces.shape[0] + 1, dtype=torch.bool, device=vertices.device)
    with torch.no_grad():
        for i in range(cams.batch):
            rast = raster.rasterize(clip_positions(vertices, cams.index(i)), faces, (resolution, resolution))
            seen[rast[..., 3].long().reshape(-1)] = True
    return seen[1:]


def drop_hidden_components(vertices: torch.Tensor, faces: torch.Tensor, raster: Rasterizer,
                           radius: float = 1.0, resolution: int = 128, cams: Cameras | None = None) -> torch.Tensor:
    """Faces of the components of which at least one face is visible from `cams` (default: around
    the object; scenes pass views from inside), no holes cut."""
    if faces.shape[0] == 0:
        return faces
    label = connected_components(faces, vertices.shape[0])
    keep_label = torch.zeros(faces.shape[0], dtype=torch.bool, device=faces.device)
    keep_label[label[visible_faces(vertices, faces, raster, resolution, radius, cams)]] = True
    return faces[keep_label[label]]
