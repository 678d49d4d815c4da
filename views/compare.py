"""Compare: systems against the humans and against each other, with bootstrap intervals."""

import pandas as pd
import streamlit as st

from ethdash import agreement, annotations, settings, templates
from ethdash.datasets import catalog
from ethdash.datasets.selection import Filters
from ethdash.durations import human_duration
from ethdash.errors import EthdashError
from ethdash.evaluation import CROSS_FIT, evaluate, load, measures, paper, sensitivity, statistics
from ethdash.evaluation.figures import difference_histogram, reliability_chart, scatter_chart, scatter_sample
from ethdash.evaluation.frames import human_vs_model, metric_cells, xent_differences
from ethdash.evaluation.kept import StoredBootstrap
from ethdash.evaluation.people import people_table
from ethdash.scoring import System, background, jobs
from ethdash.store import Store
from views import ui

selection = ui.selection()
systems = selection.systems
options = tuple(selection.options)
store = Store()
# A large split's bootstrap is computed once, then read from the store (by this and every later process).
statistics.keep_in(StoredBootstrap(store))

st.header(f"Compare · {ui.md(selection.dataset)} · {ui.md(selection.split or 'all splits')}")
if not systems:
    st.info("No template fits this dataset and view: choose another view in the sidebar.")
    st.stop()
st.caption(
    "Systems: the base model and the adapters chosen in the sidebar, through the template "
    f"`{systems[0].template}`, scored by {selection.scored_by}. Add adapters there to compare them."
)
# Prompt sensitivity: the same model and adapters asked through other templates (paraphrases) too.
others = [t for t in templates.for_view(selection.dataset, selection.view) if t != selection.template]
also = st.multiselect(
    "Also ask through these templates (prompt sensitivity)",
    others,
    key="c_templates",
    help="Each model and adapter under each template is a system; their consistency across templates is shown below.",
)
if also:
    systems = [
        System(s.model, s.adapter, template, named_by_template=True)
        for s in selection.systems
        for template in (selection.template, *also)
    ]

with st.expander("Slice the items", expanded=False):
    left, middle, right = st.columns([1, 2, 2])
    contro = left.radio("Controversial", ["all", "yes", "no"], horizontal=True, key="c_contro")
    margin = middle.slider("Vote margin", 0.0, 1.0, (0.0, 1.0), step=0.05, key="c_margin")
    # Dilemmas have three margins only: words are what narrows them to a few dozen items.
    search = right.text_input("Search text", key="c_search", placeholder="words in the title, text or actions")
    types_col, sample_col = st.columns([3, 1])
    known_types = catalog.post_types(store, selection.dataset)
    post_types = types_col.multiselect("Post type", known_types, key="c_types") if known_types else []
    sample = sample_col.number_input(
        "At most (items; 0: all)",
        min_value=0,
        value=0,
        step=50,
        key="c_sample",
        help="A quick look: a fixed pseudo-random sample of the sliced items, the same on every visit.",
    )
filters = Filters(
    {"all": None, "yes": True, "no": False}[contro], margin, search, tuple(post_types), sample=int(sample) or None
)

other_splits = [s for s in catalog.splits(store, selection.dataset) if s != selection.split]
calibration = st.radio(
    "Fit c and T* on",
    ["the compared items, cross-fitted (2 folds)", *(f"split {s}" for s in other_splits)],
    horizontal=True,
    key="c_calibration",
    help="c (Dirichlet score) and T* (calibrated xent) are never fitted on the items they score.",
)
calibration_split = CROSS_FIT if calibration.startswith("the compared") else calibration.removeprefix("split ")


@st.cache_data(show_spinner="Computing metrics and bootstrap intervals…", max_entries=16)
def evaluation_tables(
    chosen: ui.Selection, systems: tuple, filters: Filters, calibration_split: str | None, store_state: tuple
):
    """Cached on every input it reads (all are arguments) and on the store's state (its items and votes, its
    scores, how many each system has), so that new scores or re-imported votes recompute it."""
    ev = evaluate(
        Store(), list(systems), chosen.dataset, chosen.split, chosen.view, chosen.options, filters,
        calibration_split, chosen.via,
    )  # fmt: skip
    ev = ev.without_texts()  # Compare shows no item text; Streamlit copies what it caches on every rerun
    if len(ev.aligned.items) < 2:
        return ev, None, None
    return ev, ev.table(), ev.references()


