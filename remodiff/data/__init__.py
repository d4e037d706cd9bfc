"""Datasets: adapters (registered in :data:`DATASETS`), decoding and segmentation, the synthetic sample."""
from remodiff.data.adapters import DATASETS, SPLITS, Clip, DatasetAdapter, build_dataset
from remodiff.data import emotion, manifest, mmsa, precomputed  # noqa: F401  (they register their adapters)

__all__ = ["DATASETS", "SPLITS", "Clip", "DatasetAdapter", "build_dataset"]
