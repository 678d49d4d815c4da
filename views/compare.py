"""Compare: systems against the humans and against each other, with bootstrap intervals."""

import numpy as np
import pandas as pd
import streamlit as st

from ethdash import background, catalog, compare, ui
from ethdash.browse import Filters
from ethdash.evaluation import CROSS_FIT, evaluate, load
from ethdash.figures import difference_histogram, reliability_chart, scatter_chart
from ethdash.store import Store

selection = ui.selection()
systems = ui.systems()
options = tuple(selection["options"])
store = Store()

st.header(f"Compare · {selection['dataset']} · {selection['split'] or 'all splits'}")
if not systems:
    st.info("No template fits this dataset and view: choose another view in the sidebar.")
    st.stop()
st.caption(
    "Systems: the base model and the adapters chosen in the sidebar, through the template "
    f"`{systems[0].template}`. Add adapters there to compare them."
)

with st.expander("Slice the items", expanded=False):
    left, middle, right = st.columns([1, 2, 2])
    contro = left.radio("Controversial", ["all", "yes", "no"], horizontal=True, key="c_contro")
    margin = middle.slider("Vote margin", 0.0, 1.0, (0.0, 1.0), step=0.05, key="c_margin")
    known_types = catalog.post_types(store, selection["dataset"])
    post_types = right.multiselect("Post type", known_types, key="c_types") if known_types else []
filters = Filters({"all": None, "yes": True, "no": False}[contro], margin, "", tuple(post_types))

other_splits = [s for s in catalog.splits(store, selection["dataset"]) if s != selection["split"]]
calibration = st.radio(
    "Fit c and T* on",
    ["the compared items, cross-fitted (2 folds)", *(f"split {s}" for s in other_splits)],
    horizontal=True,
    key="c_calibration",
    help="c (Dirichlet score) and T* (calibrated xent) are never fitted on the items they score.",
)
calibration_split = CROSS_FIT if calibration.startswith("the compared") else calibration.removeprefix("split ")


@st.cache_data(show_spinner="Computing metrics and bootstrap intervals…", max_entries=16)
def evaluation_tables(key: tuple, scored_counts: tuple):
    """Cached on the choice and on how many scores each system has (new scores recompute)."""
    ev = evaluate(
        Store(), systems, selection["dataset"], selection["split"], selection["view"], options, filters,
        calibration_split, ui.backend(),
    )  # fmt: skip
    if len(ev.aligned.items) < 2:
        return ev, None, None
    return ev, ev.table(), ev.references()


def coverage_now() -> pd.DataFrame:
    return load(
        Store(), systems, selection["dataset"], selection["split"], selection["view"], options, filters, ui.backend()
    )[2]


def running_jobs() -> list[dict]:
    return [j for j in background.jobs() if j["running"] and j["dataset"] == selection["dataset"]]


@st.fragment(run_every=3)
def job_progress() -> None:
    """Progress of background scoring, from the jobs' logs (the store is left alone meanwhile); when the
    last job ends, the whole page reruns once with the new scores."""
    running = running_jobs()
    for job in running:
        st.caption(f"Scoring {job['system']} in the background: {job['last_line'] or 'starting…'}")
    if st.session_state.get("c_jobs_running") and not running:
        st.session_state["c_jobs_running"] = False
        st.rerun()
    st.session_state["c_jobs_running"] = bool(running)


st.subheader("Coverage")
coverage = coverage_now()
st.dataframe(
    coverage.assign(share=coverage["scored"] / coverage["items"].clip(lower=1)),
    hide_index=True,
    key="coverage",
    column_config={"share": st.column_config.ProgressColumn("coverage", min_value=0.0, max_value=1.0)},
)
busy = {j["system"] for j in running_jobs()}
todo = [s for s, row in zip(systems, coverage.itertuples()) if row.scored < row.items and s.label not in busy]
if todo and st.button(f"Score the missing items in the background ({len(todo)} systems)", key="c_score"):
    for system in todo:
        background.start_scoring(system, selection["dataset"], selection["split"], ui.server())
    st.session_state["c_jobs_running"] = True
job_progress()
scored_counts = tuple(coverage["scored"])
key = (
    tuple(s.label for s in systems),
    selection["dataset"],
    selection["split"],
    selection["view"],
    filters,
    calibration_split,
    ui.backend(),
)
ev, table, refs = evaluation_tables(key, scored_counts)
n_items = len(ev.aligned.items)
if table is None:
    st.info("Fewer than two items are scored by every system: score them above, or open items in Browse.")
    st.stop()
st.caption(f"Compared on the {n_items} items scored by every system (of {int(ev.coverage['items'].max())}).")
for label, overlap in ev.overlap.items():
    if overlap:
        st.warning(
            f"{label} was trained on {overlap} of these {n_items} items: its scores on them are not an evaluation."
        )

