"""Downstream fusers, registered in :data:`FUSERS`."""
from remodiff.fusion.base import FUSERS, Fuser, build_fuser, load_fuser
from remodiff.fusion import early  # noqa: F401  (registers early)

__all__ = ["FUSERS", "Fuser", "build_fuser", "load_fuser"]
