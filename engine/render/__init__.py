"""Volume rendering of radiance fields (nerfacc's kernels on CUDA when built, pure-torch packed otherwise)."""
from .geometry import sphere_intersect
from .volume import RenderOutput, render_volume

__all__ = ["RenderOutput", "render_volume", "sphere_intersect"]
