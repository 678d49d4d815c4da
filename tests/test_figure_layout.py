"""Every figure kind, exported for a paper at both column widths, with 40-character system names and with
the anecdotes' five options, read back in headless Chromium: no text overlaps another, none leaves the
page, every font prints at 7-9 pt; the PDF page and the PNG's resolution are the stated size.

The votes are real (Scruples dilemmas and anecdotes); the systems' probabilities are drawn around them,
since layout depends on names, options and how the points fall, not on which model produced them.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import stats
from scipy.special import softmax

from ethdash.evaluation import export, statistics
from ethdash.evaluation.figures import (
    COLUMN_WIDTHS,
    FONT_FAMILY,
    curves_chart,
    difference_histogram,
    reliability_chart,
    scatter_chart,
    vote_split_chart,
)
from ethdash.evaluation.frames import human_vs_model, share_means, vote_split, xent_differences
from ethdash.finetune.tables import curve_records

from .conftest import ANECDOTE_SAMPLE, DILEMMAS_TEST
from .figure_layout import measure, problems

pytestmark = pytest.mark.browser

# Names as `ethdash reproduce` gives its runs (40 characters), beside the base model's.
SYSTEMS = (
    "smollm2-135m-instruct (base)",
    "r-0f3a9c2e71-default-dilemmas-xent-seed0",
    "r-0f3a9c2e71-default-dilemmas-dirich-s1",
)


def real_counts(kind: str, n: int = 300) -> tuple[np.ndarray, tuple[str, ...]]:
    if kind == "dilemmas":
        if not DILEMMAS_TEST.is_file():
            pytest.skip("the real Scruples data is not beside the project")
        rows = [json.loads(line) for line in DILEMMAS_TEST.read_text().splitlines()[:n]]
        return np.array([r["gold_annotations"] for r in rows], dtype=float), ("action 1", "action 2")
    if not ANECDOTE_SAMPLE.is_file():
        pytest.skip("the real Scruples data is not beside the project")
    rows = [json.loads(line) for line in ANECDOTE_SAMPLE.read_text().splitlines()[:n]]
    options = tuple(rows[0]["label_scores"])
    return np.array([[r["label_scores"][o] for o in options] for r in rows], dtype=float), options


def predictions(counts: np.ndarray, with_ceiling: bool) -> list[statistics.Predictions]:
    rng = np.random.default_rng(0)
    log_share = np.log((counts + 1) / (counts.sum(1, keepdims=True) + counts.shape[1]))
    preds = [
        statistics.with_fit(name, softmax(log_share * k / 2 + rng.normal(0, 1, counts.shape), 1), 5.0, 1.5)
        for k, name in enumerate(SYSTEMS)
    ]
    if with_ceiling:
        preds.append(statistics.with_fit(statistics.HUMAN_CEILING, softmax(log_share, 1), 5.0, 1.0))
    return preds


def items_of(counts: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"split": "test", "item_id": [f"item-{i}" for i in range(len(counts))]})


def figures() -> dict[str, object]:
    out = {}
    for kind in ("dilemmas", "anecdotes"):
        counts, options = real_counts(kind)
        preds = predictions(counts, with_ceiling=kind == "dilemmas")
        models = preds[: len(SYSTEMS)]
        split = [vote_split(counts[0], options, "humans")]
        split += [vote_split(counts[1], options, "humans (second sample)")]
        out[f"{kind}-vote-split"] = vote_split_chart(pd.concat(split, ignore_index=True))
        out[f"{kind}-reliability"] = reliability_chart(statistics.reliability(counts, preds))
        out[f"{kind}-scatter"] = scatter_chart(human_vs_model(counts, items_of(counts), models, 0), options[0])
        diffs, x_title = xent_differences(counts, models)
        out[f"{kind}-differences"] = difference_histogram(diffs, x_title)
    steps = range(0, 61, 3)
    records = [{"kind": "train", "step": s, "loss": 0.7 - s / 400} for s in steps]
    records += [{"kind": "eval", "step": s, "xent": 0.69 - s / 900, "dirichlet": 1.2, "accuracy": 0.5} for s in steps]
    out["curves"] = curves_chart(curve_records(records), f"{SYSTEMS[1]}: training and held-out curves")
    return out


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[tuple[str, str], dict[str, bytes]]:
    folder = tmp_path_factory.mktemp("figures")
    out = {}
    for name, fig in figures().items():
        for width in COLUMN_WIDTHS:
            out[name, width] = {fmt: export.figure_bytes(fig, fmt, width) for fmt in export.FIGURE_FORMATS}
            (folder / f"{name}-{width}.svg").write_bytes(out[name, width]["svg"])
    return out


def test_every_figure_fits_its_column_with_readable_text(exported, chromium_browser, tmp_path):
    page = chromium_browser.new_page()
    found = {}
    for (name, width), files in exported.items():
        svg = tmp_path / f"{name}-{width}.svg"
        svg.write_bytes(files["svg"])
        measured = measure(page, svg)
        assert measured.width == pytest.approx(COLUMN_WIDTHS[width] * 96, abs=1)
        assert len(measured.texts) >= 8, (name, [t.text for t in measured.texts])  # ticks and titles were drawn
        assert all(FONT_FAMILY in t.family for t in measured.texts), {t.family for t in measured.texts}
        if issues := problems(measured, COLUMN_WIDTHS[width]):
            found[name, width] = issues
    page.close()
    assert not found, json.dumps({f"{n} {w}": v for (n, w), v in found.items()}, indent=1)


def test_long_names_are_drawn_whole_in_the_legend(exported, chromium_browser, tmp_path):
    page = chromium_browser.new_page()
    svg = tmp_path / "scatter.svg"
    svg.write_bytes(exported["anecdotes-scatter", "single"]["svg"])
    drawn = {t.text for t in measure(page, svg).texts}
    page.close()
    assert set(SYSTEMS) <= drawn, drawn


def test_the_pdf_page_and_the_png_resolution_are_the_stated_size(exported):
    for (name, width), files in exported.items():
        box = re.search(rb"/MediaBox\s*\[\s*0\s+0\s+([\d.]+)\s+([\d.]+)\s*\]", files["pdf"])
        assert box, name
        assert float(box.group(1)) == pytest.approx(COLUMN_WIDTHS[width] * 72, abs=1), (name, width)
        png = Image.open(__import__("io").BytesIO(files["png"]))
        assert png.size[0] == pytest.approx(COLUMN_WIDTHS[width] * export.PNG_DPI, abs=2), (name, width)


def test_the_scatter_means_equal_an_independent_computation():
    counts, _ = real_counts("dilemmas")
    points = human_vs_model(counts, items_of(counts), predictions(counts, False), 0)
    means = share_means(points)
    for (system, human), rows in points.groupby(["system", points["human"].round(9)]):
        row = means[(means["system"] == system) & np.isclose(means["human"], human)]
        assert len(row) == 1
        x = rows["model"].to_numpy()
        assert row["mean"].item() == pytest.approx(x.mean())
        assert row["items"].item() == len(x)
        if len(x) > 1:
            low, high = stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=stats.sem(x))
            assert (row["low"].item(), row["high"].item()) == pytest.approx((low, high))
    assert means["human"].nunique() == 6  # 5 votes: six human shares


def test_many_human_shares_are_grouped_into_tenths():
    rng = np.random.default_rng(1)
    points = pd.DataFrame({"system": "s", "model": rng.uniform(size=500), "human": rng.uniform(size=500)})
    means = share_means(points)
    assert list(means["human"]) == pytest.approx([0.05 + k / 10 for k in range(10)])
    assert means["items"].sum() == 500
    tenth = points[(points["human"] >= 0.3) & (points["human"] < 0.4)]["model"]
    assert means.loc[3, "mean"] == pytest.approx(tenth.mean())
