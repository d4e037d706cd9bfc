"""Progress of long work: a tqdm bar that also writes its line to the log at least every :data:`LOG_EVERY` seconds.

A bar redraws itself on a terminal only; ``dvc repro`` output captured to a file, a batch job's log or a scratch
run of ``remodiff real-data`` keep the logged lines (``desc: 12/60 [00:41<02:12, ...]``: count, elapsed, ETA).
"""
from __future__ import annotations

import logging

from tqdm.auto import tqdm

log = logging.getLogger(__name__)

#: seconds between two log lines of one bar (the guide's "logs what it does at least every 30 s")
LOG_EVERY = 30.0


class progress(tqdm):  # noqa: N801 (used like tqdm, a function-like name)
    """``tqdm`` with the same arguments; its state is logged every ``log_every`` seconds and when it closes."""

    def __init__(self, *args, log_every: float = LOG_EVERY, **kwargs):
        self.log_every = log_every
        self.last_logged: float | None = None  # None: not yet, the interval counts from the bar's start
        super().__init__(*args, **kwargs)

    def update(self, n: float | None = 1) -> bool | None:
        displayed = super().update(n)
        if not self.disable:
            now = self._time()  # tqdm's clock, as its start_t and elapsed time
            if now - (self.last_logged or self.start_t) >= self.log_every:
                self.last_logged = now
                log.info("%s", self.logged_line())
        return displayed

    def close(self) -> None:
        if not getattr(self, "disable", True) and self.n and self._time() - self.start_t >= self.log_every:
            log.info("%s (done)", self.logged_line())
        super().close()

    def logged_line(self) -> str:
        """``desc: n/total [elapsed<remaining, rate]`` (no bar: a log line is read, not redrawn)."""
        elapsed = self._time() - self.start_t
        rate = self.n / elapsed if elapsed > 0 else None
        remaining = (self.total - self.n) / rate if rate and self.total else None
        fmt = self.format_interval
        return (f"{self.desc}: {self.n}/{self.total if self.total is not None else '?'} "
                f"[{fmt(elapsed)}<{fmt(remaining) if remaining is not None else '?'}"
                f"{f', {rate:.3g} {self.unit}/s' if rate else ''}]{f' {self.postfix}' if self.postfix else ''}")
