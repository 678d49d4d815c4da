"""Prompt sensitivity: how much a model's distribution depends on how the question is asked. A system is a
model + adapter + template; the same model + adapter under several templates is compared with itself. Pure:
arrays in, numbers and frames out.

Definitions (the README, Metrics), for one model + adapter under T ≥ 2 templates on the same items:
- the consistency (total variation): the mean, over items and over the T(T − 1)/2 pairs of templates, of
  the total variation between the two templates' distributions (0: the wording never matters; 1: disjoint);
- the argmax agreement: how often two templates' most probable options agree, over items and pairs;
- an item's sensitivity: its mean pairwise total variation; the spread of an option: the largest minus the
  smallest probability the templates give it.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd

from ethdash.metrics import total_variation


@dataclass(frozen=True)
class Consistency:
    templates: tuple[str, ...]
    items: int
    total_variation: float  # mean pairwise total variation between templates (lower: more consistent)
    argmax_agreement: float  # share of (item, pair of templates) whose most probable options agree


def item_sensitivity(by_template: dict[str, np.ndarray]) -> np.ndarray:
    """Per item, the mean total variation over pairs of templates."""
    pairs = list(combinations(by_template.values(), 2))
    return np.mean([total_variation(a, b) for a, b in pairs], axis=0)


def consistency(by_template: dict[str, np.ndarray]) -> Consistency:
    """The consistency of one model + adapter across templates: `by_template` maps each template to its
    items x options distributions over the same items, in the same order."""
    if len(by_template) < 2:
        raise ValueError("consistency needs two templates or more")
    pairs = list(combinations(by_template.values(), 2))
    agree = np.mean([(a.argmax(axis=1) == b.argmax(axis=1)).mean() for a, b in pairs])
    n_items = len(next(iter(by_template.values())))
    return Consistency(tuple(by_template), n_items, float(item_sensitivity(by_template).mean()), float(agree))


def spread(by_template: dict[str, np.ndarray]) -> np.ndarray:
    """Per item and option: the largest minus the smallest probability over templates."""
    stacked = np.stack(list(by_template.values()))
    return stacked.max(axis=0) - stacked.min(axis=0)


def most_sensitive(
    items: pd.DataFrame, by_template: dict[str, np.ndarray], options: tuple[str, ...], top: int = 25
) -> pd.DataFrame:
    """The items whose distribution moves most with the template: split, item_id, the mean pairwise total
    variation, and each template's probability of the first option (two options) or its most probable
    option (more), largest sensitivity first."""
    out = items[["split", "item_id"]].reset_index(drop=True).copy()
    out["sensitivity"] = item_sensitivity(by_template)
    for name, p in by_template.items():
        if len(options) == 2:
            out[f"P({options[0]}) · {name}"] = p[:, 0]
        else:
            out[f"argmax · {name}"] = [options[k] for k in p.argmax(axis=1)]
    return out.sort_values("sensitivity", ascending=False, kind="stable").head(top).reset_index(drop=True)
