"""Score distillation: the SDS/VSD gradient on renders and the pixel-space variational score."""
from .score_distillation import DistillResult, distillation_loss

__all__ = ["DistillResult", "distillation_loss"]
