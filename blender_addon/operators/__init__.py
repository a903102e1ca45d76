"""Operators: they start, cancel, import or attach; the session and the pump own the job."""
import bpy

from . import camera, engine, generate, jobs, retexture

CLASSES = (*generate.CLASSES, *retexture.CLASSES, *engine.CLASSES, *jobs.CLASSES, *camera.CLASSES)


def register():
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    engine.register_hooks()


def unregister():
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
