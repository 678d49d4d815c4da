"""Compare in a real browser, as a person uses it: a scatter click that opens the item on Browse, scoring
in the background (the slice, cancelling, a killed job), warnings on small samples and fits at a bound,
and a metric table readable at 1400 px. Each test names the problem a new user met (issue 12)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import krippendorff
import numpy as np
import pandas as pd
import pytest

from ethdash import adapters, annotations, metrics, orders
from ethdash.datasets import catalog
from ethdash.datasets.selection import Filters, apply_filters, item_table
from ethdash.evaluation.people import judgment_distribution
from ethdash.processes import alive
from ethdash.scoring import background

from .browser import open_item_id, row_cells, settle, sidebar_value, wait_for_item
from .helpers import MODEL, make_adapter, score_command, wait_until

pytestmark = pytest.mark.browser

OPTIONS = ("action 1", "action 2")
ADAPTER = "bt-cmp-lora"  # scored on COMPARED items only: Compare with it compares exactly those
JOBS_ADAPTER = "bt-cmp-jobs"  # scored by nothing but the background jobs of its test
COMPARED = 12  # test dilemmas with a 3-2 vote: fewer than 30, and the base model's c fit runs to its bound
SEARCH, SEARCHED = "guitar", 4  # a slice of 4 test dilemmas
SIDEBAR = {
    "dataset": "dilemmas", "split": "test", "view": "worse", "model": MODEL, "template": "dilemmas-worse",
    "backend": "local",
}  # fmt: skip
BASE = f"{MODEL} (base)"


@pytest.fixture(scope="module")
def compared(browser_app, tmp_path_factory) -> list[str]:
    """COMPARED items of dilemmas/test scored by the base model and by ADAPTER, through `ethdash score --items`
    (from the end of the split: the Browse tests open its first items). Also registers JOBS_ADAPTER."""
    folder = tmp_path_factory.mktemp("bt-cmp")
    store = browser_app.store
    adapters.register(store, ADAPTER, make_adapter(folder / ADAPTER, seed=11), MODEL)
    adapters.register(store, JOBS_ADAPTER, make_adapter(folder / JOBS_ADAPTER, seed=12), MODEL)
    table = item_table(store, "dilemmas", "test", "worse", OPTIONS)
    ids = list(table[table["margin"].round(2) == 0.2]["item_id"][-COMPARED:])
    ids_file = folder / "items.txt"
    ids_file.write_text("".join(f"{i}\n" for i in ids))
    for adapter in (None, ADAPTER):
        chosen = ["--adapter", adapter] if adapter else []
        done = subprocess.run(
            score_command("--split", "test", "--items", str(ids_file), *chosen),
            env=browser_app.env(),
            capture_output=True,
            text=True,
            timeout=1200,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        assert f"{2 * COMPARED} scores wanted" in done.stderr  # exactly these items, both orders
    return ids


def open_compare(page, url: str, adapter: str) -> None:
    query = "&".join(f"{k}={v}" for k, v in {**SIDEBAR, "adapters": adapter}.items())
    page.goto(f"{url}/compare?{query}")
    page.get_by_text("Coverage", exact=True).wait_for(timeout=120_000)
    settle(page)


def metrics_grid(page, first_column: str = "soft xent"):
    """The metric table (the study's; the field's with "JS divergence"). Its canvas has an accessible twin in
    the DOM: a table of the columns drawn."""
    header = page.locator("[role=columnheader]", has_text=first_column)
    return page.get_by_test_id("stDataFrame").filter(has=header)


# --- 1: a click on the scatter opens exactly that item, with the same sidebar choice


PICK_A_POINT = """() => {
  // The point farthest from any point of another item (points of one item overlap across systems), in
  // page pixels, with the item it stands for (_fullData: plotly's decoded arrays).
  const gd = [...document.querySelectorAll('.js-plotly-plot')]
    .find(g => (g.layout.title.text || '').includes('humans against'));
  const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis, box = gd.getBoundingClientRect();
  const points = [];
  // The means' diamonds (customdata: items, share) are no items, but they are obstacles a click could hit.
  gd._fullData.forEach(trace => (trace.customdata || []).forEach((cd, j) => points.push({
    x: box.left + xa._offset + xa.l2p(trace.x[j]), y: box.top + ya._offset + ya.l2p(trace.y[j]),
    split: cd[0], item: cd[1], isItem: typeof cd[1] === 'string'})));
  let best = null, bestGap = -1;
  for (const p of points.filter(p => p.isItem)) {
    const gap = Math.min(...points.filter(q => q.item !== p.item).map(q => Math.hypot(p.x - q.x, p.y - q.y)));
    if (gap > bestGap) { best = p; bestGap = gap; }
  }
  return {...best, gap: bestGap, scrollY: window.scrollY};
}"""


def test_a_scatter_click_opens_that_item_on_browse_with_the_same_sidebar(page, browser_app, compared):
    """Before: on dilemmas/test with an adapter chosen, the click opened another dataset's item 1 and dropped
    the adapters."""
    open_compare(page, browser_app.url, ADAPTER)
    chart = page.locator(".js-plotly-plot").filter(has_text="humans against models")
    chart.scroll_into_view_if_needed()
    page.wait_for_timeout(500)
    point = page.evaluate(PICK_A_POINT)
    assert point["item"] in compared and point["split"] == "test" and point["gap"] > 2, point
    page.mouse.move(point["x"], point["y"])
    page.wait_for_timeout(300)
    page.mouse.click(point["x"], point["y"])

    page.get_by_text(re.compile(rf"^Item \d+ of \d+ · id {re.escape(point['item'])} ·")).wait_for(timeout=90_000)
    settle(page)
    assert open_item_id(page) == point["item"]
    assert "/compare" not in page.url
    item = catalog.items_frame(browser_app.store, "dilemmas", "test", "worse", item_ids=[point["item"]]).iloc[0]
    for action in item["actions"]:  # its text, not another item's
        assert page.get_by_text(action, exact=False).first.is_visible()
    params = {k: v[0] for k, v in parse_qs(urlparse(page.url).query).items()}
    assert params == {**SIDEBAR, "adapters": ADAPTER, "item": point["item"]}, params
    for label, key in (("Dataset", "dataset"), ("Split", "split"), ("Label view", "view"), ("Model", "model")):
        assert sidebar_value(page, label) == SIDEBAR[key]
    assert sidebar_value(page, "Template") == SIDEBAR["template"]
    chosen = page.get_by_test_id("stSidebar").get_by_test_id("stMultiSelect")
    assert chosen.get_by_text(ADAPTER, exact=True).is_visible()


# --- 7 and 8: warnings, and a readable metric table


def test_a_small_sample_and_a_fit_at_its_bound_are_flagged_on_the_page_and_in_the_export(page, browser_app, compared):
    """Before: the base model's T* went 50 → 0.188 → 100 over 20, 21 and 53 items, with no word of warning."""
    open_compare(page, browser_app.url, ADAPTER)
    page.get_by_text(f"Compared on the {COMPARED} items scored by every system").wait_for()
    page.get_by_text(f"only {COMPARED} items (fewer than 30)").wait_for()
    at_bound = re.compile(rf"{re.escape(BASE)}: c = [\d.e+]+ is at the upper end of its search range")
    page.get_by_text(at_bound).wait_for()

    page.get_by_text("Export this table").first.click()  # the metric table's (the references' comes next)
    page.get_by_role("button", name="Write table files").first.click()
    page.get_by_text(re.compile(r"^Written to ")).wait_for(timeout=60_000)
    folder = max((browser_app.home / "exports").glob("*-metrics"))
    manifest = json.loads((folder / "metrics.manifest.json").read_text())
    assert any(w.startswith(f"only {COMPARED} items (fewer than 30)") for w in manifest["warnings"])
    assert any(at_bound.match(w) for w in manifest["warnings"]), manifest["warnings"]
    tex = (folder / "metrics.tex").read_text()
    assert f"Warning: only {COMPARED} items (fewer than 30)" in tex and "95\\% bootstrap" in tex
    csv = pd.read_csv(folder / "metrics.csv")
    assert csv["warning"].str.contains("fewer than 30").all()
    dirichlet = csv[(csv["system"] == BASE) & (csv["metric"] == "dirichlet")]["warning"].iloc[0]
    assert "upper end of its search range" in dirichlet


