"""Option order for dilemmas (the README, Metrics). Pure.

Dilemmas are scored with action 1 listed first ("ab") and second ("ba"). Probabilities are always
stored in vote order (action 1, action 2), whatever the order of the prompt.
"""

from __future__ import annotations

import numpy as np


def combine(p_ab: np.ndarray, p_ba: np.ndarray) -> np.ndarray:
    """P(a) = ½ [P_AB(a) + P_BA(a)], per item."""
    return 0.5 * (np.asarray(p_ab, dtype=float) + np.asarray(p_ba, dtype=float))


def first_listed(p_ab: np.ndarray, p_ba: np.ndarray) -> np.ndarray:
    """Per item and order, the probability given to whichever action was listed first."""
    return np.concatenate([np.asarray(p_ab)[:, 0], np.asarray(p_ba)[:, 1]])


def position_bias(p_ab: np.ndarray, p_ba: np.ndarray) -> float:
    """Mean of P(first-listed option) − 0.5 over both orders: 0 for a system blind to order."""
    return float(first_listed(p_ab, p_ba).mean() - 0.5)