st.subheader("Metrics")
wide = table.assign(
    value=[
        f"{e:.3f} [{lo:.3f}, {hi:.3f}]" if not np.isnan(lo) else f"{e:.3f}"
        for e, lo, hi in zip(table["estimate"], table["low"], table["high"])
    ]
).pivot(index="system", columns="metric", values="value")
wide = wide[[m for m in compare.METRICS if m in wide.columns]].rename(columns={m: compare.METRICS[m][0] for m in wide})
wide = wide.reindex([p.label for p in ev.predictions])
st.dataframe(wide, key="metrics_table")
fits = table[table["metric"].isin(["dirichlet", "calibrated_xent"])].groupby("system")[["c", "T"]].max()
st.caption(
    "Estimate [95% bootstrap interval, 1,000 resamples of items]. soft xent, Dirichlet score, calibrated xent "
    "in nats per item (lower is better); accuracy against the majority, tied items left out; ECE with 10 bins; "
    "position bias = mean P(first-listed) − 0.5. c and T* per system: "
    + "; ".join(f"{s} c={r['c']:.3g}, T*={r['T']:.3g}" for s, r in fits.iterrows())
    + f" ({calibration}). The human ceiling scores the second 5-vote sample, smoothed as (1 + n) / (N + K)."
)
ref_col, export_col = st.columns([1, 2])
with ref_col:
    st.caption("References on these items (soft xent)")
    st.dataframe(refs, hide_index=True, key="references")
with export_col:
    paper = table[["system", "metric", "estimate", "low", "high", "items", "c", "T", "calibration"]]
    ui.export_table(paper, "metrics", lambda: ui.manifest(ev.aligned.items, "metric table"), key="x_metrics")

labels = [p.label for p in ev.predictions]
if len(labels) >= 2:
    st.subheader("Paired difference")
    a_col, b_col = st.columns(2)
    a = a_col.selectbox("System A", labels, index=min(1, len(labels) - 1), key="c_a")
    b = b_col.selectbox("System B", labels, index=0, key="c_b")
    if a != b:
        paired = ev.paired(a, b)
        st.dataframe(paired, hide_index=True, key="paired")
        st.caption("A − B on the same resampled items; `favours` names the better system when the interval excludes 0.")

model_preds = ev.model_predictions()
counts = ev.counts
items = ev.aligned.items
st.subheader("Reliability")
reliability = reliability_chart(compare.reliability(counts, ev.predictions))
st.plotly_chart(reliability, width="stretch", key="reliability_chart")
ui.export_figure(reliability, "reliability", lambda: ui.manifest(items, "reliability diagram"), key="x_reliability")

st.subheader("Humans against models, per item")
option = st.selectbox("Option", options, key="c_option") if len(options) > 2 else options[0]
k = options.index(option)
human = counts[:, k] / counts.sum(axis=1)
points = pd.concat(
    [
        pd.DataFrame(
            {
                "system": p.label,
                "model": p.p[:, k],
                "human": human,
                "split": items["split"],
                "item_id": items["item_id"],
            }
        )
        for p in model_preds
    ],
    ignore_index=True,
)
scatter = scatter_chart(points, option)
clicked = st.plotly_chart(scatter, width="stretch", key="scatter_chart", on_select="rerun", selection_mode="points")
st.caption("Click a point to open the item in Browse.")
if clicked and clicked.selection.points:
    split, item_id = clicked.selection.points[0]["customdata"]
    ui.open_in_browse(item_id, split)
ui.export_figure(
    scatter, "scatter", lambda: ui.manifest(items, "humans vs models scatter", {"option": option}), key="x_scatter"
)

st.subheader("Per-item differences")
base = model_preds[0]
per_item = {p.label: compare.item_metrics(counts, p)["xent"] for p in model_preds}
if len(model_preds) > 1:
    diffs = pd.DataFrame(
        {f"{p.label} − {base.label}": per_item[p.label] - per_item[base.label] for p in model_preds[1:]}
    )
    x_title = "soft xent difference (nats; < 0: better than the base)"
else:
    diffs = pd.DataFrame({base.label: per_item[base.label]})
    x_title = "soft xent per item (nats)"
histogram = difference_histogram(diffs, x_title)
st.plotly_chart(histogram, width="stretch", key="difference_chart")
ui.export_figure(histogram, "differences", lambda: ui.manifest(items, "per-item differences"), key="x_differences")

st.subheader("Where they disagree most")
disagree = compare.disagreements(counts, items["item_id"], model_preds)
disagree.insert(1, "summary", items["summary"].to_numpy())
sort_by = st.selectbox("Sort by", list(disagree.columns[2:]), key="c_sort")
st.dataframe(
    disagree.sort_values(sort_by, ascending=False).head(25),
    hide_index=True,
    key="disagreements",
    column_config={"summary": st.column_config.TextColumn("scenario", width="large")},
)