def test_every_metric_column_is_readable_at_1400_px(page, browser_app, compared, tmp_path):
    """Before: at a 1400 px window ECE was cut off and position bias hidden."""
    open_compare(page, browser_app.url, ADAPTER)
    study = ["soft xent", "Dirichlet score", "calibrated xent", "accuracy", "Brier", "ECE", "position bias"]
    # The field's metrics, in their own table (Wasserstein-1 is not: Scruples' options are no scale; nor is
    # entropy ρ here: every compared item has a 3-2 vote, so the humans' entropy is the same on all of them).
    field = ["JS divergence", "total variation", "macro-F1", "balanced accuracy", "mass outside answers"]
    for wanted in (study, field):
        grid = metrics_grid(page, wanted[0])
        grid.wait_for()
        grid.scroll_into_view_if_needed()
        headers = [h.strip() for h in grid.locator("[role=columnheader]").all_text_contents()]
        assert headers[1:] == wanted, headers  # every column drawn, the most important first
        widths = grid.locator(".dvn-scroller").evaluate("s => [s.scrollWidth, s.clientWidth]")
        assert widths[0] <= widths[1], widths  # nothing hides to the right
        box = grid.bounding_box()
        assert box["x"] + box["width"] <= 1400
        grid.screenshot(path=str(tmp_path / f"metrics-{wanted[0]}.png"))  # to look at
    # The human ceiling has no mass outside the answers: a dash, not a number.
    ceiling = metrics_grid(page, field[0]).locator("tr").filter(has_text="humans (second sample)")
    assert ceiling.locator("td").last.inner_text().strip() == "—"


