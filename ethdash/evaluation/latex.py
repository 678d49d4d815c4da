"""The metric table as a paper prints it: systems as rows, metrics as columns with their direction, each
estimate with its 95% interval beneath it, booktabs rules, the best value of a column in bold only where
its paired interval against the runner-up excludes 0, a caption and a label. Pure: frames in, text out.
"""

from __future__ import annotations

import math

import pandas as pd

from ethdash.evaluation import measures

_GREEK = ("alpha", "beta", "gamma", "delta", "kappa", "mu", "rho", "sigma", "tau")
_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
    "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "<": r"\textless{}", ">": r"\textgreater{}",
    "−": "$-$", "\u00a0": "~", "–": "--", "—": "---",
    # Greek letters of metric names (entropy ρ, Krippendorff's α): pdflatex's UTF-8 input has no Greek.
    **{ch: f"${{\\{name}}}$" for ch, name in zip("αβγδκμρστ", _GREEK)},
}  # fmt: skip


def escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))


def header(metric: measures.Metric) -> str:
    """The column's name and which way is better: ↓ lower, ↑ higher, →0 closest to zero."""
    direction = r"$\to 0$" if metric.signed else (r"$\downarrow$" if metric.lower_is_better else r"$\uparrow$")
    return f"{escape(metric.label)} {direction}"


def _stacked(text: str) -> str:
    """A header cell on two lines (its first word, then the rest), so that a column is as wide as its numbers."""
    first, _, rest = text.partition(" ")
    return rf"\begin{{tabular}}[b]{{@{{}}r@{{}}}}{first}\\{rest}\end{{tabular}}"


def number(value: float, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "--"
    text = f"{value:.{digits}f}"
    return f"$-${text[1:]}" if text.startswith("-") else text


def metric_table(
    table: pd.DataFrame,
    systems: list[str],
    best: dict[str, str | None],
    caption: str,
    label: str = "tab:ethdash-metrics",
    references: list[str] = (),
    family: str | None = "study",
) -> str:
    """table: the long metric table (system, metric, estimate, low, high); systems: its rows in order, the
    `references` among them (the human ceiling) after a rule and never marked; best: metric name → the system
    to set in bold (None: no system is better than the runner-up beyond chance); family: whose metrics are
    the columns (the study's, the field's; None: all)."""
    present = set(table["metric"])
    columns = [m for m in measures.compared(family) if m.name in present]
    cell = {(r.system, r.metric): r for r in table.itertuples()}
    lines = [
        r"\begin{table*}[t]",  # seven metric columns need both columns of a two-column paper
        r"\centering",
        rf"\caption{{{escape(caption)}}}",
        rf"\label{{{label}}}",
        r"\footnotesize",
        r"\setlength{\tabcolsep}{3.5pt}",
        # The names' column wraps (at hyphens): runs are often named like r-0f3a9c2e71-default-dilemmas-xent-s0.
        r"\begin{tabular}{@{}p{2.7cm}" + "r" * len(columns) + "@{}}",
        r"\toprule",
        " & ".join(["System", *(_stacked(header(m)) for m in columns)]) + r" \\",
        r"\midrule",
    ]
    models = [s for s in systems if s not in references]
    for group_index, group in enumerate((models, [s for s in systems if s in references])):
        if group and group_index:
            lines.append(r"\midrule")
        for system in group:
            estimates, intervals = [r"\raggedright " + escape(system)], [""]
            for metric in columns:
                row = cell.get((system, metric.name))
                if row is None:
                    estimates.append("--")
                    intervals.append("")
                    continue
                text = number(row.estimate)
                estimates.append(rf"\textbf{{{text}}}" if best.get(metric.name) == system else text)
                has_interval = not math.isnan(row.low)
                intervals.append(rf"\scriptsize[{number(row.low)}, {number(row.high)}]" if has_interval else "")
            lines.append(" & ".join(estimates) + r" \\")
            lines.append(" & ".join(intervals) + r" \\[2pt]")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table*}", ""]
    return "\n".join(lines)


def table_caption(what: str, n_items: int, best_marked: bool = True, family: str | None = "study") -> str:
    """The caption's standard part: what the numbers are and how to read them."""
    units = ", ".join(m.label for m in measures.compared(family) if m.unit == "nats")
    text = (
        f"{what} on {n_items} items: estimate and, beneath it, the 95% bootstrap interval (1,000 resamples of "
        f"items). {units[0].upper() + units[1:]} in nats per item."
    )
    if best_marked:
        text += " Bold: the best system, where its paired interval against the runner-up excludes 0."
    return text
