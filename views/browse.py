"""Browse: filter the items of the chosen dataset and split, read one with its human vote split."""

import hashlib

import pandas as pd
import streamlit as st

from ethdash import annotation_queue, annotations
from ethdash.datasets import catalog
from ethdash.datasets.items import RESPONDENTS, SHARES
from ethdash.datasets.selection import (
    Filters,
    apply_filters,
    item_table,
    with_disagreement,
    with_tags,
)
from ethdash.errors import EthdashError
from ethdash.evaluation.aligned import probabilities
from ethdash.evaluation.figures import vote_split_chart
from ethdash.evaluation.frames import system_rows, vote_split
from ethdash.store import Store
from views import ui

FILTER_KEYS = tuple(k for k in ui.PAGE_STATE if k.startswith("f_"))

selection = ui.selection()
systems = selection.systems

options = tuple(selection.options)
store = Store()
with store.connect():  # one unit of work for these reads (opening the store costs about 20 ms)
    table = item_table(store, selection.dataset, selection.split, selection.view, options)
    current_annotations = annotations.current(store, selection.dataset)  # tags here, the queue below
    judgments = catalog.judgments(store, selection.dataset, selection.view)
    if not table.empty:
        table = with_tags(table, current_annotations)

st.header(f"{ui.md(selection.dataset)} · {ui.md(selection.split or 'all splits')}")
if table.empty:
    st.info("No items with votes in this view.")
    st.stop()

left, middle, right = st.columns([1, 2, 2])
contro = left.radio("Controversial", ["all", "yes", "no"], horizontal=True, key="f_contro")
margin = middle.slider("Vote margin (top share − second)", 0.0, 1.0, (0.0, 1.0), step=0.05, key="f_margin")
search = right.text_input("Search text", key="f_search", placeholder="words in the title, text or actions")
post_types = sorted(t for t in table["post_type"].dropna().unique())
types_col, tags_col, disagree_col = st.columns([2, 2, 3])
chosen_types = types_col.multiselect("Post type", post_types, key="f_types") if post_types else []
all_tags = sorted({t for tags in table["tags"] for t in tags})
chosen_tags = tags_col.multiselect("Annotation tags", all_tags, key="f_tags", disabled=not all_tags)
min_disagreement = None
if systems:
    with disagree_col:
        by_label = {s.label: s for s in systems}
        against = st.selectbox("Disagreement with humans for", ["off", *by_label], key="f_against")
        if against != "off":
            min_disagreement = st.slider(
                "…greater than (total variation)", 0.0, 1.0, 0.3, step=0.05, key="f_min_disagreement"
            )
            _, probs = probabilities(store, by_label[against], selection.dataset, selection.split, selection.via)
            table = with_disagreement(table, probs)
            st.caption(f"{len(probs)} of {len(table)} items scored by {ui.md(against)}; unscored items are hidden.")
filters = Filters(
    {"all": None, "yes": True, "no": False}[contro],
    margin,
    search,
    tuple(chosen_types),
    tuple(chosen_tags),
    min_disagreement,
)
shown = apply_filters(table, filters).reset_index(drop=True)
st.caption(f"{len(shown)} of {len(table)} items")
if shown.empty:
    st.info("No item passes these filters.")
    st.stop()

# The open item. Previous / Next, a picked row and the URL's `item` always agree: each of them sets
# the item through a callback (run before the page, once per action) and the page reads it from there.
# A row stays picked in the table only until Previous / Next moves away from it (the table is redrawn).
state = st.session_state
scope = f"{selection.dataset}/{selection.split}"
ids = shown["item_id"].tolist()
state["browse_ids"] = ids
opened = state.setdefault("browse_open", {})  # the open item per dataset and split, kept across pages
url_written = state.setdefault("_url_written", {})


def _go(item_id: str) -> None:
    state["browse_goto"] = item_id


def _step(delta: int) -> None:
    current = state["browse_ids"]
    here = current.index(state["browse_current"]) if state.get("browse_current") in current else 0
    _go(current[max(0, min(len(current) - 1, here + delta))])
    state["browse_table"] = state.get("browse_table", 0) + 1  # redraw the table without a picked row


def _picked() -> None:
    rows = state[state["browse_table_key"]].selection.rows
    if rows:
        _go(state["browse_ids"][rows[0]])


in_url = st.query_params.get("item")
goto = state.pop("browse_goto", None)
if goto in ids:
    current = goto
elif in_url is not None and in_url != url_written.get("item") and in_url in set(table["item_id"].tolist()):
    current = in_url  # a link, a reload or a click on Compare: the URL names the item
    if current not in ids:  # hidden by the filters: clear them so that exactly this item opens
        for key in FILTER_KEYS:
            state.pop(key, None)
        _go(current)
        st.rerun()
