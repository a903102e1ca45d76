# bpy must be imported before pymeshlab in one process (the other order breaks bpy).
try:
    import bpy  # noqa: F401
except ImportError:
    pass

# the `addon` fixture (the add-on enabled as Blender does, its files isolated) for every test module
from addon_helpers import addon  # noqa: E402,F401
