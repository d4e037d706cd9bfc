"""Datasets: adapters (registered in :data:`DATASETS`), decoding and segmentation, the synthetic sample."""
from remodiff.data.adapters import DATASETS, Clip, DatasetAdapter, build_dataset

__all__ = ["DATASETS", "Clip", "DatasetAdapter", "build_dataset"]