# --- People: annotators scored like systems, and the agreement among them (issue 17, part 4)


def test_annotators_are_scored_beside_the_models_with_their_agreement(page, browser_app, compared):
    store = browser_app.store
    picks = {"bt-cmp-Ann": ("action 1", "action 2", "action 1"), "bt-cmp-Ben": ("action 1", "action 1", "action 1")}
    for person, judgments in picks.items():
        for item_id, judgment in zip(compared[:3], judgments):
            note = annotations.Annotation("dilemmas", "test", item_id, person, judgment, 0.75)
            annotations.save(store, note, OPTIONS)
    open_compare(page, browser_app.url, ADAPTER)
    page.get_by_text("People", exact=True).wait_for()

    # α as the krippendorff package computes it from every label on the compared items.
    labels = annotations.labels(store, "dilemmas", "worse", OPTIONS, "test")
    here = labels[labels["item_id"].isin(compared)]
    wide = here.pivot_table(index="annotator", columns="item", values="label", aggfunc="first")
    codes = wide.apply(lambda column: column.map(lambda v: float("nan") if pd.isna(v) else OPTIONS.index(v)))
    alpha = krippendorff.alpha(reliability_data=codes.to_numpy(dtype=float), level_of_measurement="nominal")
    people = here["annotator"].nunique()
    page.get_by_text(re.compile(rf"Krippendorff's α \(nominal\) among {people} annotators: {alpha:.3f} ")).wait_for()

    # Ann's soft xent: her judgments as distributions (confidence 0.75 on the chosen action), on her items.
    table = item_table(store, "dilemmas", "test", "worse", OPTIONS).set_index("item_id")
    counts = np.stack(table.loc[list(compared[:3]), "counts"].to_numpy()).astype(float)
    chosen = np.array([OPTIONS.index(j) for j in picks["bt-cmp-Ann"]])
    p = judgment_distribution(chosen, np.full(3, 0.75), 2)
    header = page.locator("[role=columnheader]", has_text="soft xent")
    grid = page.get_by_test_id("stDataFrame").filter(has=header).filter(has_text="bt-cmp-Ann")
    row = grid.locator("tr").filter(has_text="bt-cmp-Ann")
    cells = row_cells(row)  # the system, then soft xent "estimate [low, high]"
    assert cells[0] == "bt-cmp-Ann" and cells[1].startswith(f"{metrics.soft_xent(counts, p):.3f} ["), cells
    assert grid.locator("tr").filter(has_text=BASE).count() == 1  # the base model on the same three items
    page.get_by_text("bt-cmp-Ann: 3 items, and the models on the same items").wait_for()


