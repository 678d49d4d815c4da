"""The ethdash dashboard: declares the pages and the shared sidebar. Start it with `make run`."""

import streamlit as st

from ethdash import adapters, catalog, models, templates
from ethdash.importer import import_demo_if_empty
from ethdash.store import Store

st.set_page_config(page_title="ethdash", page_icon="⚖️", layout="wide")


@st.cache_resource(show_spinner="Preparing the demo sample…")
def _ensure_items(path: str) -> None:
    """Once per app process: fall back to the shipped demo sample when the store is empty."""
    import_demo_if_empty(Store())


store = Store()
_ensure_items(str(store.path))
params = st.query_params
ALL_SPLITS = "all splits"


def _choice(label: str, options: list[str], param: str, **kwargs) -> str:
    """A sidebar select box whose value lives in the URL, so that a link reopens the same view."""
    # The URL seeds the widget; the widget's value is written back to the URL, so the two stay equal.
    wanted = params.get(param)
    index = options.index(wanted) if wanted in options else 0
    value = st.sidebar.selectbox(label, options, index=index, key=f"sidebar_{param}", **kwargs)
    if params.get(param) != value:
        params[param] = value
    return value


# The sidebar's reads share one unit of work: opening the store costs more than the queries.
with store.connect():
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
    fitting = [t.name for t in templates.available().values() if t.dataset == dataset.name and t.view == view.name]
    template = _choice("Template", fitting, "template") if fitting else None
    registered = [name for name, base, _ in adapters.all_adapters(store) if base == model]
    wanted = [a for a in params.get("adapters", "").split(",") if a in registered]
    chosen = st.sidebar.multiselect(
        "Adapters (the base model is always shown)", registered, default=wanted, key="sidebar_adapters"
    )
    if params.get("adapters", "") != ",".join(chosen):
        params["adapters"] = ",".join(chosen)
server = st.sidebar.text_input(
    "vLLM server URL",
    key="sidebar_server",
    placeholder="empty: the embedded backend",
    help="Scores come from this server instead of the in-process model.",
)
if split == "demo":
    st.sidebar.warning("Demo sample: invented items written by ethdash, not Scruples data.")
st.sidebar.caption(f"Store: `{store.path}`")

annotator = st.sidebar.text_input(
    "Annotator", key="sidebar_annotator", value=params.get("annotator", ""), placeholder="your name, for annotations"
)
if annotator and params.get("annotator") != annotator:
    params["annotator"] = annotator
st.session_state["annotator"] = annotator.strip()
st.session_state["systems"] = {
    "model": model,
    "template": template,
    "adapters": tuple(chosen),
    "server": server.strip() or None,
}
st.session_state["selection"] = {
    "dataset": dataset.name,
    "split": None if split == ALL_SPLITS else split,
    "view": view.name,
    "options": view.options,
    "kind": dataset.kind,
}
page = st.navigation(
    [
        st.Page("views/browse.py", title="Browse", icon="🔎", default=True),
        st.Page("views/compare.py", title="Compare", icon="📊"),
        st.Page("views/finetune.py", title="Fine-tune", icon="🛠️"),
    ]
)
page.run()
