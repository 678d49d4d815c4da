"""The metric table as LaTeX for a paper: its structure (always), and a compile in a two-column paper with
Debian's pdflatex (marker `latex`; skipped where pdflatex is not installed, as in CI:
`apt-get install texlive-latex-base texlive-latex-recommended` and `pytest -m latex` run it).

Votes are real (Scruples dilemmas); the systems' probabilities are drawn around them, with names as long
as `ethdash reproduce` gives its runs.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import numpy as np
import pytest
from scipy.special import softmax

from ethdash.evaluation import latex, measures, statistics

from .conftest import DILEMMAS_TEST

SYSTEMS = ("smollm2-135m-instruct (base)", "r-0f3a9c2e71-default-dilemmas-xent-seed0", "a_b&c%#")


@pytest.fixture(scope="module")
def compared() -> tuple[np.ndarray, list[statistics.Predictions]]:
    if not DILEMMAS_TEST.is_file():
        pytest.skip("the real Scruples data is not beside the project")
    rows = [json.loads(line) for line in DILEMMAS_TEST.read_text().splitlines()[:300]]
    counts = np.array([r["gold_annotations"] for r in rows], dtype=float)
    rng = np.random.default_rng(0)
    log_share = np.log((counts + 1) / (counts.sum(1, keepdims=True) + 2))
    preds = [
        statistics.with_fit(
            name, softmax(log_share * k + rng.normal(0, 0.5, counts.shape), 1), 5.0, 1.5, rng.uniform(0.4, 0.9, 300)
        )
        for k, name in enumerate(SYSTEMS)
    ]
    second = np.array([r["human_perf_annotations"] for r in rows], dtype=float)
    preds.append(statistics.cross_fitted(statistics.HUMAN_CEILING, counts, statistics.human_ceiling(second)))
    return counts, preds


def table_text(compared) -> tuple[str, dict, object]:
    counts, preds = compared
    table = statistics.metric_table(counts, preds, n_resamples=200)
    best = statistics.best_systems(counts, preds[:-1], table, n_resamples=200)
    labels = [p.label for p in preds]
    caption = latex.table_caption("Metrics", len(counts)) + " 100% of 5 votes & more_"
    return latex.metric_table(table, labels, best, caption, references=[statistics.HUMAN_CEILING]), best, table


def cells(line: str) -> list[str]:
    """A table row's cells (an escaped \\& is text, not a column separator)."""
    return re.split(r"(?<!\\)&", line.removesuffix(r"\\[2pt]").removesuffix(r"\\"))


def test_the_table_has_systems_as_rows_and_metrics_as_columns(compared):
    text, best, table = table_text(compared)
    compared_metrics = [m for m in measures.compared("study") if m.name in set(table["metric"])]
    assert re.search(r"\\begin\{tabular\}\{[^}]*\}", text)
    rules = [line for line in text.splitlines() if line.strip() in (r"\toprule", r"\midrule", r"\bottomrule")]
    assert rules == [r"\toprule", r"\midrule", r"\midrule", r"\bottomrule"]  # the ceiling after its own rule
    header = next(line for line in text.splitlines() if line.startswith("System &"))
    assert len(cells(header)) == len(compared_metrics) + 1
    for metric in compared_metrics:
        first, _, rest = latex.header(metric).partition(" ")
        assert f"{first}\\\\{rest}" in header, (first, rest, header)
    body = text[text.index(r"\midrule") : text.index(r"\bottomrule")]
    rows = [line for line in body.splitlines() if len(cells(line)) == len(compared_metrics) + 1]
    assert len(rows) == 2 * (len(SYSTEMS) + 1)  # an estimate row and an interval row per system
    assert r"a\_b\&c\%\#" in text and r"100\% of 5 votes \& more\_" in text  # escaped, never raw
    # Every estimate with three decimals, so that a right-aligned column aligns its decimal points.
    for row in rows[::2]:
        for cell in cells(row)[1:]:
            assert re.fullmatch(r"\s*(\\textbf\{)?(\$-\$)?\d+\.\d{3}\}?\s*|\s*--\s*", cell), cell
    # Bold exactly where best_systems found a clear best, on that system's row.
    estimates = table.set_index(["system", "metric"])["estimate"]
    bold = re.findall(r"\\textbf\{([^}]*)\}", text)
    shown = {m.name for m in compared_metrics}  # the study's; the field's are a table of their own
    expected = [latex.number(estimates[s, m]) for m, s in best.items() if s is not None and m in shown]
    assert sorted(bold) == sorted(expected)


def test_best_is_marked_only_when_the_paired_interval_excludes_zero(compared):
    counts, preds = compared
    twin = statistics.with_fit("twin", preds[0].p, 5.0, 1.5, preds[0].first)  # the same predictions again
    table = statistics.metric_table(counts, [preds[0], twin], n_resamples=200)
    assert all(v is None for v in statistics.best_systems(counts, [preds[0], twin], table, 200).values())
    good = statistics.with_fit("good", statistics.human_ceiling(counts), 5.0, 1.5, np.full(len(counts), 0.5))
    table = statistics.metric_table(counts, [preds[0], good], n_resamples=200)
    best = statistics.best_systems(counts, [preds[0], good], table, 200)
    assert best["xent"] == "good" and best["position_bias"] == "good"


@pytest.mark.latex
def test_the_table_compiles_in_a_two_column_paper_without_overfull_lines(compared, tmp_path):
    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex is not installed (apt-get install texlive-latex-base texlive-latex-recommended)")
    text, best, table = table_text(compared)
    labels = [p.label for p in compared[1]]
    caption = latex.table_caption("The field's metrics", len(compared[0]), family="field")
    field = latex.metric_table(table, labels, best, caption, "tab:field", [statistics.HUMAN_CEILING], family="field")
    text += "\n" + field
    document = "\n".join(
        [
            r"\documentclass[twocolumn,10pt]{article}",
            r"\usepackage[letterpaper,margin=0.75in]{geometry}",
            r"\usepackage{booktabs}",
            r"\begin{document}",
            text,
            "Text.",
            r"\end{document}",
        ]
    )
    (tmp_path / "paper.tex").write_text(document)
    done = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "paper.tex"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    log = (tmp_path / "paper.log").read_text(errors="replace")
    assert done.returncode == 0, log[-3000:]
    assert (tmp_path / "paper.pdf").read_bytes()[:5] == b"%PDF-"
    assert "Overfull \\hbox" not in log, log[log.index("Overfull") - 200 : log.index("Overfull") + 600]