# --- 5: background scoring of the slice, cancelling, a killed job


def job_records(adapter: str) -> list[dict]:
    return [j for j in background.jobs() if j["system"] in (adapter, BASE) and j["dataset"] == "dilemmas"]


def test_background_scoring_scores_the_slice_cancels_and_a_killed_job_fails(page, browser_app, on_app, compared):
    """Before: the button scored the whole split (4,678 prompts per system) whatever the slice, could not be
    stopped, said "ETA 6392 s", left coverage stale, and a job that died just vanished."""
    started = {j["id"] for j in background.jobs()}
    open_compare(page, browser_app.url, JOBS_ADAPTER)
    page.get_by_text("Slice the items").click()
    page.get_by_label("Search text").fill(SEARCH)
    page.get_by_label("Search text").press("Enter")
    caption = page.get_by_text(re.compile(r"^Scored of the sliced items: "))
    caption.filter(has_text=f"{JOBS_ADAPTER} 0 of {SEARCHED}").wait_for()
    settle(page)
    page.get_by_text(f"the sliced items ({SEARCHED})").wait_for()  # the default scope
    sliced_button = re.compile(rf"^Score the missing items in the background \(\d systems, {SEARCHED} items\)")
    page.get_by_role("button", name=sliced_button).click()
    caption.filter(has_text=f"{JOBS_ADAPTER} {SEARCHED} of {SEARCHED}").wait_for(timeout=600_000)
    page.get_by_text(f"{JOBS_ADAPTER} on {SEARCHED} sliced items: finished in").wait_for(timeout=60_000)
    mine = [j for j in job_records(JOBS_ADAPTER) if j["id"] not in started]
    assert {j["items"] for j in mine} == {SEARCHED} and {j["state"] for j in mine} == {"finished"}
    adapter_job = next(j for j in mine if j["system"] == JOBS_ADAPTER)
    assert f"{2 * SEARCHED} scores wanted" in Path(adapter_job["log"]).read_text()  # not the 4,720 of the split
    settle(page)

    before = {j["id"] for j in background.jobs()}
    page.get_by_text(re.compile(r"^the whole of test \(2360\)")).click()
    settle(page)
    page.get_by_role("button", name="Score the missing items in the background (2 systems, the whole of test)").click()
    eta = re.compile(r"on the whole split: running, \d+ of \d+ scores, [\d.]+ scores/s, about \d+ (s|min|h)")
    page.get_by_text(eta).first.wait_for(timeout=600_000)
    assert not page.get_by_text(re.compile(r"\b\d{3,} s\b")).count()  # no "6392 s"
    whole = {j["system"]: j for j in background.jobs() if j["id"] not in before}
    assert set(whole) == {BASE, JOBS_ADAPTER} and all(j["items"] is None for j in whole.values())

    row = page.get_by_test_id("stHorizontalBlock").filter(has_text=f"{JOBS_ADAPTER} on the whole split: running")
    row.get_by_role("button", name="Cancel").click()
    page.get_by_text(f"{JOBS_ADAPTER} on the whole split: cancelled after").wait_for(timeout=60_000)
    assert not alive(whole[JOBS_ADAPTER]["pid"], whole[JOBS_ADAPTER]["pid_started"])

    os.kill(whole[BASE]["pid"], signal.SIGKILL)  # from outside, as a crash or the OOM killer would
    page.get_by_text(f"{BASE} on the whole split: failed after").wait_for(timeout=60_000)
    log = page.get_by_test_id("stCode").filter(has_text="scores wanted")
    log.first.wait_for()
    wait_until(lambda: background.get(whole[BASE]["id"])["state"] == "failed", timeout_s=10)
    assert background.get(whole[JOBS_ADAPTER]["id"])["state"] == "cancelled"


