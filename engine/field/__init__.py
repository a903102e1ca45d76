"""Stage-1 radiance field: hash-grid encoding, density/albedo MLPs, background, occupancy grid."""
from .background import Background, choose_background
from .hashgrid import HashGridEncoding, reference_hash_encode
from .occupancy import OccupancyGrid
from .radiance import RadianceField

__all__ = ["Background", "choose_background", "HashGridEncoding", "reference_hash_encode", "OccupancyGrid",
           "RadianceField"]
