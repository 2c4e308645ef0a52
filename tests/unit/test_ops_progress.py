"""Progress output of long operator commands: bar on a terminal, plain lines in a Job log."""

import io

import pytest

from fanout.ops.progress import (
    ProgressReporter,
    RateMeter,
    eta_seconds,
    format_duration,
    render_bar,
    render_line,
)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_durations_read_like_a_clock() -> None:
    assert format_duration(None) == "?"
    assert format_duration(4.4) == "4s"
    assert format_duration(185) == "3m05s"
    assert format_duration(7620) == "2h07m"


def test_rate_follows_the_recent_window() -> None:
    meter = RateMeter(window_s=10)
    assert meter.rate is None
    for second in range(0, 31):
        done = 100 * second if second <= 20 else 2000 + 10 * (second - 20)
        meter.add(float(second), done)
    assert meter.rate == pytest.approx(10, abs=1)  # slowed down: not the run's average (~70/s)


def test_eta_is_unknown_without_a_rate_and_zero_when_done() -> None:
    assert eta_seconds(5, 10, None) is None
    assert eta_seconds(10, 10, None) == 0.0
    assert eta_seconds(50, 100, 10.0) == 5.0


def test_bar_and_line_show_percent_counts_rate_and_eta() -> None:
    bar = render_bar("backfill postgres", 50, 100, 10.0)
    assert "[##########..........]" in bar and "50.0%" in bar and "50/100" in bar
    assert "10/s" in bar and "ETA 5s" in bar
    line = render_line("backfill postgres", 1500, 3000, 250.0)
    assert line == "backfill postgres: 1,500/3,000 (50.0%), 250/s, ETA 6s"


def test_plain_lines_are_printed_every_interval_not_every_update() -> None:
    out, clock = io.StringIO(), Clock()
    reporter = ProgressReporter("bf", out, interactive=False, interval_s=10, clock=clock)
    for second in range(25):
        clock.now = float(second)
        reporter.update(second * 10, 1000)
    lines = out.getvalue().splitlines()
    assert len(lines) == 3  # at 0 s, 10 s and 20 s
    assert "\r" not in out.getvalue()
    assert lines[-1].startswith("bf: 200/1,000 (20.0%), 10/s, ETA 1m20s")


def test_terminal_bar_is_redrawn_in_place_and_ends_with_a_newline() -> None:
    out, clock = io.StringIO(), Clock()
    reporter = ProgressReporter("bf", out, interactive=True, clock=clock)
    for tick in range(4):
        clock.now = tick * 0.5
        reporter.update(tick * 10, 30)
    reporter.finish(30, 30, "complete")
    text = out.getvalue()
    assert text.count("\r") == 5 and "\n" not in text.split("\r")[-2]
    assert text.endswith("100.0%  30/30  20/s  ETA 0s\nbf: complete\n")