# --- Prompt sensitivity: the same systems through a paraphrase (issue 17, part 2)


def test_a_paraphrased_template_gives_each_system_a_consistency_and_its_most_sensitive_items(
    page, browser_app, on_app, compared
):
    open_compare(page, browser_app.url, ADAPTER)
    page.get_by_role("combobox", name="Also ask through these templates (prompt sensitivity)").click()
    page.get_by_role("option", name="dilemmas-worse-numbers", exact=True).click()
    page.keyboard.press("Escape")
    # A system of its own: a row of the coverage grid (its accessible twin in the DOM, not drawn)
    page.get_by_text(f"{BASE} · dilemmas-worse-numbers").first.wait_for(state="attached")
    settle(page)
    page.get_by_text("Slice the items").click()
    page.get_by_label("Search text").fill(SEARCH)
    page.get_by_label("Search text").press("Enter")
    settle(page)
    button = re.compile(rf"^Score the missing items in the background \(\d systems, {SEARCHED} items\)")
    page.get_by_role("button", name=button).click()
    page.get_by_text(f"Compared on the {SEARCHED} items scored by every system").wait_for(timeout=600_000)
    page.get_by_text("Template sensitivity", exact=True).wait_for()
    settle(page)

    # Each model + adapter's mean pairwise total variation, from the stored scores, computed here.
    table = item_table(browser_app.store, "dilemmas", "test", "worse", OPTIONS)
    ids = sorted(apply_filters(table, Filters(search=SEARCH))["item_id"])
    assert len(ids) == SEARCHED
    with browser_app.store.connect() as con:
        rows = con.execute(
            "SELECT adapter, template, item_id, item_order, probs FROM scores WHERE split = 'test' "
            "AND template IN ('dilemmas-worse', 'dilemmas-worse-numbers') AND (adapter IS NULL OR adapter = ?) "
            "ORDER BY item_id",
            [ADAPTER],
        ).df()
    rows = rows[rows["item_id"].isin(ids)]

    def combined(adapter, template) -> np.ndarray:
        mine = rows[(rows["adapter"].fillna("") == (adapter or "")) & (rows["template"] == template)]
        ab, ba = (np.stack(mine[mine["item_order"] == o]["probs"].to_numpy()) for o in ("ab", "ba"))
        return orders.combine(ab, ba)

    consistency = page.get_by_test_id("stDataFrame").filter(
        has=page.locator("[role=columnheader]", has_text="mean pairwise TV")
    )
    for adapter, label in ((None, BASE), (ADAPTER, ADAPTER)):
        a, b = combined(adapter, "dilemmas-worse"), combined(adapter, "dilemmas-worse-numbers")
        tv = float(np.mean(0.5 * np.abs(a - b).sum(axis=1)))
        cells = row_cells(consistency.locator("tr").filter(has_text=label))
        numbers = [float(c) for c in cells if re.fullmatch(r"-?\d+\.\d+", c.strip())]
        assert any(abs(n - tv) < 1e-4 for n in numbers), (label, tv, cells)

    # The base model's most sensitive item opens in Browse.
    a, b = combined(None, "dilemmas-worse"), combined(None, "dilemmas-worse-numbers")
    top = ids[int(np.argmax(0.5 * np.abs(a - b).sum(axis=1)))]
    sensitive = page.get_by_test_id("stDataFrame").filter(
        has=page.locator("[role=columnheader]", has_text="sensitivity")
    )
    sensitive.scroll_into_view_if_needed()
    box = sensitive.bounding_box()
    page.mouse.click(box["x"] + 14, box["y"] + 35 + 17)  # the first row's selection box
    wait_for_item(page, None, top)


