"""Durations as a person reads them, and the pace and time left of a loop."""

from __future__ import annotations

import math

import pytest

from ethdash.durations import Pace, human_duration


@pytest.mark.parametrize(
    "seconds, text",
    [
        (0, "0 s"),
        (0.4, "0 s"),
        (0.5, "1 s"),
        (2.5, "3 s"),  # halves go up
        (45, "45 s"),
        (59.4, "59 s"),
        (59.6, "1 min"),
        (80, "1 min 20 s"),
        (120, "2 min"),
        (3599.4, "59 min 59 s"),
        (3599.6, "1 h"),
        (3600 + 47 * 60 + 10, "1 h 47 min"),
        (2 * 3600 - 20, "2 h"),
        (86400 - 29, "1 d"),
        (3 * 86400 + 2 * 3600 + 100, "3 d 2 h"),
    ],
)
def test_human_duration_gives_the_two_largest_units(seconds, text):
    assert human_duration(seconds) == text


@pytest.mark.parametrize("bad", [-1, math.nan, math.inf])
def test_human_duration_refuses_what_is_not_a_duration(bad):
    with pytest.raises(ValueError):
        human_duration(bad)


def test_pace_is_the_time_per_step_of_the_recent_steps_and_the_eta_the_steps_left_at_it():
    pace = Pace(start_time=100.0, start_step=0, total_steps=20, window=3)
    assert pace.seconds_per_step is None and pace.eta_seconds is None  # nothing done yet
    pace.done(1, 110.0)  # a slow first step
    assert pace.seconds_per_step == 10.0 and pace.eta_seconds == 190.0
    for step in (2, 3, 4):
        pace.done(step, 110.0 + (step - 1) * 2.0)
    assert pace.seconds_per_step == 2.0  # the first step has left the window of 3
    assert pace.eta_seconds == 16 * 2.0
    pace.done(20, 200.0)
    assert pace.eta_seconds == 0.0


def test_a_resumed_loop_counts_from_its_first_step():
    pace = Pace(start_time=0.0, start_step=50, total_steps=100)
    pace.done(51, 3.0)
    assert pace.seconds_per_step == 3.0 and pace.eta_seconds == 49 * 3.0
