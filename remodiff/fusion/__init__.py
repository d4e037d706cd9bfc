"""Downstream fusers, registered in :data:`FUSERS`; shared building blocks in :mod:`remodiff.fusion.blocks`."""
from remodiff.fusion.base import FUSERS, Fuser, build_fuser, fuser_section, load_fuser
from remodiff.fusion import auto, early, late, linear, mlp, transformer  # noqa: F401  (register the fusers)

__all__ = ["FUSERS", "Fuser", "build_fuser", "fuser_section", "load_fuser"]