def selected_now() -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the items of the slice, coverage per system), read from the store now."""
    table, _, coverage = load(
        Store(), systems, selection.dataset, selection.split, selection.view, options, filters, selection.via
    )
    return table, coverage


def page_jobs() -> list[dict]:
    """The background jobs of this dataset and split: running ones first, then the last few that ended."""
    here = [j for j in background.jobs() if j["dataset"] == selection.dataset and j["split"] == selection.split]
    return [j for j in here if j["running"]] + [j for j in here if not j["running"]][:JOBS_SHOWN]


JOBS_SHOWN = 6  # ended jobs listed under the coverage


def _cancel(job_id: str) -> None:
    try:
        background.cancel(job_id)
    except EthdashError as exc:  # it ended meanwhile: its state says how
        st.session_state["c_job_message"] = str(exc)


def _job_line(job: dict) -> None:
    what = f"{job['items']} sliced items" if job.get("items") else "the whole split"
    progress = job["progress"]
    system = ui.md(job["system"])
    if job["state"] == background.RUNNING:
        text, share = f"**{system}** on {what}: running, loading the model…", 0.0
        if progress.to_compute is not None:
            share = progress.done / progress.to_compute if progress.to_compute else 1.0
            rate = f", {progress.rate:.1f} scores/s" if progress.rate else ""
            left = f", about {human_duration(progress.eta_s)} left" if progress.eta_s is not None else ""
            text = f"**{system}** on {what}: running, {progress.done} of {progress.to_compute} scores{rate}{left}"
        bar, button = st.columns([6, 1], vertical_alignment="bottom")
        bar.progress(min(share, 1.0), text=text)
        if not settings.read_only():
            button.button("Cancel", key=f"c_cancel_{job['id']}", on_click=_cancel, args=(job["id"],))
        return
    took = human_duration(max(job["ended_at"] - job["started_at"], 0.0))
    if job["state"] == background.FINISHED:
        st.caption(f":material/check_circle: **{system}** on {what}: finished in {took}.")
    elif job["state"] == background.CANCELLED:
        st.caption(f":material/cancel: **{system}** on {what}: cancelled after {took}.")
    else:
        st.error(f"**{system}** on {what}: failed after {took}. The end of its log:", icon=":material/error:")
        st.code(job["log_tail"] or "(empty log)", language=None)


def _start_jobs(todo: list, item_ids: list[str] | None) -> None:
    for system in todo:
        background.start_scoring(system, selection.dataset, selection.split, selection.via, item_ids)
    st.session_state["c_jobs_running"] = True


def coverage_section(items: pd.DataFrame, coverage: pd.DataFrame) -> None:
    """Coverage, the background-scoring button and the jobs. While jobs run it redraws itself every 3 s
    with coverage read afresh; when the last one ends the whole page reruns once with the new scores."""
    jobs_here = page_jobs()
    running = [j for j in jobs_here if j["running"]]
    if not st.session_state.pop("c_coverage_fresh", False):  # a rerun of this part alone: read it again
        items, coverage = selected_now()
    whole = selection.split or "all splits"
    st.dataframe(
        coverage.assign(share=coverage["scored"] / coverage["items"].clip(lower=1))[
            ["system", "scored", "items", "share", "split_scored", "split_items"]
        ],
        hide_index=True,
        key="coverage",
        column_config={
            "share": st.column_config.ProgressColumn("coverage", min_value=0.0, max_value=1.0),
            "split_scored": st.column_config.NumberColumn(f"scored in {whole}"),
            "split_items": st.column_config.NumberColumn(f"items in {whole}"),
        },
    )
    st.caption(
        "Scored of the sliced items: " + "; ".join(f"{r.system} {r.scored} of {r.items}" for r in coverage.itertuples())
    )
    sliced = len(items) < int(coverage["split_items"].max())
    only_slice = sliced and st.radio(
        "Score in the background",
        [f"the sliced items ({len(items)})", f"the whole of {whole} ({int(coverage['split_items'].max())})"],
        horizontal=True,
        key="c_score_scope",
        help="The sliced items are those the page compares; the whole split ignores the slice.",
    ).startswith("the sliced")
    scored, total = ("scored", "items") if only_slice else ("split_scored", "split_items")
    busy = {j["system"] for j in running}
    todo = [
        s for s, row in zip(systems, coverage.to_dict("records")) if row[scored] < row[total] and s.label not in busy
    ]
    # The label names the scope, so a click can only start what the person sees (and a test can wait for it).
    scope = f"{len(items)} items" if only_slice else f"the whole of {whole}"
    label = f"Score the missing items in the background ({len(todo)} systems, {scope})"
    if todo and settings.read_only():
        st.caption("Read-only: missing scores are computed from the command line (`ethdash score`).")
    elif todo and st.button(label, key="c_score"):
        _start_jobs(todo, list(items["item_id"]) if only_slice else None)
        st.rerun()  # the whole page, so that this part redraws itself while the jobs run
    if message := st.session_state.pop("c_job_message", None):
        st.info(message)
    for job in jobs_here:
        _job_line(job)
    if st.session_state.get("c_jobs_running") and not running:
        st.session_state["c_jobs_running"] = False
        st.rerun()  # the last job ended: the metrics below take its scores
    st.session_state["c_jobs_running"] = bool(running)


st.subheader("Coverage")
slice_items, coverage = selected_now()
st.session_state["c_coverage_fresh"] = True
polling = any(j["running"] for j in page_jobs())
st.fragment(coverage_section, run_every=3 if polling else None)(slice_items, coverage)
with store.connect():
    store_state = (catalog.items_version(store), jobs.scores_version(store), tuple(coverage["scored"]))
ev, table, refs = evaluation_tables(selection, tuple(systems), filters, calibration_split, store_state)
n_items = len(ev.aligned.items)
if table is None:
    st.info("Fewer than two items are scored by every system: score them above, or open items in Browse.")
    st.stop()
st.caption(f"Compared on the {n_items} items scored by every system (of {int(ev.coverage['items'].max())}).")
if ev.judgments_note():
    st.info(ev.judgments_note(), icon=":material/info:")
if ev.censored_note():  # scores from an API's top-k (the openai backend)
    st.info(ui.md(ev.censored_note()), icon=":material/info:")
for label, overlap in ev.overlap.items():
    if overlap:
        st.warning(
            f"{label} was trained on {overlap} of these {n_items} items: its scores on them are not an evaluation."
        )

st.subheader("Metrics")
notes = statistics.table_warnings(table)
if notes:
    st.warning("\n".join(f"- {ui.md(note)}" for note in notes), icon=":material/warning:")


def metric_grid(family: str, key: str) -> None:
    """Estimate, then its interval on a second line of the cell: every column fits a 1400 px window, the most
    important metrics first."""
    wide = metric_cells(table, [p.label for p in ev.predictions], family)
    st.dataframe(
        wide,
        key=key,
        row_height=66,
        column_config={
            "_index": st.column_config.TextColumn("system", width=170),
            **{name: st.column_config.TextColumn(name, width=105) for name in wide.columns},
        },
    )


metric_grid("study", "metrics_table")
# Only what these items have: option orders (dilemmas) and a second human sample (the ceiling).
has_ceiling = statistics.HUMAN_CEILING in [p.label for p in ev.predictions]
st.caption(
    "Estimate [95% bootstrap interval, 1,000 resamples of items]. soft xent, Dirichlet score, calibrated xent "
    "in nats per item (lower is better); accuracy against the majority, tied items left out; ECE with 10 bins"
    + ("; position bias = mean P(first-listed) − 0.5" if selection.kind == "dilemmas" else "")
    + ". c and T* per system: "
    + "; ".join(f"{p.label} {statistics.fit_summary(p)}" for p in ev.predictions)
    + f" ({calibration})."
    + (" The human ceiling scores the second human sample, smoothed as (1 + n) / (N + K)." if has_ceiling else "")
)
st.markdown(f"**{measures.FAMILIES['field']}**")
metric_grid("field", "field_metrics_table")
st.caption(
    "JS divergence (nats, at most ln 2) and total variation between the human and the system's distributions; "
    "macro-F1 and balanced accuracy of the system's most probable option against the majority (tied items "
    "left out); entropy ρ: Spearman correlation over items of the humans' entropy with the system's (higher: it "
    "hesitates where people disagree; not shown where every item has the same vote split); mass outside "
    "answers: probability on tokens that are no answer. Wasserstein-1 only where the dataset declares its "
    "options a scale. Definitions: the README, Metrics."
)
ref_col, export_col = st.columns([1, 2])
with ref_col:
    st.caption("References on these items (soft xent)")
    st.dataframe(refs, hide_index=True, key="references")
with export_col:
    ui.export_table(
        table[paper.TABLE_COLUMNS],
        "metrics",
        lambda: {**ui.manifest(ev.aligned.items, "metric table"), "warnings": notes},
        key="x_metrics",
        caption=f"Metrics on {n_items} items, estimate and 95% bootstrap interval ({calibration}).",
        latex=lambda: paper.tables(ev, table=table).metrics_latex(f"Metrics ({calibration})"),
    )
    ui.export_table(
        refs,
        "references",
        lambda: ui.manifest(ev.aligned.items, "references"),
        key="x_references",
        caption=f"Reference soft xent (nats) on the same {n_items} items.",
    )

labels = [p.label for p in ev.predictions]
if len(labels) >= 2:
    st.subheader("Paired difference")
    a_col, b_col = st.columns(2)
    a = a_col.selectbox("System A", labels, index=min(1, len(labels) - 1), key="c_a")
    b = b_col.selectbox("System B", labels, index=0, key="c_b")
    if a != b:
        paired = ev.paired(a, b)
        paired["metric"] = paired["metric"].map(measures.readable)
        st.dataframe(paired, hide_index=True, key="paired")
        st.caption("A − B on the same resampled items; `favours` names the better system when the interval excludes 0.")
        ui.export_table(
            paired.assign(system=a, against=b),
            "paired",
            lambda: ui.manifest(ev.aligned.items, "paired differences", {"a": a, "b": b}),
            key="x_paired",
            caption=f"{a} minus {b} on the same resampled {n_items} items, 95% bootstrap intervals.",
        )

model_preds = ev.model_predictions()
counts = ev.counts
items = ev.aligned.items


@st.cache_data(show_spinner="Scoring the annotators…", max_entries=16)
def people_tables(
    chosen: ui.Selection,
    systems: tuple,
    filters: Filters,
    calibration_split: str | None,
    store_state: tuple,
    people_version: tuple,
):
    """(labels on the compared items, α, pairwise agreement, each person's metric table): cached on the
    metrics' inputs and on the annotations' state (`people_version`), so a new annotation recomputes it."""
    ev, _, _ = evaluation_tables(chosen, systems, filters, calibration_split, store_state)
    items = ev.aligned.items
    labels = annotations.labels(Store(), chosen.dataset, chosen.view, chosen.options, chosen.split)
    here = labels[labels["item"].isin(items["split"] + "/" + items["item_id"])]
    if here.empty:
        return here, None, None, pd.DataFrame()
    several = here["annotator"].nunique() >= 2
    alpha = agreement.krippendorff_alpha(here) if several else None
    pairs = agreement.pairwise(here).round(3) if several else None
    long = people_table(ev.counts, items, ev.model_predictions(), here, chosen.options, ordered=ev.ordered)
    return here, alpha, pairs, long


def people_section() -> None:
    """Agreement among the people who labelled these items, and each of them scored like a system."""
    with store.connect():
        people_version = annotations.version(store)  # imported labels come with the items (store_state)
    here, alpha, pairs, long = people_tables(
        selection, tuple(systems), filters, calibration_split, store_state, people_version
    )
    st.subheader("People")
    if here.empty:
        st.caption(
            "Nobody has labelled these items: annotate them on Browse (or import per-annotator labels), and each "
            "annotator is scored here beside the models, with the agreement among them."
        )
        return
    if alpha is not None:
        st.markdown(
            f"Krippendorff's α (nominal) among {here['annotator'].nunique()} annotators: **{alpha.value:.3f}** "
            f"[{alpha.low:.3f}, {alpha.high:.3f}] over {alpha.items} items labelled by two people or more."
        )
        st.dataframe(pairs, hide_index=True, key="agreement_pairs")
    if long.empty:
        st.caption("No annotator has labelled two of these items yet: a person is scored from two items on.")
        return
    shown = ["xent", "accuracy", "brier", "jsd", "tv"]
    for person, rows in long[long["metric"].isin(shown)].groupby("person", sort=False):
        st.caption(f"{ui.md(person)}: {int(rows['items'].iloc[0])} items, and the models on the same items")
        st.dataframe(metric_cells(rows, list(dict.fromkeys(rows["system"])), None), key=f"people_{person}")
    st.caption(
        "A judgment as a distribution: the chosen option gets the annotator's confidence (1 without one), the "
        "others share the rest, mixed with the uniform distribution at weight 0.01; pooled: the mean of the "
        "annotators' distributions. Estimates with 95% bootstrap intervals over that person's items."
    )


people_section()


def sensitivity_section() -> None:
    """Each model + adapter across the templates: its consistency, and the items that move most."""
    st.subheader("Template sensitivity")
    consistency = paper.consistency_table(ev)
    st.dataframe(consistency.round(4), hide_index=True, key="consistency")
    st.caption(
        "Per model and adapter, over the compared items and every pair of templates: the mean total variation "
        "between the two templates' distributions (0: the wording never matters) and how often their most "
        "probable options agree. Definitions: the README, Metrics."
    )
    by_system = paper.by_template(ev)
    name = st.selectbox("Items most sensitive to the template, for", list(by_system), key="c_sensitive_for")
    table = sensitivity.most_sensitive(items, by_system[name], options)
    picked = st.dataframe(table, hide_index=True, key="sensitive_items", on_select="rerun", selection_mode="single-row")
    st.caption("Pick a row to open the item in Browse.")
    if picked and picked.selection.rows:
        row = table.iloc[picked.selection.rows[0]]
        ui.open_in_browse(row["item_id"], row["split"])


if also:
    sensitivity_section()

st.subheader("Reliability")
reliability = reliability_chart(statistics.reliability(counts, ev.predictions))
st.plotly_chart(reliability, width="stretch", key="reliability_chart")
ui.export_figure(reliability, "reliability", lambda: ui.manifest(items, "reliability diagram"), key="x_reliability")

st.subheader("Humans against models, per item")
option = st.selectbox("Option", options, key="c_option") if len(options) > 2 else options[0]
k = options.index(option)
points = human_vs_model(counts, items, model_preds, k)
scatter = scatter_chart(points, option)
clicked = st.plotly_chart(scatter, width="stretch", key="scatter_chart", on_select="rerun", selection_mode="points")
drawn = len(scatter_sample(len(items)))
st.caption(
    "Click a point to open the item in Browse. Diamonds: each system's mean probability at each human share, "
    "with its 95% interval"
    + (f" (over all {len(items):,} items; points: a fixed sample of {drawn:,})." if drawn < len(items) else ".")
)
item_points = [p for p in (clicked.selection.points if clicked else []) if len(p.get("customdata") or ()) == 2]
if item_points and isinstance(item_points[0]["customdata"][1], str):  # a mean's diamond is no item
    split, item_id = item_points[0]["customdata"]
    ui.open_in_browse(item_id, split)
ui.export_figure(
    scatter, "scatter", lambda: ui.manifest(items, "humans vs models scatter", {"option": option}), key="x_scatter"
)

st.subheader("Per-item differences")
diffs, x_title = xent_differences(counts, model_preds)
histogram = difference_histogram(diffs, x_title)
st.plotly_chart(histogram, width="stretch", key="difference_chart")
ui.export_figure(histogram, "differences", lambda: ui.manifest(items, "per-item differences"), key="x_differences")

st.subheader("Where they disagree most")
disagree = statistics.disagreements(counts, items["item_id"], model_preds)
disagree.insert(1, "summary", items["summary"].to_numpy())
sort_by = st.selectbox("Sort by", list(disagree.columns[2:]), key="c_sort")
st.dataframe(
    disagree.sort_values(sort_by, ascending=False).head(25),
    hide_index=True,
    key="disagreements",
    column_config={"summary": st.column_config.TextColumn("scenario", width="large")},
)