# --- Issue 18: a large comparison's bootstrap is computed once, then read from the store by every process


def test_compare_after_evaluate_shows_the_bootstrap_evaluate_kept(page, browser_app, tmp_path):
    """`ethdash evaluate` keeps the bootstrap of a comparison of 300 items or more in the store; Compare, opened
    afterwards in the running app (which never computed it), reads it there: it shows evaluate's interval,
    the kept row is marked as read and no row is added."""
    from ethdash.evaluation import statistics

    from .conftest import DILEMMAS_DEV, run_cli

    records = [json.loads(line) for line in DILEMMAS_DEV.read_text().splitlines()[: statistics.KEPT_FROM_ITEMS + 20]]
    frame = pd.DataFrame(
        {
            "uid": [r["id"] for r in records],
            "vignette": [r["actions"][0]["description"] for r in records],  # real texts, real votes
            "worse": [r["gold_annotations"][0] for r in records],  # votes: the first action is the worse
            "better": [r["gold_annotations"][1] for r in records],
        }
    )
    frame.to_csv(tmp_path / "kept.csv", index=False)
    env = browser_app.env()

    def kept() -> dict[str, tuple]:
        """The kept bootstraps: content key → (metrics, resampled, when last used)."""
        with browser_app.store.connect() as con:
            rows = con.execute("SELECT content_key, metrics, resampled, used_at FROM bootstrap_results").fetchall()
        return {row[0]: row[1:] for row in rows}

    for command in (
        ("data", "import", str(tmp_path / "kept.csv"), "--dataset", "bt-kept", "--text-column", "vignette",
         "--id-column", "uid", "--option", "WORSE=worse", "--option", "BETTER=better"),
        ("templates", "new", "--dataset", "bt-kept", "--name", "bt-kept-t"),
        ("score", "--template", "bt-kept-t", "--dataset", "bt-kept"),
    ):  # fmt: skip
        done = run_cli(*command, env=env, timeout=1200)
        assert done.returncode == 0, done.stderr[-2000:]
    earlier = kept()
    done = run_cli("evaluate", "--template", "bt-kept-t", "--dataset", "bt-kept", env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    added = {k: v for k, v in kept().items() if k not in earlier}
    assert len(added) == 1, added  # the base model's (this dataset has no second vote sample: no human ceiling)
    [(key, (names, blob, used))] = added.items()
    resampled = np.frombuffer(blob).reshape(len(names), -1)[names.index("xent")]
    low, high = np.nanpercentile(resampled, [2.5, 97.5])
    # The estimate, from the stored probabilities and the votes (independently of the bootstrap).
    with browser_app.store.connect() as con:
        p, votes = con.execute(
            """SELECT list(s.probs ORDER BY s.item_id), list(v.counts ORDER BY s.item_id) FROM scores s
               JOIN votes v USING (dataset, split, item_id)
               WHERE s.dataset = 'bt-kept' AND v.view = 'votes' AND v.sample = 'gold'"""
        ).fetchall()[0]
    estimate = metrics.soft_xent(np.array(votes, dtype=float), np.array(p, dtype=float))

    sidebar = {**SIDEBAR, "dataset": "bt-kept", "split": "all", "view": "votes", "template": "bt-kept-t"}
    page.goto(f"{browser_app.url}/compare?{'&'.join(f'{k}={v}' for k, v in sidebar.items())}")
    page.get_by_text("Coverage", exact=True).wait_for(timeout=120_000)
    settle(page)
    page.get_by_text(f"Compared on the {len(records)} items scored by every system").wait_for()
    cells = row_cells(metrics_grid(page).locator("tr").filter(has_text=BASE))
    assert cells[1] == f"{estimate:.3f} [{low:.3f},\u00a0{high:.3f}]", cells
    now = kept()
    assert now.keys() == earlier.keys() | {key}  # nothing computed and kept again
    assert now[key][2] > used  # read by the page
