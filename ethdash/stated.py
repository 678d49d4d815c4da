"""A distribution stated in words: the percentages a model gives for each answer label, parsed.

Pure: text in, shares or a failure out. A failure says what is wrong (no percentage for a label, two
different ones, a total that is not 100), so that it can be recorded per item and counted.
"""

from __future__ import annotations

import re

import numpy as np

SUM_TOLERANCE = 1.0  # percentage points: "33%, 33%, 33%" sums to 99 and is accepted


def parse(text: str, labels: tuple[str, ...]) -> tuple[np.ndarray | None, str | None]:
    """(shares in label order, None), or (None, why it cannot be read). Each label must be followed by one
    percentage ("A: 60%", "A - 60 %", "A = 60.5%"); the percentages must sum to 100 (within 1 point), and are
    then normalised to sum to exactly 1."""
    values = []
    for label in labels:
        pattern = rf"(?<![A-Za-z0-9]){re.escape(label.strip())}\s*(?:[:=)\-–]|is)?\s*(\d{{1,3}}(?:\.\d+)?)\s*%"
        found = {float(v) for v in re.findall(pattern, text)}
        if not found:
            return None, f"unparseable: no percentage for {label.strip()}"
        if len(found) > 1:
            shown = ", ".join(f"{v:g}" for v in sorted(found))
            return None, f"unparseable: several percentages for {label.strip()} ({shown})"
        values.append(found.pop())
    total = sum(values)
    if abs(total - 100.0) > SUM_TOLERANCE:
        return None, f"does not sum to 100 (sums to {total:g})"
    return np.array(values) / total, None
