"""Shared by the analytic-prior and camera tests: orbit cameras and a one-thread fixture."""
import math

import pytest
import torch

from engine.cameras import Cameras, make_cameras


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These tensors are tiny: one intra-op thread avoids OpenMP hand-offs, which cost tens of ms
    per op on a busy shared CPU and would dominate a module's run time."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def orbit_cams(az_deg, el_deg=15.0, dist=1.5, fov_deg=50.0, res=8) -> Cameras:
    """Cameras at the given azimuths (degrees), all at one elevation, distance and fov."""
    az = torch.tensor([float(a) for a in az_deg]).deg2rad()
    n = az.shape[0]
    return make_cameras(torch.full((n,), math.radians(el_deg)), az, torch.full((n,), dist),
                        torch.full((n,), math.radians(fov_deg)), res, res)
