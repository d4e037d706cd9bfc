"""The scale benchmark's growth fits, projection and per-stage measurement (benchmarks/scale.py): its self-test,
beside it, since tests/ never imports benchmarks (pyproject's testpaths collect both)."""
import sys

import pytest

from benchmarks.scale import Growth, Line, fit_growth, fit_line, measure, project


def test_fits_recover_a_power_law_and_a_line():
    clips = [250, 1000, 2000]
    growth = fit_growth(clips, [3.0 * n ** 1.2 for n in clips])
    assert growth.a == pytest.approx(3.0) and growth.b == pytest.approx(1.2)
    line = fit_line(clips, [40.0 + 0.5 * n for n in clips])
    assert line.fixed == pytest.approx(40.0) and line.per_clip == pytest.approx(0.5)
    assert line.at(10_000) == pytest.approx(5040.0)
    flat = fit_line(clips, [8.7, 4.9, 4.4])  # a cost falling with more clips is noise: the mean, not a negative time
    assert flat.per_clip == 0.0 and flat.at(10_000) == pytest.approx(6.0)


def test_fits_refuse_what_they_cannot_fit():
    with pytest.raises(ValueError, match="two distinct clip counts"):
        fit_growth([250, 250], [1.0, 2.0])
    with pytest.raises(ValueError, match="positive"):
        fit_growth([250, 1000], [0.0, 2.0])
    with pytest.raises(ValueError, match="two distinct clip counts"):
        fit_line([8], [1.0])


def test_projection_divides_only_stages_that_spread_over_gpus():
    linear = Growth(a=0.1, b=1.0)  # 1,000 s at 10,000 clips
    assert project(linear, 10_000, 1, "shards") == pytest.approx(1000.0)
    assert project(linear, 10_000, 8, "shards") == pytest.approx(125.0)
    assert project(linear, 10_000, 8, "shards", efficiency=0.5) == pytest.approx(250.0)
    assert project(Line(10.0, 0.1), 10_000, 8, None) == pytest.approx(1010.0)  # one process whatever the GPUs


def test_measure_counts_the_memory_of_a_child_process(tmp_path):
    # the command itself stays small; a grandchild writes 300 MiB: the peak must include it
    child = "import subprocess, sys; subprocess.run([sys.executable, '-c', 'x = b\"x\" * (300 * 2**20)'], check=True)"
    result = measure(tmp_path, [sys.executable, "-c", child], tmp_path / "child.log")
    assert result["peak_rss_mib"] >= 300 and result["peak_tree_pss_mib"] >= result["peak_rss_mib"]
    with pytest.raises(RuntimeError, match="exit 3"):
        measure(tmp_path, [sys.executable, "-c", "print('boom'); raise SystemExit(3)"], tmp_path / "fail.log")
