"""Progress of a long operator command: a redrawn bar on a terminal, plain lines otherwise.

On a TTY one line is redrawn in place (``\\r``) about twice a second::

    backfill postgres [##########..........]  50.1%  50,100/100,000  2,340/s  ETA 21s

Anywhere else (a Kubernetes Job's log, a pipe) a plain line is printed every ``interval_s``
(10 s by default), so the log stays readable::

    backfill postgres: 50,100/100,000 (50.1%), 2,340/s, ETA 21s

The rate is measured over the last ``window_s`` seconds, so it follows a sink that speeds up
or slows down instead of averaging over the whole run.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import TextIO

BAR_WIDTH = 20
TTY_INTERVAL_S = 0.5
PLAIN_INTERVAL_S = 10.0


class RateMeter:
    """Units per second over a sliding window of (time, done) samples."""

    def __init__(self, window_s: float = 30.0) -> None:
        self._window_s = window_s
        self._samples: deque[tuple[float, int]] = deque()

    def add(self, now: float, done: int) -> None:
        self._samples.append((now, done))
        while len(self._samples) > 2 and now - self._samples[1][0] >= self._window_s:
            self._samples.popleft()

    @property
    def rate(self) -> float | None:
        if len(self._samples) < 2:
            return None
        (t0, d0), (t1, d1) = self._samples[0], self._samples[-1]
        return (d1 - d0) / (t1 - t0) if t1 > t0 else None


def format_duration(seconds: float | None) -> str:
    """``45s``, ``3m05s``, ``2h07m``; ``?`` when unknown."""
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "?"
    whole = max(0, round(seconds))
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def eta_seconds(done: int, total: int, rate: float | None) -> float | None:
    if done >= total:
        return 0.0
    if not rate or rate <= 0:
        return None
    return (total - done) / rate


def percent(done: int, total: int) -> float:
    return 100.0 if total <= 0 else min(100.0, 100.0 * done / total)


def render_bar(label: str, done: int, total: int, rate: float | None) -> str:
    filled = int(BAR_WIDTH * percent(done, total) / 100)
    bar = "#" * filled + "." * (BAR_WIDTH - filled)
    return (
        f"{label} [{bar}] {percent(done, total):5.1f}%  {done:,}/{total:,}  "
        f"{_rate(rate)}  ETA {format_duration(eta_seconds(done, total, rate))}"
    )


def render_line(label: str, done: int, total: int, rate: float | None) -> str:
    return (
        f"{label}: {done:,}/{total:,} ({percent(done, total):.1f}%), {_rate(rate)}, "
        f"ETA {format_duration(eta_seconds(done, total, rate))}"
    )


def _rate(rate: float | None) -> str:
    return "?/s" if rate is None else f"{rate:,.0f}/s"


class ProgressReporter:
    """Prints progress no more often than its interval; ``finish`` always prints."""

    def __init__(
        self,
        label: str,
        stream: TextIO,
        interactive: bool | None = None,
        interval_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label = label
        self._stream = stream
        self.interactive = stream.isatty() if interactive is None else interactive
        default = TTY_INTERVAL_S if self.interactive else PLAIN_INTERVAL_S
        self._interval_s = default if interval_s is None else interval_s
        self._clock = clock
        self._meter = RateMeter()
        self._next_print = 0.0
        self._width = 0

    def update(self, done: int, total: int) -> None:
        now = self._clock()
        self._meter.add(now, done)
        if now >= self._next_print:
            self._next_print = now + self._interval_s
            self._print(done, total)

    def finish(self, done: int, total: int, note: str = "") -> None:
        self._meter.add(self._clock(), done)
        self._print(done, total)
        if self.interactive:
            self._stream.write("\n")
        if note:
            self._stream.write(f"{self.label}: {note}\n")
        self._stream.flush()

    def _print(self, done: int, total: int) -> None:
        rate = self._meter.rate
        if self.interactive:
            text = render_bar(self.label, done, total, rate)
            pad = max(0, self._width - len(text))
            self._width = len(text)
            self._stream.write("\r" + text + " " * pad)
        else:
            self._stream.write(render_line(self.label, done, total, rate) + "\n")
        self._stream.flush()
