"""Browse in a real browser, as a person uses it: picking rows, Previous / Next and their keys, the URL,
the annotation form, page changes. Each test names the problem a new user met (issue 12)."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from ethdash import annotations

from .browser import open_item_id, settle, sidebar_options, wait_for_item
from .conftest import ROOT

pytestmark = pytest.mark.browser

ROW_HEIGHT = 35  # Streamlit's data grid: header and rows are 35 px high


def browse(page, url: str, query: str) -> None:
    page.goto(f"{url}/?{query}")
    page.get_by_text(re.compile(r"^Item \d+ of \d+ · id ")).wait_for(timeout=90_000)
    # The buttons (and their J / K keys) are drawn after the caption, late under load: a key pressed
    # before they are there does nothing, as it would for a person.
    page.get_by_role("button", name="Next").wait_for(timeout=90_000)
    settle(page)


def pick_row(page, row: int) -> None:
    """Click the row's selection box in the item table (row 1 is the first)."""
    grid = page.get_by_test_id("stDataFrame").first
    box = grid.bounding_box()
    page.mouse.click(box["x"] + 14, box["y"] + ROW_HEIGHT * row + ROW_HEIGHT / 2)
    settle(page)


def table_ids(store, split: str) -> list[str]:
    """The item ids in the order Browse lists them (the store's order), computed outside the page."""
    from ethdash.datasets.selection import item_table

    return list(item_table(store, "dilemmas", split, "worse", ("action 1", "action 2"))["item_id"])


def test_previous_and_next_follow_a_picked_row(page, browser_app):
    """Before: with row 3 picked, Next went to item 4 and then stayed there on every click."""
    ids = table_ids(browser_app.store, "dev")
    browse(page, browser_app.url, "dataset=dilemmas&split=dev&view=worse")
    pick_row(page, 3)
    wait_for_item(page, 3, ids[2])
    settle(page)
    assert f"item={ids[2]}" in page.url
    for expected in (4, 5, 6):
        page.get_by_role("button", name="Next").click()
        wait_for_item(page, expected, ids[expected - 1])
        settle(page)
        assert f"item={ids[expected - 1]}" in page.url
    page.get_by_role("button", name="Previous").click()
    wait_for_item(page, 5, ids[4])
    settle(page)
    pick_row(page, 2)  # picking a row again after moving opens it
    wait_for_item(page, 2, ids[1])
    settle(page)
    page.get_by_role("button", name="Next").click()
    wait_for_item(page, 3, ids[2])
    settle(page)
    page.reload()  # the URL reopens the same item
    wait_for_item(page, 3, ids[2])


def test_twenty_items_with_the_keyboard_and_keys_ignored_while_typing(page, browser_app):
    """Before: reaching Next took 38 Tab presses. J and K move; typed into a field, they do not."""
    ids = table_ids(browser_app.store, "test")
    browse(page, browser_app.url, "dataset=dilemmas&split=test&view=worse")
    assert page.get_by_text("keys: J next, K previous").count() == 1
    for n in range(2, 22):
        page.keyboard.press("j")
        wait_for_item(page, n, ids[n - 1])
    page.keyboard.press("k")
    wait_for_item(page, 20, ids[19])
    settle(page)
    page.get_by_label("Note").fill("jjj kkk")  # typing in a field moves nothing:
    page.get_by_label("Note").press("j")
    page.get_by_label("Note").press("k")
    page.get_by_label("Note").press("j")
    page.get_by_role("button", name="Next").click()  # one step from item 20, not from where a j would go
    wait_for_item(page, 21, ids[20])
    settle(page)
    assert open_item_id(page) == ids[20]


