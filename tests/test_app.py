"""The Browse screen: in Streamlit's AppTest, and in a real headless Chromium for what a person sees."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from ethdash.datasets.importer import import_paths
from ethdash.datasets.readers.mapping import Mapping
from ethdash.settings import demo_dir

from .conftest import ROOT

HOSTILE = '<img src="x" onerror="document.title=\'pwned\'"> **not bold** [link](javascript:alert(1)) &amp;'


def hostile_dataset(store, tmp_path: Path) -> None:
    """Scenario text comes from the internet: a dataset whose text is HTML and Markdown."""
    path = tmp_path / "hostile.jsonl"
    path.write_text(
        "\n".join(
            json.dumps({"id": f"h{i}", "text": HOSTILE, "title": f"<b>title {i}</b>", "y": i + 1, "n": 2})
            for i in range(3)
        )
        + "\n"
    )
    mapping = Mapping.from_dict(
        {
            "dataset": "hostile",
            "options": ["YES", "NO"],
            "votes": ["y", "n"],
            "text": "text",
            "title": "title",
            "id": "id",
            "split": "dev",
        }
    )
    import_paths(store, [path], mapping)


def app_test() -> AppTest:
    return AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)


def test_an_empty_store_falls_back_to_the_demo_sample(store):
    at = app_test().run()
    assert not at.exception
    assert at.sidebar.selectbox[0].value in ("anecdotes", "dilemmas")
    assert any("Demo sample" in w.value for w in at.sidebar.warning)
    assert "of 12 items" in at.caption[0].value or "of 24 items" in at.caption[0].value


def test_filters_narrow_the_table(store):
    import_paths(store, [demo_dir()])
    at = app_test()
    at.query_params["dataset"] = "dilemmas"
    at.run()
    assert at.caption[0].value == "24 of 24 items"
    at.radio(key="f_contro").set_value("no").run()
    unanimous = sum(
        1
        for line in (demo_dir() / "demo.scruples-dilemmas.jsonl").read_text().splitlines()
        if not json.loads(line)["controversial"]
    )
    assert at.caption[0].value == f"{unanimous} of 24 items"
    at.radio(key="f_contro").set_value("all").run()
    at.text_input(key="f_search").set_value("Roommate").run()
    matching = [
        json.loads(line)["id"]
        for line in (demo_dir() / "demo.scruples-dilemmas.jsonl").read_text().splitlines()
        if "roommate" in line.lower()
    ]
    assert len(matching) >= 1 and at.caption[0].value == f"{len(matching)} of 24 items"
    assert at.query_params["item"] == matching[0]  # the URL follows the open item


def test_browsing_the_real_dilemmas_across_splits(store, shared_data):
    import_paths(store, [shared_data / "scruples"])
    at = app_test()
    at.query_params["dataset"] = "dilemmas"
    at.query_params["split"] = "all splits"  # (AppTest does not rerun st.navigation's sidebar: see the browser test)
    at.run()
    assert at.sidebar.selectbox[1].options == ["dev", "test", "all splits"]
    assert at.caption[0].value == "4700 of 4700 items"
    at.slider(key="f_margin").set_value((0.0, 0.25)).run()  # margins of 5 votes: 0.2, 0.6 or 1.0
    raw = [
        json.loads(line)
        for name in ("dev", "test")
        for line in (shared_data / "scruples" / "dilemmas" / f"{name}.scruples-dilemmas.jsonl").open()
    ]
    close = sum(1 for r in raw if abs(r["gold_annotations"][0] - r["gold_annotations"][1]) == 1)
    assert at.caption[0].value == f"{close} of 4700 items"
    assert not at.exception


def test_scenario_text_is_shown_as_text_not_markdown(store, tmp_path):
    hostile_dataset(store, tmp_path)
    at = app_test()
    at.query_params["dataset"] = "hostile"
    at.run()
    assert not at.exception
    assert HOSTILE.replace("&amp;", "&") in [t.value for t in at.text]
    assert all("onerror" not in m.value for m in at.markdown)


@pytest.mark.model
def test_the_item_view_shows_model_probabilities_beside_the_humans(store, tmp_path):
    from ethdash import adapters

    from .helpers import MODEL, make_adapter

    import_paths(store, [demo_dir()])
    adapters.register(store, "demo-lora", make_adapter(tmp_path / "adapter", seed=5), MODEL)
    at = app_test()
    at.query_params["dataset"] = "dilemmas"
    at.query_params["adapters"] = "demo-lora"
    at.run()
    assert not at.exception and not at.error
    table = at.dataframe[-1].value
    assert list(table["system"]) == [f"{MODEL} (base)", "demo-lora"]
    with store.connect() as con:
        stored = con.execute(
            "SELECT adapter, item_order, probs, outside_mass FROM scores WHERE item_id = 'demo-dilemma-01'"
        ).fetchall()
    assert len(stored) == 4  # two systems x two option orders, computed on demand and stored
    for _, row in table.iterrows():
        adapter = None if row["system"].endswith("(base)") else row["system"]
        by_order = {order: probs for a, order, probs, _ in stored if a == adapter}
        assert row["action 1"] == pytest.approx((by_order["ab"][0] + by_order["ba"][0]) / 2)
        assert row["P_AB"] == pytest.approx(by_order["ab"][0]) and row["P_BA"] == pytest.approx(by_order["ba"][0])
    assert table.iloc[0]["action 1"] != pytest.approx(table.iloc[1]["action 1"], abs=1e-4)

    at.run()  # a rerun reads the cache: nothing is computed again
    with store.connect() as con:
        assert con.execute("SELECT count(*) FROM scores").fetchone()[0] == 4


def test_a_sample_of_the_filtered_items_is_fixed_and_a_subset(store, shared_data):
    from ethdash.datasets.selection import Filters, apply_filters, item_table

    import_paths(store, [shared_data / "scruples" / "dilemmas" / "test.scruples-dilemmas.jsonl"])
    table = item_table(store, "dilemmas", "test", "worse", ("action 1", "action 2"))
    contro = apply_filters(table, Filters(controversial=True))
    sample = apply_filters(table, Filters(controversial=True, sample=40))
    assert len(sample) == 40 and set(sample["item_id"]) <= set(contro["item_id"])
    assert list(sample.index) == sorted(sample.index)  # in the table's order
    again = apply_filters(table.sample(frac=1.0, random_state=3), Filters(controversial=True, sample=40))
    assert set(again["item_id"]) == set(sample["item_id"])  # the same items, whatever the row order
    assert len(apply_filters(table, Filters(sample=5000))) == len(table)
    assert apply_filters(table, Filters(controversial=True, sample=20))["item_id"].isin(sample["item_id"]).all()