elif opened.get(scope) in ids:
    current = opened[scope]
else:
    current = ids[0]
position = ids.index(current)
state["browse_current"] = opened[scope] = url_written["item"] = current
if in_url != current:
    st.query_params["item"] = current

table_key = f"items-{state.get('browse_table', 0)}-{hashlib.sha1(repr(filters).encode()).hexdigest()[:8]}"
state["browse_table_key"] = table_key
st.dataframe(
    shown[
        [
            *(["split"] if selection.split is None else []),
            "item_id",
            "summary",
            "split_text",
            "n_votes",
            "majority",
            "margin",
            "controversial",
            *(["disagreement"] if min_disagreement is not None else []),
            "tags",
        ]
    ],
    hide_index=True,
    on_select=_picked,
    selection_mode="single-row",
    # The table is redrawn, its open item's row picked, after Previous / Next and when the filters change
    # (its row numbers then name other items); a row the person picks stays as it is.
    selection_default={"selection": {"rows": [position]}},
    key=table_key,
    height=280,
    column_config={
        "item_id": st.column_config.TextColumn("id", width="small"),
        "summary": st.column_config.TextColumn("scenario", width="large"),
        "split_text": st.column_config.TextColumn("votes", help="Votes for " + " · ".join(options)),
        "n_votes": st.column_config.NumberColumn("N"),
        "margin": st.column_config.ProgressColumn("margin", min_value=0.0, max_value=1.0, format="%.2f"),
        "disagreement": st.column_config.NumberColumn("TV", format="%.2f", help="Total variation, humans vs model"),
        "tags": st.column_config.ListColumn("tags"),
    },
)

prev_col, info_col, next_col = st.columns([1.5, 5, 1.5])
prev_col.button(
    "Previous", icon=":material/chevron_left:", disabled=position == 0, width="stretch",
    on_click=_step, args=(-1,), shortcut="K", key="browse_previous",
)  # fmt: skip
next_col.button(
    "Next", icon=":material/chevron_right:", disabled=position >= len(ids) - 1, width="stretch",
    on_click=_step, args=(1,), shortcut="J", key="browse_next",
)  # fmt: skip
item = shown.iloc[position]
info_col.caption(
    f"Item {position + 1} of {len(ids)} · id {ui.md(item['item_id'])} · from {ui.md(item['source'])}:"
    f"{item['source_line']} · "
    "keys: J next, K previous (not while typing in a field)"
)

text_col, chart_col = st.columns([3, 2])
with text_col:
    # Scenario text comes from the internet: shown as plain text, never as Markdown or HTML.
    if item["title"]:
        st.caption("Title")
        st.text(item["title"])
    if selection.kind == "dilemmas":
        st.caption("Which action is worse?")
        for label, action in zip(options, item["actions"]):
            st.text(f"{label}: {action}")
    elif len(item["actions"]):
        st.caption("Action")
        st.text(item["actions"][0])
    if item["text"]:
        st.caption("Text")
        st.text(item["text"])
    # Only what this dataset has: custom data has no post types, and its "controversial" is a rule of ethdash's.
    facts = [f"Post type: {ui.md(item['post_type'])}"] if item["post_type"] else []
    controversial = "yes" if item["controversial"] else "no"
    rule = " (vote margin below 0.5)" if selection.kind == "custom" else ""
    st.caption(" · ".join([*facts, f"controversial: {controversial}{rule}"]))
with chart_col:
    has_counts = judgments != SHARES
    samples = [vote_split(item["counts"], options, "human votes" if has_counts else "human shares", 0.9, has_counts)]
    if item["second_counts"] is not None:
        samples.append(vote_split(item["second_counts"], options, "second human sample"))
    summaries = []
    item_scores = ui.ensure_scored(systems, selection.dataset, item["split"], (item["item_id"],))
    for system, scores in zip(systems, item_scores):
        if scores is not None:
            rows, summary = system_rows(scores, options, system.label)
            samples.append(rows)
            summaries.append(summary)
    title = "Human vote split and model probabilities" if summaries else "Human vote split"
    chart = vote_split_chart(pd.concat(samples, ignore_index=True), title)
    st.plotly_chart(chart, width="stretch", key="vote_chart")
    st.caption(
        (
            "Bars: share of votes or probability; whiskers: 90% posterior interval of the human share "
            "(Dirichlet, uniform prior"
            + ("; the shares times the item's respondents, rounded to whole votes" if judgments == RESPONDENTS else "")
            + ")."
            if has_counts
            else "Bars: the human shares as published (no number of respondents, so no interval) or probability."
        )
        + " Model probabilities are renormalised over the answers"
        + (", averaged over both option orders" if selection.kind == "dilemmas" else "")
        + (f"; scored by {selection.scored_by}." if summaries else ".")
    )