def test_the_annotation_form_starts_from_the_current_annotation(page, browser_app):
    """Before: after a reload the form read "no judgment, 0.50, empty" and saving to add a tag replaced
    the judgment with "no judgment"."""
    ids = table_ids(browser_app.store, "dev")
    item = ids[7]
    browse(page, browser_app.url, f"dataset=dilemmas&split=dev&view=worse&annotator=Grace&item={item}")
    assert open_item_id(page) == item
    page.get_by_text("action 1", exact=True).last.click()  # the judgment radio
    page.get_by_label("Tags", exact=True).fill("family, money, privacy")
    page.get_by_label("Note").fill("first reading")
    page.get_by_role("button", name="Save annotation").click()
    page.get_by_text("Saved for Grace: first save.").wait_for()
    page.reload()
    wait_for_item(page, 8, item)
    settle(page)
    # (a text area is drawn as a placeholder until it scrolls into view: wait for its value, do not read it once)
    expect(page.get_by_label("Tags", exact=True)).to_have_value("family, money, privacy")
    expect(page.get_by_label("Note")).to_have_value("first reading")
    judgment = page.get_by_role("radiogroup", name="Your judgment")
    assert judgment.get_by_role("radio", name="action 1").is_checked()

    page.get_by_label("Tags", exact=True).fill("family, money, privacy, honesty")  # only add a tag
    page.get_by_role("button", name="Save annotation").click()
    page.get_by_text("Saved for Grace: tags: + honesty.").wait_for()
    now = annotations.latest(browser_app.store, "dilemmas", "dev", item, "Grace")
    assert now["judgment"] == "action 1" and list(now["tags"]) == ["family", "money", "privacy", "honesty"]
    assert now["note"] == "first reading"
    history = page.get_by_test_id("stDataFrame").filter(has=page.locator("canvas")).last
    assert history.is_visible()
    rows = annotations.history(browser_app.store, "dilemmas", "dev", item)
    assert list(rows["changed"]) == ["tags: + honesty", "first save"]


def test_the_open_item_survives_a_visit_to_another_page(page, browser_app):
    """Before: switching pages and coming back reopened item 1."""
    ids = table_ids(browser_app.store, "dev")
    browse(page, browser_app.url, f"dataset=dilemmas&split=dev&view=worse&item={ids[11]}")
    page.get_by_role("link", name="Compare").click()
    page.get_by_text("Coverage", exact=True).wait_for()
    settle(page)
    page.get_by_role("link", name="Fine-tune").click()
    page.get_by_text("New run").wait_for()
    page.get_by_role("link", name="Browse").click()
    wait_for_item(page, 12, ids[11])
    assert "dataset=dilemmas" in page.url and "split=dev" in page.url


def test_what_the_command_line_adds_appears_at_the_next_interaction(page, browser_app, tmp_path):
    """Adapters, datasets and templates added outside the app (from the command line) are offered in the
    sidebar after the next click, without restarting the app or changing page."""
    from tests.conftest import run_cli
    from tests.helpers import MODEL, make_adapter

    ids = table_ids(browser_app.store, "dev")
    browse(page, browser_app.url, "dataset=dilemmas&split=dev&view=worse")
    assert "bt-cli-lora" not in sidebar_options(page, "Adapters (the base model is always shown)")

    adapter = make_adapter(tmp_path / "bt-cli-lora", seed=5, rank=2)
    env = browser_app.env()
    assert run_cli("adapters", "add", "bt-cli-lora", str(adapter), "--base", MODEL, env=env).returncode == 0
    template = (ROOT / "ethdash" / "templates" / "dilemmas-worse.toml").read_text()
    user_templates = browser_app.home / "templates"
    user_templates.mkdir(exist_ok=True)
    (user_templates / "bt-better.toml").write_text(template.replace('name = "dilemmas-worse"', 'name = "bt-better"'))
    survey = tmp_path / "survey.csv"
    survey.write_text("uid,scenario,n_yes,n_no\ns1,Keeping a found wallet,1,9\ns2,Returning it,8,2\n")
    imported = run_cli(
        "data", "import", str(survey), "--dataset", "bt-survey", "--text-column", "scenario",
        "--id-column", "uid", "--option", "YES=n_yes", "--option", "NO=n_no", env=env,
    )  # fmt: skip
    assert imported.returncode == 0, imported.stderr

    page.get_by_role("button", name="Next").click()  # any interaction
    wait_for_item(page, 2, ids[1])
    settle(page)
    assert "bt-cli-lora" in sidebar_options(page, "Adapters (the base model is always shown)")
    assert "bt-better" in sidebar_options(page, "Template")
    assert "bt-survey" in sidebar_options(page, "Dataset")


