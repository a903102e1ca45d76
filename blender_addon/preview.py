"""The live preview: one image datablock rewritten in place from 8-bit RGB frames.

Frames arrive top row first (DESIGN.md §2); Blender stores pixels bottom row first, RGBA floats.
`foreach_set` is ~50x faster than assigning `pixels[:]`. The image is never packed per frame.
"""
import array

import bpy

PREVIEW_NAME = "VSDream Preview"


_TO_FLOAT = [i / 255.0 for i in range(256)]


def rgb_to_rgba_bottom_up(rgb: bytes, width: int, height: int) -> array.array:
    """Float RGBA rows in Blender's order (bottom row first) from top-first 8-bit RGB.

    Slicing and a lookup table keep the work in C: about 70 ms for a 512² frame."""
    if len(rgb) != width * height * 3:
        raise ValueError(f"preview payload has {len(rgb)} bytes, expected {width}x{height}x3 = {width * height * 3}")
    row = width * 3
    flipped = b"".join(rgb[y * row:(y + 1) * row] for y in range(height - 1, -1, -1))
    rgba = bytearray(b"\xff" * (width * height * 4))
    for c in range(3):
        rgba[c::4] = flipped[c::3]
    return array.array("f", map(_TO_FLOAT.__getitem__, rgba))


def ensure_image(width: int, height: int, name: str = PREVIEW_NAME):
    """The preview image, recreated only when the frame size changes."""
    img = bpy.data.images.get(name)
    if img is not None and tuple(img.size) != (width, height):
        bpy.data.images.remove(img)
        img = None
    if img is None:
        img = bpy.data.images.new(name, width=width, height=height, alpha=False)
        img.use_fake_user = False
    return img


def show_frame(rgb: bytes, width: int, height: int, name: str = PREVIEW_NAME):
    """Write one frame into the preview image and return it."""
    pixels = rgb_to_rgba_bottom_up(rgb, width, height)
    img = ensure_image(width, height, name)
    img.pixels.foreach_set(pixels)
    img.update()
    if img.preview is not None:  # the panel thumbnail is cached: ask for a fresh one
        try:
            img.preview.reload()
        except (AttributeError, RuntimeError):
            pass
    return img
