"""Durations as a person reads them ("1 min 20 s", "1 h 47 min"), and the time left of a loop. Pure."""

from __future__ import annotations

import math
from collections import deque

MINUTE, HOUR, DAY = 60, 3600, 86400


def _rounded(value: float) -> int:
    return math.floor(value + 0.5)  # halves up (round() would take 2.5 s to 2 s)


def human_duration(seconds: float) -> str:
    """A duration in its two largest units, rounded to the smaller one: "45 s", "1 min 20 s", "2 min",
    "1 h 47 min", "3 d 2 h". Estimates read best as "about " + this."""
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"not a duration: {seconds!r}")
    whole = _rounded(seconds)
    if whole < MINUTE:
        return f"{whole} s"
    if whole < HOUR:
        return _two(whole // MINUTE, "min", whole % MINUTE, "s")
    minutes = _rounded(seconds / MINUTE)
    if minutes < DAY // MINUTE:
        return _two(minutes // 60, "h", minutes % 60, "min")
    hours = _rounded(seconds / HOUR)
    return _two(hours // 24, "d", hours % 24, "h")


def _two(big: int, big_unit: str, small: int, small_unit: str) -> str:
    return f"{big} {big_unit} {small} {small_unit}" if small else f"{big} {big_unit}"


class Pace:
    """Seconds per step over the last `window` steps, all of a step's work included (evaluations and
    checkpoints too), and the time the remaining steps take at that pace."""

    def __init__(self, start_time: float, start_step: int, total_steps: int, window: int = 10):
        self.total_steps = total_steps
        self.marks: deque[tuple[int, float]] = deque([(start_step, start_time)], maxlen=window + 1)

    def done(self, step: int, now: float) -> None:
        self.marks.append((step, now))

    @property
    def seconds_per_step(self) -> float | None:
        (first_step, first_time), (last_step, last_time) = self.marks[0], self.marks[-1]
        return None if last_step == first_step else (last_time - first_time) / (last_step - first_step)

    @property
    def eta_seconds(self) -> float | None:
        rate = self.seconds_per_step
        return None if rate is None else max(self.total_steps - self.marks[-1][0], 0) * rate