def test_scenario_text_stays_text_and_the_app_listens_on_loopback(page, browser_app, tmp_path):
    """Scenario text comes from the internet: HTML and Markdown in it are shown literally, never run."""
    import psutil

    from .test_app import HOSTILE, hostile_dataset

    hostile_dataset(browser_app.store, tmp_path)
    listening = {c.laddr.ip for c in psutil.Process(browser_app.process.pid).net_connections() if c.status == "LISTEN"}
    assert listening == {"127.0.0.1"}

    page.goto(f"{browser_app.url}/?dataset=hostile&split=dev&item=h1")
    wait_for_item(page, 2, "h1")
    page.get_by_text(HOSTILE.replace("&amp;", "&")).wait_for(timeout=10_000)  # literally, as text
    assert page.locator('img[src="x"]').count() == 0
    assert page.title() != "pwned"
    assert page.locator("strong", has_text="not bold").count() == 0
    page.get_by_text("Human vote split").first.wait_for(timeout=60_000)  # the chart rendered

    page.get_by_test_id("stSidebar").get_by_label("Dataset").click()  # the sidebar's dataset choice
    page.get_by_role("option", name="anecdotes").click()
    page.get_by_text(re.compile(r"^\d+ of \d+ items$")).wait_for()
    settle(page)
    assert "dataset=anecdotes" in page.url
    page.get_by_role("heading", name=re.compile(r"^anecdotes · sample")).wait_for()


def test_a_dataset_without_titles_orders_or_post_types_reads_as_itself(page, browser_app, tmp_path):
    """Before: a dataset without titles showed an empty "scenario" column on every row, and Browse spoke of
    post types ("Post type: —") and option orders ("P_AB and P_BA …") that such a dataset does not have."""
    from tests.conftest import run_cli

    vignettes = tmp_path / "vignettes.csv"
    vignettes.write_text(
        "uid,vignette,approve,disapprove\n"
        'v1,"A nurse tells a patient a comforting lie about their prognosis, because the family asked her to.",7,3\n'
        "v2,A student reports a friend who cheated on an exam.,4,6\n"
    )
    imported = run_cli(
        "data", "import", str(vignettes), "--dataset", "bt-vignettes", "--text-column", "vignette",
        "--id-column", "uid", "--option", "APPROVE=approve", "--option", "DISAPPROVE=disapprove",
        env=browser_app.env(),
    )  # fmt: skip
    assert imported.returncode == 0, imported.stderr
    browse(page, browser_app.url, "dataset=bt-vignettes&split=all")
    grid = page.get_by_test_id("stDataFrame").first  # its cells, as the grid's accessible table has them
    grid.locator("td").filter(has_text="A student reports a friend who cheated on an exam.").wait_for(state="attached")
    cells = grid.locator("td").all_inner_texts()
    assert any(c.startswith("A nurse tells a patient a comforting lie") for c in cells), cells
    page.get_by_text("controversial: yes (vote margin below 0.5)").wait_for()  # 7 of 10: a margin of 0.4
    text = page.locator("section.main, [data-testid='stMain']").first.inner_text()
    for scruples_only in ("Post type", "P_AB", "position bias", "Which action is worse?"):
        assert scruples_only not in text, scruples_only


