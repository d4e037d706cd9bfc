"""Evaluation: missing-data protocols (masks), cross-validation folds, metrics, the comparison matrix, figures."""
