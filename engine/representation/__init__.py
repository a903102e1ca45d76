"""3D representations behind one protocol (base.py); the radiance field is the first (radiance.py)."""
from .base import ColorField, Representation
from .registry import REPRESENTATIONS, load_color_field, load_representation, make_representation, new_color_field

__all__ = ["ColorField", "Representation", "REPRESENTATIONS", "load_color_field", "load_representation",
           "make_representation", "new_color_field"]
