"""Fine-tune in a real browser, as a person uses it: start a tiny run from the form, follow it, and use its
adapter. Each check names the problem a new user met (issue 12)."""

from __future__ import annotations

import json
import re

import pytest

from ethdash.finetune import runs

from .browser import settle, sidebar_options

pytestmark = pytest.mark.browser

ADAPTERS = "Adapters (the base model is always shown)"
RUN = "bt-ft-progress"
STEPS = 12


def pick(form, label: str, option: str) -> None:
    form.get_by_label(label, exact=True).click()
    form.page.get_by_role("option", name=option, exact=True).click()


def curves(page) -> dict[str, int]:
    """The curves chart as the browser drew it: points per series (panel title)."""
    chart = page.get_by_test_id("stPlotlyChart").filter(has_text="training and held-out curves")
    return chart.locator(".js-plotly-plot").evaluate(
        "gd => Object.fromEntries(gd._fullData.map(t => [t.name, t._length]))"
    )


def y_axis_titles(page) -> list[str]:
    chart = page.get_by_test_id("stPlotlyChart").filter(has_text="training and held-out curves")
    return chart.locator(".js-plotly-plot").evaluate(
        "gd => Object.keys(gd._fullLayout).filter(k => /^yaxis\\d*$/.test(k)).sort()"
        ".map(k => (gd.querySelector('.g-' + k.replace('axis', '') + 'title')?.textContent || '')"  # as drawn
        " + '|' + (gd._fullLayout[k].tickformat || ''))"
    )


def test_a_tiny_run_from_the_form_reports_its_pace_draws_curves_and_its_adapter_is_offered_at_once(page, browser_app):
    """Before: the log and the page showed no loss, time per step or ETA; a 12-step run was evaluated once (a
    single dot per curve) and loss, Dirichlet score and accuracy shared one "nats" axis; the configuration
    and results were a raw JSON expander; and "adapter registered; choose it in the sidebar" was not true
    until the page was changed, because only the page's fragment was refreshed, not the sidebar."""
    page.goto(f"{browser_app.url}/finetune?dataset=dilemmas&split=dev&view=worse")
    page.get_by_text("New run").wait_for(timeout=90_000)
    settle(page)
    assert RUN not in sidebar_options(page, ADAPTERS)

    form = page.get_by_test_id("stForm")
    form.get_by_label("Name (the adapter's name)", exact=True).fill(RUN)
    pick(form, "Template", "dilemmas-worse")
    pick(form, "Training split", "dev")
    for label, value in (("Item limit (0: all)", 24), ("Steps", STEPS), ("Batch size", 4)):
        field = form.get_by_label(label, exact=True)
        field.fill(str(value))
        field.press("Tab")
    assert form.get_by_label("Evaluate every (steps; 0: auto)", exact=True).input_value() == "0"
    form.get_by_role("button", name="Start run").click()
    page.get_by_text(f"Started run '{RUN}'").wait_for(timeout=60_000)

    # While it runs: step, loss, time per step and the time left, in words.
    pace = re.compile(
        rf"^{RUN}: running · step \d+ of {STEPS} · loss \d+\.\d{{4}} nats · \d+\.\d\d s/step · ETA about \d+ (s|min)"
    )
    page.get_by_text(pace).wait_for(timeout=300_000)

    finished = page.get_by_text(f"Finished: adapter '{RUN}' registered; choose it in the sidebar to compare.")
    finished.wait_for(timeout=600_000)
    assert runs.get(RUN).status()["state"] == "succeeded"
    settle(page)

    # Without any page change or click, the sidebar offers the adapter the page just announced.
    assert RUN in sidebar_options(page, ADAPTERS)

    # About ten evaluations a run (every 2 steps of 12): curves, not dots; each quantity on its own axis.
    points = curves(page)
    assert points["training loss"] == STEPS
    for series in ("held-out soft xent", "held-out Dirichlet score", "held-out accuracy"):
        assert points[series] >= 3, points
    assert y_axis_titles(page) == ["nats|", "nats|", "nats|", "|.0%"]  # accuracy reads from its % ticks

    # The curves for a paper: PDF, SVG and PNG at both column widths, with the run's settings in the manifest.
    page.get_by_text("Export this figure").click()
    page.get_by_role("button", name="Write figure files").click()
    page.get_by_text(re.compile(r"^Written to ")).wait_for(timeout=180_000)
    folder = max((browser_app.home / "exports").glob("*-curves"))
    assert {p.name for p in folder.iterdir()} == {
        f"curves-{w}.{f}" for w in ("single", "double") for f in ("pdf", "svg", "png")
    } | {"curves.manifest.json"}
    assert json.loads((folder / "curves.manifest.json").read_text())["config"]["name"] == RUN

    # The configuration and the result as labelled tables, no raw JSON.
    assert page.get_by_test_id("stJson").count() == 0
    settings = page.get_by_role("table", name=f"The settings of run {RUN}")
    assert settings.get_by_role("columnheader").all_inner_texts() == ["setting", "value"]
    row = settings.get_by_role("row").filter(has=page.get_by_role("cell", name="LoRA rank", exact=True))
    assert row.get_by_role("cell").all_inner_texts() == ["LoRA rank", "8"]
    assert settings.get_by_role("row").filter(has_text="evaluate every (steps)").get_by_role(
        "cell"
    ).all_inner_texts() == ["evaluate every (steps)", "2 (auto)"]
    result = page.get_by_role("table", name=f"The results of run {RUN}")
    assert result.get_by_role("row").filter(has_text="held-out soft xent (nats)").count() == 1

    # The run's own log says the same, line by line.
    log = runs.get(RUN).log_path.read_text()
    step_lines = re.findall(r"^step (\d+)/12  loss \d+\.\d{4} nats  \d+\.\d\d s/step  ETA about .+$", log, re.M)
    assert [int(s) for s in step_lines] == list(range(1, STEPS + 1)), log
    assert len(re.findall(r"^held-out at step \d+: soft xent ", log, re.M)) >= 3, log
    assert f"is registered as '{RUN}'" in log
