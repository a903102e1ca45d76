"""Mesh stages' building blocks: tet grid, marching tets, DMTet, rasteriser, UVs, bake, export.

Kept import-light on purpose: the xatlas worker runs `python -m engine.mesh.xatlas_worker` and
must not pay for torch. Import the submodules you need.
"""
