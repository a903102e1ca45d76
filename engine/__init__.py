"""VSDream engine: Variational Score Distillation text-to-3D as a library and CLI."""
__version__ = "0.1.0"
