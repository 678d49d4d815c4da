"""The frames that figures and tables are drawn from, shared by the pages and `reproduce`: one item's vote
split and each system's probabilities (Browse), the metric table as a paper reads it, the humans-against-
models points and the per-item differences (Compare, the reproduction's figures). Pure: arrays in, frames out.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import special  # not scipy.stats: its import costs 0.4 s of every command

from ethdash import orders
from ethdash.evaluation import measures
from ethdash.evaluation.statistics import Predictions, item_metrics
from ethdash.votes import posterior_interval, shares, whole_votes


def vote_split(
    counts: object, options: tuple[str, ...], sample: str, level: float = 0.9, has_counts: bool = True
) -> pd.DataFrame:
    """One row per option: the human share and its posterior interval (Dirichlet, α = 1 + n, of the whole
    votes). Shares with no number of respondents have no votes and no interval (low = high = the share)."""
    n = np.asarray(counts, dtype=float)
    share = shares(n)[0]
    if has_counts:
        whole = whole_votes(n)
        low, high = posterior_interval(whole, level)
        low, high, votes = low[0], high[0], whole[0]
    else:
        low, high, votes = share, share, np.full(len(share), np.nan)
    return pd.DataFrame(
        {"sample": sample, "option": list(options), "votes": votes, "share": share, "low": low, "high": high}
    )


def system_rows(scores: pd.DataFrame, options: tuple[str, ...], label: str) -> tuple[pd.DataFrame, dict]:
    """One system's probabilities for one item, per option (orders combined for dilemmas), and a summary."""
    by_order = {row.item_order: np.asarray(row.probs, dtype=float) for row in scores.itertuples()}
    if set(by_order) == {"ab", "ba"}:
        p = orders.combine(by_order["ab"][None], by_order["ba"][None])[0]
        summary = {
            "P_AB": by_order["ab"][0],
            "P_BA": by_order["ba"][0],
            "position bias": orders.position_bias(by_order["ab"][None], by_order["ba"][None]),
        }
    else:
        p = next(iter(by_order.values()))
        summary = {}
    summary = {
        "system": label,
        **{o: float(v) for o, v in zip(options, p)},
        **summary,
        "mass outside answers": float(scores["outside_mass"].mean()),
    }
    rows = pd.DataFrame(
        {"sample": label, "option": list(options), "votes": np.nan, "share": p, "low": np.nan, "high": np.nan}
    )
    return rows, summary


def metric_cells(table: pd.DataFrame, systems: list[str], family: str | None = "study") -> pd.DataFrame:
    """The metric table as a grid: a row per system (in this order), a column per compared metric of the
    family (labelled, in the registry's order; every metric for None), each cell "estimate [low, high]" with a
    no-break space inside the interval, so that the cell breaks only after the estimate; "—" where a metric
    does not apply (the human ceiling has no position bias)."""
    cells = table.assign(
        value=[
            f"{e:.3f} [{lo:.3f},\u00a0{hi:.3f}]" if not np.isnan(lo) else f"{e:.3f}"
            for e, lo, hi in zip(table["estimate"], table["low"], table["high"])
        ]
    ).pivot(index="system", columns="metric", values="value")
    cells = cells[[m.name for m in measures.compared(family) if m.name in cells.columns]].rename(columns=measures.label)
    return cells.reindex(systems).fillna("—")


def human_vs_model(counts: np.ndarray, items: pd.DataFrame, preds: list[Predictions], option: int) -> pd.DataFrame:
    """Per system and item: the human share of one option against the system's probability of it."""
    human = counts[:, option] / counts.sum(axis=1)
    return pd.concat(
        [
            pd.DataFrame(
                {
                    "system": p.label,
                    "model": p.p[:, option],
                    "human": human,
                    "split": items["split"],
                    "item_id": items["item_id"],
                }
            )
            for p in preds
        ],
        ignore_index=True,
    )


def share_means(points: pd.DataFrame, level: float = 0.95, max_levels: int = 11) -> pd.DataFrame:
    """Per system and human share: the mean model probability, its t interval and the number of items.

    With few votes per item the human share takes few values (six with 5 votes), so the points of a scatter
    sit on a few lines; these means are what a reader can read. Where the shares take more than `max_levels`
    values they are grouped into tenths (0–0.1, …, 0.9–1), each at its centre."""
    frame = points[["system", "model", "human"]].copy()
    if frame["human"].round(9).nunique() > max_levels:
        frame["human"] = (np.minimum(np.floor(frame["human"] * 10), 9) + 0.5) / 10
    else:
        frame["human"] = frame["human"].round(9)
    grouped = frame.groupby(["system", "human"], sort=False)["model"]
    out = grouped.agg(mean="mean", sd="std", items="count").reset_index()
    t_quantile = special.stdtrit(out["items"] - 1, 0.5 + level / 2)  # Student t quantile: stats.t.ppf
    half = t_quantile * out["sd"] / np.sqrt(out["items"])
    out["low"], out["high"] = out["mean"] - half, out["mean"] + half
    return out.drop(columns="sd").sort_values(["system", "human"], kind="stable", ignore_index=True)


def xent_differences(counts: np.ndarray, preds: list[Predictions]) -> tuple[pd.DataFrame, str]:
    """Per item, each system's soft xent minus the first system's, the base (or the first's own soft xent
    when it is alone), and the axis title that says which."""
    per_item = {p.label: item_metrics(counts, p)["xent"] for p in preds}
    base = preds[0].label
    if len(preds) == 1:
        return pd.DataFrame({base: per_item[base]}), "soft xent per item (nats)"
    # Columns are the systems' own names (a legend entry "long-run-name − base" does not fit a column).
    diffs = pd.DataFrame({p.label: per_item[p.label] - per_item[base] for p in preds[1:]})
    return diffs, "soft xent minus the base's (nats; < 0: better)"
