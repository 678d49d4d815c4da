"""The README's "A first session", literally, in a real browser on the real dilemmas: find a controversial
dilemma, read it beside the base model and an adapter, annotate it and see the annotation after a reload,
train a tiny adapter and watch it finish, choose it, compare, and export a comparison figure as PDF."""

from __future__ import annotations

import json
import re

import pytest
from playwright.sync_api import expect

from ethdash import adapters, annotations
from ethdash.datasets.selection import Filters, apply_filters, item_table

from .browser import settle, wait_for_item
from .conftest import run_cli
from .helpers import MODEL, make_adapter

pytestmark = [pytest.mark.browser, pytest.mark.model]

OPTIONS = ("action 1", "action 2")


def choose_in_sidebar(page, label: str, option: str) -> None:
    page.get_by_test_id("stSidebar").get_by_label(label).click()
    page.get_by_role("option", name=option, exact=True).click()
    settle(page)


def test_a_first_session_as_the_readme_tells_it(page, browser_app, tmp_path):
    store = browser_app.store
    # A colleague's adapter, registered from the command line, to read beside the base model.
    shared = make_adapter(tmp_path / "bt-first-shared", seed=11, rank=2)
    added = run_cli("adapters", "add", "bt-first-shared", str(shared), "--base", MODEL, env=browser_app.env())
    assert added.returncode == 0, added.stderr

    # 1. Open the dashboard.
    page.goto(browser_app.url)
    page.get_by_text(re.compile(r"^Item \d+ of \d+ · id ")).wait_for(timeout=90_000)
    settle(page)

    # 2. Find a controversial dilemma: dilemmas, a split, Controversial = yes, a narrower margin, a row.
    choose_in_sidebar(page, "Dataset", "dilemmas")
    choose_in_sidebar(page, "Split", "test")
    page.get_by_test_id("stRadio").filter(has_text="Controversial").get_by_text("yes", exact=True).click()
    settle(page)
    upper = page.get_by_role("slider").nth(1)  # the vote margin's upper end, moved with the keyboard
    upper.focus()
    for _ in range(16):  # 1.00 -> 0.20 in steps of 0.05
        upper.press("ArrowLeft")
    settle(page)
    table = item_table(store, "dilemmas", "test", "worse", OPTIONS)
    shown = apply_filters(table, Filters(controversial=True, margin=(0.0, 0.2)))
    page.get_by_text(f"{len(shown)} of {len(table)} items", exact=True).wait_for()
    grid = page.get_by_test_id("stDataFrame").first.bounding_box()
    page.mouse.click(grid["x"] + 14, grid["y"] + 35 * 2 + 17)  # the second row
    item = shown.iloc[1]
    wait_for_item(page, 2, item["item_id"])
    page.get_by_text(f"action 1: {item['actions'][0]}", exact=True).wait_for()

    # 3. Humans against the model, then with the colleague's adapter chosen in the sidebar.
    # (.first: while Streamlit redraws, the old chart and the new one can both be on the page for a moment)
    chart = page.get_by_test_id("stPlotlyChart").first
    chart.get_by_text("Human vote split and model probabilities").first.wait_for(timeout=120_000)
    choose_in_sidebar(page, "Adapters (the base model is always shown)", "bt-first-shared")
    page.keyboard.press("Escape")
    # The adapter's bars join the chart's legend, and the same item stays open.
    chart.get_by_text(re.compile("bt-first-shared")).first.wait_for(timeout=120_000)
    wait_for_item(page, 2, item["item_id"])
    assert "adapters=bt-first-shared" in page.url

    # 4. Annotate, reload, and see the annotation in the form.
    page.get_by_test_id("stSidebar").get_by_label("Annotator").fill("Ada Lovelace")
    page.get_by_test_id("stSidebar").get_by_label("Annotator").press("Enter")
    settle(page)
    page.get_by_role("radiogroup", name="Your judgment").get_by_text("action 2", exact=True).click()
    page.get_by_label("Tags", exact=True).fill("family, honesty")
    page.get_by_label("Note", exact=True).fill("both are defensible")
    page.get_by_role("button", name="Save annotation").click()
    page.get_by_text("Saved for Ada Lovelace: first save.").wait_for()
    page.reload()  # a new session: the URL reopens the item (the filters start afresh)
    wait_for_item(page, None, item["item_id"])
    settle(page)
    # (a text area is drawn as a placeholder until it scrolls into view: wait for its value, do not read it once)
    expect(page.get_by_label("Tags", exact=True)).to_have_value("family, honesty")
    expect(page.get_by_label("Note", exact=True)).to_have_value("both are defensible")
    assert page.get_by_role("radiogroup", name="Your judgment").get_by_role("radio", name="action 2").is_checked()
    saved = annotations.latest(store, "dilemmas", "test", item["item_id"], "Ada Lovelace")
    assert saved["judgment"] == "action 2" and list(saved["tags"]) == ["family", "honesty"]

    # 5. Fine-tune: a tiny run on dev, watched until it finishes.
    page.get_by_role("link", name="Fine-tune").click()
    page.get_by_text("New run").wait_for()
    settle(page)
    page.get_by_label("Name (the adapter's name)", exact=True).fill("bt-first-run")
    page.get_by_test_id("stForm").get_by_label("Training split").click()
    page.get_by_role("option", name="dev", exact=True).click()
    page.get_by_label("Item limit (0: all)", exact=True).fill("24")
    page.get_by_label("Steps", exact=True).fill("6")
    page.get_by_label("Batch size", exact=True).fill("4")
    page.get_by_role("button", name="Start run").click()
    page.get_by_text("Started run 'bt-first-run'").wait_for()
    page.get_by_text("Finished: adapter 'bt-first-run' registered").wait_for(timeout=600_000)

    # 6. Compare: choose the run's adapter, slice to a quick sample, score it in the background.
    choose_in_sidebar(page, "Adapters (the base model is always shown)", "bt-first-run")
    page.keyboard.press("Escape")
    page.get_by_role("link", name="Compare").click()
    page.get_by_text("Coverage", exact=True).wait_for()
    settle(page)
    page.get_by_text("Slice the items").click()
    page.get_by_label("At most (items; 0: all)", exact=True).fill("12")
    page.get_by_label("At most (items; 0: all)", exact=True).press("Enter")
    settle(page)
    # The button names its scope: clicking it before the slice took effect would score the whole split.
    page.get_by_role("button", name="Score the missing items in the background (3 systems, 12 items)").click()
    compared = page.get_by_text("Compared on the 12 items scored by every system", exact=False)
    failed = page.get_by_text(re.compile(r"sliced items: failed after"))
    compared.or_(failed).first.wait_for(timeout=600_000)
    assert not failed.count(), page.get_by_test_id("stCode").all_inner_texts()
    settle(page)
    for system in (f"{MODEL} (base)", "bt-first-shared", "bt-first-run"):
        assert page.get_by_text(system).count() >= 1

    # 7. Export the reliability diagram as PDF (with SVG, PNG and a manifest) and check the files.
    page.get_by_text("Export this figure").first.click()
    page.get_by_role("button", name="Write figure files").first.click()
    page.get_by_text(re.compile(r"^Written to ")).wait_for(timeout=180_000)
    exports = browser_app.home / "exports"
    pdfs = sorted(exports.glob("*/reliability*.pdf"))
    assert pdfs, list(exports.rglob("*"))
    pdf = pdfs[-1]
    assert pdf.read_bytes().startswith(b"%PDF") and pdf.stat().st_size > 2000
    manifest = json.loads(next(pdf.parent.glob("*.manifest.json")).read_text())
    hashes = {a.name: a.content_hash for a in (adapters.get(store, n) for n in ("bt-first-shared", "bt-first-run"))}
    assert json.dumps(manifest).count(hashes["bt-first-run"]) >= 1
    assert json.dumps(manifest).count(hashes["bt-first-shared"]) >= 1