ui.export_figure(
    chart,
    "vote-split",
    lambda: ui.manifest(shown.iloc[[position]], "vote split", {"item": item["item_id"]}),
    key="x_vote",
)
if summaries and selection.kind == "dilemmas":  # option orders exist for dilemmas only
    st.caption(
        "Model probabilities per system: P_AB and P_BA are P(action 1) with action 1 listed first and "
        "second; position bias is the mean P(first-listed) − 0.5."
    )
if summaries:
    st.dataframe(pd.DataFrame(summaries), hide_index=True, key="system_table")

st.subheader("Your annotation")
annotator = selection.annotator
if not annotator:
    st.caption("Type your name in the sidebar's *Annotator* box to annotate.")
else:
    # The annotation queue: the listed items this annotator has not judged, most informative first.
    mine_done = current_annotations[
        (current_annotations["annotator"] == annotator) & current_annotations["judgment"].notna()
    ]
    done = set(zip(mine_done["split"], mine_done["item_id"]))
    order_col, next_col = st.columns([3, 1])
    order = order_col.selectbox(
        "Next to annotate, by", list(annotation_queue.ORDERS), format_func=annotation_queue.ORDERS.get, key="q_order"
    )
    system = by_label.get(against) if systems and against != "off" else (systems[0] if systems else None)
    queue_probs = None
    if order != "random" and system is not None:
        _, queue_probs = probabilities(store, system, selection.dataset, selection.split, selection.via)
    waiting = annotation_queue.queue(shown, catalog.counts_matrix(shown), done, order, queue_probs)
    waiting = [k for k in waiting if k != (item["split"], item["item_id"])]
    next_col.button(
        "Next to annotate",
        key="q_next",
        on_click=_go,
        args=(waiting[0][1],) if waiting else ("",),
        disabled=not waiting,
    )
    listed_done = sum((s, i) in done for s, i in zip(shown["split"], shown["item_id"]))
    scorer = f" (scores of {ui.md(system.label)})" if order != "random" and system is not None else ""
    st.caption(f"{ui.md(annotator)} has judged {listed_done} of the {len(shown)} listed items{scorer}.")
with store.connect():  # the form's start and the history below, in one unit of work (a save reruns the page)
    here = (selection.dataset, item["split"], item["item_id"])
    mine = annotations.latest(store, *here, annotator) if annotator else None
    saved = annotations.history(store, *here)
# The form starts from the annotator's current annotation; its widgets are keyed by that annotation, so
# that after a save (here or elsewhere) they show what is stored, and saving changes only what was edited.
version = f"{item['split']}-{item['item_id']}-{annotator}-{mine['created_at'] if mine else 'new'}"
choices = ["no judgment", *options]
with st.form(f"annotate-{version}"):
    judgment = st.radio(
        "Your judgment",
        choices,
        index=choices.index(mine["judgment"]) if mine and mine["judgment"] in options else 0,
        horizontal=True,
        key=f"a_judgment-{version}",
    )
    stored_confidence = mine["confidence"] if mine and not pd.isna(mine["confidence"]) else 0.5
    confidence = st.slider("Confidence", 0.0, 1.0, float(stored_confidence), step=0.05, key=f"a_confidence-{version}")
    tags = st.text_input(
        "Tags",
        value=", ".join(mine["tags"]) if mine and mine["tags"] is not None else "",
        placeholder="comma-separated, e.g. family, money",
        key=f"a_tags-{version}",
    )
    note = st.text_area("Note", value=mine["note"] or "" if mine else "", key=f"a_note-{version}")
    if st.form_submit_button("Save annotation", disabled=not annotator):
        annotation = annotations.Annotation(
            selection.dataset,
            item["split"],
            item["item_id"],
            annotator,
            None if judgment == "no judgment" else judgment,
            confidence,
            annotations.parse_tags(tags),
            note,
        )
        change = annotations.describe_change(mine, annotation.__dict__) if mine else "first save"
        if change == "no change":
            st.info("Nothing changed: not saved again.")
        else:
            try:
                annotations.save(store, annotation, options)
                state["annotation_saved"] = ui.md(f"Saved for {annotator}: {change}.")
                st.rerun()  # the form now starts from what was saved
            except EthdashError as exc:
                st.error(ui.md(exc))
if "annotation_saved" in state:
    st.success(state.pop("annotation_saved"))
if not saved.empty:
    st.caption("History of this item's annotations, newest first")
    st.dataframe(saved, hide_index=True, key="annotation_history")