def test_published_shares_read_as_shares(page, browser_app, tmp_path):
    """Survey data whose judgment is the share who approve (issue 15): the list shows the shares, not vote
    counts, and the chart says it has no interval to draw (no number of respondents)."""
    from tests.conftest import run_cli

    survey = tmp_path / "survey.csv"
    survey.write_text(
        "uid,vignette,approve,disapprove\n"
        "s1,A nurse tells a patient a comforting lie about their prognosis.,0.7,0.3\n"
        "s2,A student reports a friend who cheated on an exam.,0.25,0.75\n"
    )
    imported = run_cli(
        "data", "import", str(survey), "--dataset", "bt-shares", "--text-column", "vignette", "--id-column",
        "uid", "--shares", "--option", "APPROVE=approve", "--option", "DISAPPROVE=disapprove",
        env=browser_app.env(),
    )  # fmt: skip
    assert imported.returncode == 0, imported.stderr
    browse(page, browser_app.url, "dataset=bt-shares&split=all")
    grid = page.get_by_test_id("stDataFrame").first
    grid.locator("td").filter(has_text="25% · 75%").wait_for(state="attached")
    assert "70% · 30%" in grid.locator("td").all_inner_texts()
    page.get_by_text(re.compile(r"^Bars: the human shares as published \(no number of respondents")).wait_for()
    assert not page.get_by_text(re.compile("posterior interval")).count()

    # Compare, once both items are scored: the page says which metrics do not apply, and shows none of them.
    env = browser_app.env()
    assert run_cli("templates", "new", "--dataset", "bt-shares", env=env).returncode == 0
    scored = run_cli("score", "--template", "bt-shares-votes", "--dataset", "bt-shares", env=env)
    assert scored.returncode == 0, scored.stderr
    page.goto(f"{browser_app.url}/compare?dataset=bt-shares&split=all&template=bt-shares-votes")
    page.get_by_text(re.compile(r"^The human judgments are shares with no number of respondents")).wait_for(
        timeout=120_000
    )
    settle(page)
    page.locator("[role=columnheader]", has_text="soft xent").first.wait_for(state="attached")  # the metric grid
    headers = page.get_by_test_id("stDataFrame").locator("[role=columnheader]").all_inner_texts()
    assert any("soft xent" in h for h in headers) and not any("Dirichlet" in h for h in headers), headers


def test_a_damaged_store_shows_what_to_do_not_a_traceback(chromium_browser, tmp_path):
    """Before: the whole DuckDB traceback in the browser, with no hint of what to do."""
    from .browser import start_app, stop_app

    home = tmp_path / "home"
    home.mkdir()
    (home / "ethdash.duckdb").write_bytes(b"DUCK" + bytes(range(256)) * 64)  # not a database any more
    app = start_app(home, tmp_path / "app.log")
    context = chromium_browser.new_context()
    try:
        page = context.new_page()
        page.goto(app.url)
        page.get_by_text(re.compile(r"the store .*ethdash\.duckdb cannot be read")).wait_for(timeout=60_000)
        page.get_by_text(re.compile(r"ethdash store backup")).wait_for()
        assert page.get_by_test_id("stException").count() == 0  # no traceback for the viewer
    finally:
        context.close()
        stop_app(app)


TRACK = "http://127.0.0.1:9/"  # nothing listens there: a request to it is the leak the test looks for


