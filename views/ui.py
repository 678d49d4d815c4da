"""Streamlit pieces shared by the pages: the sidebar's choices, scoring on demand, export buttons.

Streamlit lives only in `app.py` and `views/`; everything here is a thin layer over the library.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from ethdash import settings
from ethdash.errors import EthdashError
from ethdash.evaluation import export
from ethdash.scoring import System, service
from ethdash.store import Store

# Streamlit forgets a widget's value when its page is not drawn; these keys are re-assigned on every run
# (see `keep_page_state`) so that filters and choices survive a visit to another page.
PAGE_STATE = (
    "f_contro", "f_margin", "f_search", "f_types", "f_tags", "f_against", "f_min_disagreement",
    "c_contro", "c_margin", "c_types", "c_search", "c_sample", "c_score_scope", "c_calibration",
    "c_a", "c_b", "c_option", "c_sort",
    "ft_run",
)  # fmt: skip


WORD_JOINER = "\u2060"
_AUTOLINK = re.compile(r"(?i)(?::/|www\.|@)")  # the second character of each gets a joiner before it
_MARKDOWN = re.compile(r"[\\`*_{}\[\]()<>#+\-.!|~:$&/@=\"'^]")


def md(text: object) -> str:
    """Text from outside (ids, file names, tags, names) made literal inside a Markdown string: Streamlit's
    captions and messages render Markdown (and its `:icon:` and `:color[...]` directives). Every character
    Markdown could read as syntax becomes a numeric character reference, which Markdown shows as that
    character and never as syntax. Streamlit's Markdown then turns URL-like text into links (GFM autolinks,
    found in the decoded text), so an invisible word joiner goes inside `://`, `www.` and before `@`."""
    joined = _AUTOLINK.sub(lambda m: m.group(0)[:-1] + WORD_JOINER + m.group(0)[-1], str(text))
    return _MARKDOWN.sub(lambda m: f"&#{ord(m.group(0))};", joined)


def keep_page_state() -> None:
    for key in PAGE_STATE:
        if key in st.session_state:
            st.session_state[key] = st.session_state[key]


def open_in_browse(item_id: str, split: str | None = None) -> None:
    """Open an item on Browse with the same sidebar choice (dataset, split, view, model, template,
    adapters, annotator): `st.switch_page` drops the URL's parameters unless they are passed on."""
    params = st.query_params.to_dict()
    params["item"] = item_id
    if split is not None and params.get("split") not in (None, "all splits"):
        params["split"] = split
    st.switch_page("views/browse.py", query_params=params)


@dataclass(frozen=True)
class Selection:
    """What the sidebar chose, the one thing pages read from app.py (set on every run before the page)."""

    dataset: str
    split: str | None  # None: all splits
    view: str
    options: tuple[str, ...]
    kind: str  # "dilemmas", "anecdotes" or "custom"
    model: str
    template: str | None  # None: no template fits this dataset and view
    adapters: tuple[str, ...]
    backend: str  # "local" (the embedded model, in this process), "vllm" or "openai"
    server: str | None  # the server's URL; None: the one `ethdash serve` recorded, or a hosted model's own
    annotator: str  # "" until a name is typed

    @property
    def via(self) -> service.Via:
        return service.Via(self.backend, self.server)

    @property
    def scored_by(self) -> str:
        """Where the scores shown come from, in words (Markdown-safe)."""
        where = f" at {md(self.server)}" if self.server else ""
        if self.backend == "vllm":
            return "a vLLM server" + (where or " (the one `ethdash serve` started)")
        if self.backend == "openai":
            return "an OpenAI-compatible API" + (where or " (the model's registered URL, or `ethdash serve`'s)")
        return "the embedded model, in this process"

    @property
    def systems(self) -> list[System]:
        """Base model and the chosen adapters, through the chosen template (none without a template)."""
        if not self.template:
            return []
        return [System(self.model, adapter, self.template) for adapter in (None, *self.adapters)]


_SELECTION = "ethdash_selection"


def set_selection(chosen: Selection) -> None:
    st.session_state[_SELECTION] = chosen


def signed_in() -> bool:
    """True without a password (ETHDASH_APP_PASSWORD unset) or once this session gave it; else the sign-in
    form is drawn and False returned."""
    password = settings.app_password()
    if password is None or st.session_state.get("signed_in"):
        return True
    st.title("ethdash")
    with st.form("sign_in"):
        given = st.text_input("Password", type="password")
        if st.form_submit_button("Sign in"):
            if hmac.compare_digest(given.encode(), password.encode()):
                st.session_state["signed_in"] = True
                st.rerun()
            st.error("Wrong password.")
    return False


