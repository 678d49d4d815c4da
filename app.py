"""The ethdash dashboard: declares the pages and the shared sidebar. Start it with `make run`."""

from contextlib import ExitStack

import streamlit as st

from ethdash import adapters, models, settings, templates
from ethdash.datasets import catalog
from ethdash.datasets.importer import import_demo_if_empty
from ethdash.errors import EthdashError
from ethdash.scoring import backends
from ethdash.store import Store
from views import ui

st.set_page_config(page_title="ethdash", page_icon=":material/balance:", layout="wide")
if not ui.signed_in():  # with ETHDASH_APP_PASSWORD set, nothing else runs before the password
    st.stop()


@st.cache_resource(show_spinner="Preparing the demo sample…")
def _ensure_items(path: str) -> None:
    """Once per app process: fall back to the shipped demo sample when the store is empty."""
    import_demo_if_empty(Store())


store = Store()
# The sidebar's reads share one unit of work: opening the store costs more than the queries. A store that
# cannot be opened (damaged, or locked too long) is one clear message, never a traceback.
sidebar_unit = ExitStack()
try:
    sidebar_unit.enter_context(store.connect())
    _ensure_items(str(store.path))
except EthdashError as exc:
    sidebar_unit.close()
    st.error(ui.md(exc), icon=":material/error:")
    st.stop()
params = st.query_params
ALL_SPLITS = "all splits"
# Short sidebar labels of the registered backends (ethdash.scoring.backends); another one shows by its name.
BACKEND_LABELS = {"local": "embedded model", "vllm": "vLLM server", "openai": "OpenAI-compatible API"}


def _synced_from_url(param: str, key: str, valid) -> None:
    """Seed a sidebar widget from the URL when the URL was changed from outside (a link, a reload, a
    click on another page that opens an item), else leave the widget as the person set it.

    The widget is the source of truth between interactions; the URL is written from it after each run
    (see `_to_url`). A URL value differs from the one last written only when something else set it. A
    widget without a value (`st.switch_page` drops every widget's state) is seeded from the URL too.
    """
    wanted = params.get(param)
    written = st.session_state.setdefault("_url_written", {})
    if wanted is not None and (wanted != written.get(param) or key not in st.session_state) and valid(wanted):
        st.session_state[key] = wanted


def _to_url(param: str, value: str) -> None:
    if params.get(param) != value:
        params[param] = value
    st.session_state["_url_written"][param] = value


def _choice(label: str, options: list[str], param: str, **kwargs) -> str:
    """A sidebar select box whose value lives in the URL too, so that a link reopens the same view."""
    key = f"sidebar_{param}"
    _synced_from_url(param, key, lambda v: v in options)
    if st.session_state.get(key) not in options:
        st.session_state.pop(key, None)  # a value from another dataset: start from the first option
    value = st.sidebar.selectbox(label, options, key=key, **kwargs)
    _to_url(param, value)
    return value


with sidebar_unit:
    datasets = {d.name: d for d in catalog.datasets(store)}
    st.sidebar.title("ethdash")
    if not datasets:
        st.error("The store holds no items. Import data with `ethdash data import PATH`.")
        st.stop()
    dataset = datasets[_choice("Dataset", list(datasets), "dataset")]
    splits = catalog.splits(store, dataset.name)
    split = _choice("Split", splits + ([ALL_SPLITS] if len(splits) > 1 else []), "split")
    view = dataset.view(
        _choice(
            "Label view",
            [v.name for v in dataset.views],
            "view",
            help="Which answer options the votes are counted over.",
        )
    )
    st.sidebar.caption(view.description)

    st.sidebar.divider()
    model = _choice("Model", list(models.registry()), "model")
    fitting = templates.for_view(dataset.name, view.name)
    template = _choice("Template", fitting, "template") if fitting else None
    registered = [name for name, base, _ in adapters.all_adapters(store) if base == model]
    _synced_from_url("adapters", "sidebar_adapters", lambda v: True)
    if isinstance(st.session_state.get("sidebar_adapters"), str):  # seeded from the URL's comma list
        st.session_state["sidebar_adapters"] = st.session_state["sidebar_adapters"].split(",")
    st.session_state["sidebar_adapters"] = [a for a in st.session_state.get("sidebar_adapters", []) if a in registered]
    chosen = st.sidebar.multiselect("Adapters (the base model is always shown)", registered, key="sidebar_adapters")
    _to_url("adapters", ",".join(chosen))
    # Hosted models (registry source "api") have no local weights: only an OpenAI-compatible API scores them.
    hosted = models.get(model).hosted
    offered = ["openai"] if hosted else backends.names()
    backend = _choice(
        "Backend",
        offered,
        "backend",
        format_func=lambda name: BACKEND_LABELS.get(name, name),
        help="What computes the answer probabilities: the embedded model runs in this app's own process.",
    )
server = (
    ""  # read-only: stored scores only, and no address this server would fetch
    if settings.read_only() or backend == "local"
    else st.sidebar.text_input(
        "Server URL",
        key="sidebar_server",
        placeholder="empty: the model's registered URL" if hosted else "empty: the one `ethdash serve` started",
        help="The server that scores; its address is part of the score key, so its scores are kept apart.",
    )
)
if split == "demo":
    st.sidebar.warning("Demo sample: invented items written by ethdash, not Scruples data.")
st.sidebar.caption(f"Store: `{store.path}`")

_synced_from_url("annotator", "sidebar_annotator", lambda v: True)
annotator = st.sidebar.text_input("Annotator", key="sidebar_annotator", placeholder="your name, for annotations")
if annotator:
    _to_url("annotator", annotator)
elif "annotator" in params:  # a cleared name leaves the URL too, or a reload would bring it back
    del params["annotator"]
    st.session_state["_url_written"].pop("annotator", None)
ui.set_selection(
    ui.Selection(
        dataset=dataset.name,
        split=None if split == ALL_SPLITS else split,
        view=view.name,
        options=tuple(view.options),
        kind=dataset.kind,
        model=model,
        template=template,
        adapters=tuple(chosen),
        backend=backend,
        server=server.strip() or None,
        annotator=annotator.strip(),
    )
)
ui.keep_page_state()
page = st.navigation(
    [
        st.Page("views/browse.py", title="Browse", icon=":material/search:", default=True),
        st.Page("views/compare.py", title="Compare", icon=":material/bar_chart:"),
        st.Page("views/finetune.py", title="Fine-tune", icon=":material/model_training:"),
    ]
)
page.run()
