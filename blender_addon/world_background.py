"""Set a scene job's panorama as the World background: Environment Texture → Background → World Output.

The engine writes the panorama in Blender's own equirectangular mapping (engine/panorama.py: the
image centre faces +X, −Y at three quarters of the width, the top row looks up), so the texture needs
no rotation: each direction of the World shows what the scene has there. The scene's World is reused
(a new one is made only when there is none); its other nodes are left alone.
"""
from pathlib import Path

import bpy

WORLD_NAME = "VSDream World"
ENV_NODE = "VSDream Panorama"


def _output(tree):
    out = next((n for n in tree.nodes if n.bl_idname == "ShaderNodeOutputWorld" and n.is_active_output), None)
    return out or next((n for n in tree.nodes if n.bl_idname == "ShaderNodeOutputWorld"), None) or \
        tree.nodes.new("ShaderNodeOutputWorld")


def _background(tree, output):
    """The Background node feeding the output's Surface, or a new one linked there."""
    surface = output.inputs["Surface"]
    for link in surface.links:
        if link.from_node.bl_idname == "ShaderNodeBackground":
            return link.from_node
    node = tree.nodes.new("ShaderNodeBackground")
    node.location = (output.location.x - 250, output.location.y)
    tree.links.new(node.outputs["Background"], surface)
    return node


def set_world_background(scene, image_path, strength: float = 1.0):
    """Show `image_path` (an equirectangular panorama) as `scene`'s World; returns the World."""
    path = Path(image_path)
    if not path.is_file():
        raise FileNotFoundError(f"no panorama at {path}: run a job with Mode Scene first")
    world = scene.world
    if world is None:
        world = bpy.data.worlds.new(WORLD_NAME)
        scene.world = world
    if world.node_tree is None or bpy.app.version < (5, 0, 0):  # 5.0+: worlds always use nodes
        world.use_nodes = True
    tree = world.node_tree
    output = _output(tree)
    background = _background(tree, output)
    background.inputs["Strength"].default_value = strength
    env = tree.nodes.get(ENV_NODE) or tree.nodes.new("ShaderNodeTexEnvironment")
    env.name = env.label = ENV_NODE
    env.location = (background.location.x - 300, background.location.y)
    env.projection = "EQUIRECTANGULAR"
    env.image = bpy.data.images.load(str(path), check_existing=True)
    env.image.reload()  # a re-run job writes the same file name: show the new pixels
    tree.links.new(env.outputs["Color"], background.inputs["Color"])
    return world
