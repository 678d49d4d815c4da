"""The spread of final metrics over the seeds of one configuration. Pure."""

from __future__ import annotations

import numpy as np

from ethdash.evaluation import measures


def spread(finals: dict[str, dict]) -> dict[str, dict]:
    """Per metric: mean, sample standard deviation, min, max and n over the runs that report it."""
    out = {}
    for metric in (m.name for m in measures.METRICS):
        values = np.array([f[metric] for f in finals.values() if f.get(metric) is not None], dtype=float)
        if len(values):
            out[metric] = {
                "mean": float(values.mean()),
                "sd": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                "min": float(values.min()),
                "max": float(values.max()),
                "n": int(len(values)),
            }
    return out
