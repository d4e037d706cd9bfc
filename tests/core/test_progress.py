"""Long work speaks in the log too, not only on a terminal's progress bar."""
from __future__ import annotations

import logging

from remodiff.progress import progress


def test_a_bar_logs_count_total_and_eta_when_its_interval_has_passed(caplog):
    with caplog.at_level(logging.INFO, logger="remodiff.progress"):
        for _ in progress(range(5), desc="reconstruct seed_0", log_every=0.0, mininterval=0.0):
            pass
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("reconstruct seed_0: 1/5 [")
    assert any(line.startswith("reconstruct seed_0: 5/5 [") for line in lines)
    assert all("<" in line for line in lines)  # elapsed<remaining


def test_a_quick_bar_stays_quiet_and_a_disabled_one_never_logs(caplog):
    with caplog.at_level(logging.INFO, logger="remodiff.progress"):
        for _ in progress(range(50), desc="quick", mininterval=0.0):
            pass
        for _ in progress(range(5), desc="other rank", log_every=0.0, disable=True):
            pass
    assert caplog.records == []


def test_a_long_bar_says_when_it_is_done(caplog):
    with caplog.at_level(logging.INFO, logger="remodiff.progress"):
        for _ in progress(range(3), desc="train", log_every=0.0):  # default mininterval: no update logged
            pass
    assert caplog.records[-1].getMessage().startswith("train: 3/3 [") and "(done)" in caplog.records[-1].getMessage()
