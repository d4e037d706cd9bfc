"""Measurements of the pipeline (docs/benchmarks.md), run as scripts; a package so that their self-tests
(test_*.py, collected by `pytest`) import as ``benchmarks.test_*``."""
