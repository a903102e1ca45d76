"""Diffusion priors behind one interface: the analytic prior (tests, benchmarks) and Stable Diffusion."""
from .base import Conditioning, Prior, VariationalScore
from .registry import load_prior

__all__ = ["Conditioning", "Prior", "VariationalScore", "load_prior"]
