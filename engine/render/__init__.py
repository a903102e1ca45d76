"""Volume rendering of radiance fields (nerfacc on CUDA, its batched functions on CPU)."""
from .volume import RenderOutput, render_volume, sphere_intersect

__all__ = ["RenderOutput", "render_volume", "sphere_intersect"]
