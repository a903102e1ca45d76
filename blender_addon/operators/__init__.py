"""Operators: they start, cancel, import or attach; the session and the pump own the job."""
import bpy

from . import camera, engine, generate, jobs, retexture, world

CLASSES = (*generate.CLASSES, *retexture.CLASSES, *engine.CLASSES, *jobs.CLASSES, *camera.CLASSES,
           *world.CLASSES)


_register, unregister = bpy.utils.register_classes_factory(CLASSES)


def register():
    _register()
    engine.register_hooks()
    retexture.register_hooks()
