# bpy must be imported before pymeshlab in one process (the other order breaks bpy).
try:
    import bpy  # noqa: F401
except ImportError:
    pass