def selection() -> Selection:
    return st.session_state[_SELECTION]


def ensure_scored(
    systems: list[System], dataset: str, split: str, item_ids: tuple[str, ...]
) -> list[pd.DataFrame | None]:
    """Each system's stored scores for these items (None where it failed, with the error shown),
    computed first (with a spinner) where missing."""
    store = Store()
    found: dict[System, pd.DataFrame | None] = {}
    missing = []
    chosen = selection()
    with store.connect():  # one unit of work for every lookup: opening the store is the costly part
        for system in systems:
            try:
                prepared = service.prepare(
                    store, system.job(dataset, split, chosen.backend, item_ids), chosen.server, top_k=chosen.via.top_k
                )
            except EthdashError as exc:
                st.error(f"{md(system.label)}: {md(exc)}")
                found[system] = None
                continue
            if prepared.plan.todo and settings.read_only():  # read-only: what is stored, nothing computed
                stored = service.scores(store, prepared)
                found[system] = stored if len(stored) else None
                if not len(stored):
                    st.caption(f"{md(system.label)}: no stored scores here (read-only: nothing is computed)")
            elif prepared.plan.todo:
                missing.append((system, prepared))
            else:
                found[system] = service.scores(store, prepared)
    for system, prepared in missing:  # outside the unit: scoring takes a while and other processes write too
        found[system] = _score(store, system, prepared)
    return [found[system] for system in systems]


def _score(store: Store, system: System, prepared: service.Prepared) -> pd.DataFrame | None:
    try:
        with st.spinner(f"Scoring with {system.label}…"):
            service.run(store, prepared)
        for item_id, _, why in prepared.plan.too_long[:3]:
            st.warning(f"{md(system.label)}: item {md(item_id)} is not scored: {md(why)}")
        return service.scores(store, prepared)
    except EthdashError as exc:
        st.error(f"{md(system.label)}: {md(exc)}")
        return None


def manifest(items: pd.DataFrame, what: str, extra: dict | None = None) -> dict:
    """The export manifest of the current sidebar choice over these items."""
    sel = selection()
    return export.manifest(
        Store(),
        model=sel.model,
        adapter_names=list(sel.adapters),
        template=sel.template,
        dataset=sel.dataset,
        split=sel.split,
        items=items,
        what=what,
        extra={"backend": sel.backend, **(extra or {})},
    )


# The manifests are built only when the button is pressed (`meta` is a function): they hash the
# data and the adapters, which every rerun would otherwise pay for.


def export_figure(fig: go.Figure, stem: str, meta: Callable[[], dict], key: str) -> None:
    """A button that writes the figure as PNG, SVG and PDF with its manifest, then offers the files."""
    _export(key, stem, lambda folder: export.write_figure(fig, folder, stem, meta()), "figure")


def export_table(
    frame: pd.DataFrame,
    stem: str,
    meta: Callable[[], dict],
    key: str,
    caption: str = "",
    latex: Callable[[], str] | None = None,
) -> None:
    """A button that writes the table as CSV, Parquet and LaTeX (`latex()` where the printed form differs
    from the frame) with its manifest, then offers the files."""

    def write(folder: Path) -> list[Path]:
        return export.write_table(frame, folder, stem, meta(), caption, latex() if latex else None)

    _export(key, stem, write, "table")


def _export(key: str, stem: str, write, what: str) -> None:
    with st.expander(f"Export this {what}"):
        if st.button(f"Write {what} files", key=f"{key}_write"):
            try:
                with st.spinner("Exporting…"):
                    folder = export.export_folder(settings.exports_dir(), stem)
                    st.session_state[f"{key}_files"] = [str(p) for p in write(folder)]
            except EthdashError as exc:
                st.error(md(exc))
        files = st.session_state.get(f"{key}_files", [])
        if files:
            st.caption(f"Written to `{Path(files[0]).parent}`")
            columns = st.columns(len(files))
            for column, name in zip(columns, files):
                path = Path(name)
                label = "manifest" if path.name.endswith(".manifest.json") else path.suffix.lstrip(".")
                column.download_button(label, path.read_bytes(), path.name, key=name)