def test_every_outside_string_is_shown_as_text_and_fetches_nothing(chromium_browser, tmp_path):
    """Before: item ids and post types went to Markdown captions: bold and math rendered, and an image link
    in a post type made the viewer's browser fetch a tracking URL. Each field here carries Markdown that
    would render or fetch; it must read literally, and no request may leave for it."""
    import json as json_module

    from ethdash.datasets.importer import import_paths
    from ethdash.store import Store

    from .browser import start_app, stop_app

    home, data = tmp_path / "home", tmp_path / "data"
    data.mkdir()
    item_id = f"**bold**![i]({TRACK}id.png)$x^2$"
    post_type = f"![t]({TRACK}track.png)"
    record = {
        "id": item_id, "post_id": "p1", "title": "AITA for **this**?", "text": "A text.", "post_type": post_type,
        "action": {"description": "doing _that_", "pronormative_score": 1, "contranormative_score": 0},
        "label_scores": {"AUTHOR": 1, "OTHER": 3, "EVERYBODY": 0, "NOBODY": 0, "INFO": 0}, "label": "OTHER",
        "binarized_label_scores": {"RIGHT": 3, "WRONG": 1}, "binarized_label": "RIGHT",
    }  # fmt: skip
    (data / "hostile.scruples-anecdotes.jsonl").write_text(json_module.dumps(record) + "\n")
    import_paths(Store(home / "ethdash.duckdb"), [data])
    app = start_app(home, tmp_path / "app.log")
    context = chromium_browser.new_context(viewport={"width": 1400, "height": 1200})
    leaked: list[str] = []
    try:
        page = context.new_page()
        page.on("request", lambda r: leaked.append(r.url) if r.url.startswith(TRACK) else None)
        page.goto(f"{app.url}/?dataset=anecdotes&split=hostile&annotator=_Eve_")  # the annotator rule allows _
        caption = page.get_by_text(re.compile(r"^Post type: ")).first
        caption.wait_for(timeout=90_000)
        settle(page)
        visible = lambda locator: locator.inner_text().replace("\u2060", "")  # noqa: E731 (invisible joiners)
        assert visible(caption).startswith(f"Post type: {post_type} · ")  # literally, joiners aside
        assert f"· id {item_id} ·" in visible(page.get_by_text(re.compile(r"^Item 1 of 1 · id ")))
        page.get_by_label("Tags", exact=True).fill(f"![tag]({TRACK}tag.png), **loud**")
        page.get_by_label("Note", exact=True).fill(f"<img src='{TRACK}note.png'>")
        page.get_by_role("button", name="Save annotation").click()
        page.get_by_text("Saved for _Eve_: first save.").wait_for()
        settle(page)
        page.wait_for_timeout(1000)
        assert leaked == []
        assert page.locator(f'img[src^="{TRACK}"]').count() == 0
        assert page.locator(f'a[href^="{TRACK}"]').count() == 0  # not even a link to click
        assert page.locator("strong, em").filter(has_text=re.compile(r"^(bold|this|Eve|loud)$")).count() == 0
        assert page.locator(".katex").count() == 0  # no math rendered from an id
    finally:
        context.close()
        stop_app(app)


def test_next_to_annotate_opens_the_queue_and_skips_what_was_judged(page, browser_app):
    """The annotation queue (issue 17, part 4): in a seeded random order, the items this annotator has not
    judged, with the progress shown."""
    from ethdash.annotation_queue import queue
    from ethdash.datasets import catalog
    from ethdash.datasets.selection import item_table

    options = ("RIGHT", "WRONG")
    listed = item_table(browser_app.store, "anecdotes", "sample", "binarized", options)
    counts = catalog.counts_matrix(listed)
    browse(page, browser_app.url, "dataset=anecdotes&split=sample&view=binarized")
    opened = open_item_id(page)
    page.get_by_test_id("stSidebar").get_by_label("Annotator").fill("bt-queue")
    page.get_by_test_id("stSidebar").get_by_label("Annotator").press("Enter")
    page.get_by_text(f"bt-queue has judged 0 of the {len(listed)} listed items (scores of").wait_for()
    settle(page)
    order = page.get_by_label("Next to annotate, by")
    order.scroll_into_view_if_needed()
    order.click()
    order.press_sequentially("random")  # the select box filters its options as one types
    page.get_by_role("option", name="random, seeded (the same order on every visit)").click()
    page.get_by_text(f"bt-queue has judged 0 of the {len(listed)} listed items.", exact=True).wait_for()
    settle(page)

    expected = [k for k in queue(listed, counts, set(), "random") if k[1] != opened][0][1]
    page.get_by_role("button", name="Next to annotate").click()
    wait_for_item(page, None, expected)
    settle(page)
    page.get_by_role("radiogroup", name="Your judgment").get_by_text("WRONG", exact=True).click()
    page.get_by_role("button", name="Save annotation").click()
    page.get_by_text("Saved for bt-queue: first save.").wait_for()
    page.get_by_text(f"bt-queue has judged 1 of the {len(listed)} listed items.").wait_for()

    done = {("sample", expected)}
    following = queue(listed, counts, done, "random")[0][1]
    assert following != expected
    page.get_by_role("button", name="Next to annotate").click()
    wait_for_item(page, None, following)
