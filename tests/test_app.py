"""The Browse screen: in Streamlit's AppTest, and in a real headless Chromium for what a person sees."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from ethdash.importer import import_paths
from ethdash.readers.mapping import Mapping
from ethdash.serve import free_port
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


@pytest.fixture
def running_app(store, tmp_path):
    port = free_port()
    log = (tmp_path / "app.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "ethdash", "app", "--port", str(port)],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=os.environ.copy(),
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail(f"the app did not start: {(tmp_path / 'app.log').read_text()[-2000:]}")
            time.sleep(0.3)
    yield proc, url
    proc.terminate()
    proc.wait(timeout=20)


def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("Debian's chromium is not installed (make test installs it)")
        pytest.skip("Debian's chromium is not installed")
    return path


BROWSER_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.mark.browser
def test_a_person_sees_the_items_and_the_text_stays_text(running_app, store, tmp_path):
    import psutil
    from playwright.sync_api import sync_playwright

    proc, url = running_app
    hostile_dataset(store, tmp_path)
    import_paths(store, [demo_dir()])

    listening = {c.laddr.ip for c in psutil.Process(proc.pid).net_connections() if c.status == "LISTEN"}
    assert listening == {"127.0.0.1"}

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=BROWSER_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1200})
        page.goto(f"{url}/?dataset=hostile&split=dev&item=h1")
        page.get_by_text("Item 2 of 3").wait_for(timeout=60_000)
        page.get_by_text(HOSTILE.replace("&amp;", "&")).wait_for(timeout=10_000)  # literally, as text
        assert page.locator('img[src="x"]').count() == 0
        assert page.title() != "pwned"
        assert page.locator("strong", has_text="not bold").count() == 0
        page.get_by_text("Human vote split").wait_for(timeout=20_000)  # the chart rendered
        page.screenshot(path=str(tmp_path / "hostile.png"))

        page.goto(f"{url}/?dataset=dilemmas&split=demo&annotator=Ada")
        page.get_by_text("Item 1 of 24").wait_for(timeout=60_000)
        page.get_by_role("button", name="Next ▶").click()
        page.get_by_text("Item 2 of 24").wait_for(timeout=20_000)
        assert "item=demo-dilemma-02" in page.url
        page.get_by_test_id("stSelectbox").first.click()  # the sidebar's dataset choice
        page.get_by_role("option", name="anecdotes").click()
        page.get_by_text("12 of 12 items").wait_for(timeout=30_000)
        assert "dataset=anecdotes" in page.url
        browser.close()


@pytest.mark.browser
@pytest.mark.model
def test_a_researcher_filters_reads_annotates_and_compares(running_app, store, tmp_path):
    """The daily path in a real browser: filter, open an item, see humans beside the model, annotate,
    open Compare. Screenshots go to the test's folder."""
    from playwright.sync_api import sync_playwright

    from ethdash import annotations

    _, url = running_app
    import_paths(store, [demo_dir()])
    shots = tmp_path / "screenshots"
    shots.mkdir()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=BROWSER_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1400})
        page.goto(f"{url}/?dataset=dilemmas&split=demo&annotator=Ada")
        page.get_by_text("24 of 24 items").wait_for(timeout=60_000)
        page.get_by_placeholder("words in the title, text or actions").fill("my")
        page.keyboard.press("Enter")
        matching = sum(
            1 for line in (demo_dir() / "demo.scruples-dilemmas.jsonl").read_text().splitlines() if "my" in line.lower()
        )
        page.get_by_text(f"{matching} of 24 items").wait_for(timeout=30_000)
        page.get_by_role("button", name="Next ▶").click()
        page.get_by_text(f"Item 2 of {matching}").wait_for(timeout=30_000)
        page.get_by_text("Human vote split and model probabilities").wait_for(timeout=120_000)
        page.get_by_text(f"{models_label()}").first.wait_for(timeout=30_000)  # the system table
        page.screenshot(path=str(shots / "browse.png"), full_page=True)
        item_id = page.url.split("item=")[1].split("&")[0]

        page.get_by_label("Note").fill("read in the browser test")
        page.get_by_role("button", name="Save annotation").click()
        page.get_by_text("Saved for Ada.").wait_for(timeout=30_000)
        saved = annotations.current(store, "dilemmas")
        assert list(saved["item_id"]) == [item_id] and saved["note"][0] == "read in the browser test"

        page.get_by_role("link", name="Compare").click()
        page.get_by_text("Coverage").wait_for(timeout=30_000)
        page.get_by_role("button", name="Score the missing items in the background (1 systems)").click()
        page.get_by_text("Metrics", exact=True).wait_for(timeout=300_000)  # the page follows the background job
        page.screenshot(path=str(shots / "compare.png"), full_page=True)
        browser.close()
    assert (shots / "browse.png").stat().st_size > 10_000 and (shots / "compare.png").stat().st_size > 10_000


def settle(page) -> None:
    """Wait until the app's script run is over (its status widget gone) before the next interaction."""
    page.wait_for_timeout(500)
    page.get_by_test_id("stStatusWidget").wait_for(state="hidden", timeout=120_000)


def models_label() -> str:
    from ethdash.models import DEFAULT_MODEL

    return f"{DEFAULT_MODEL} (base)"
