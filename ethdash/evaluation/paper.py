"""What a paper takes from one comparison, shared by `ethdash evaluate` and the Compare page's exports: the
metric table (long for analysis, wide LaTeX for print), the references, the paired differences of every
system against the first (the base), and the figures, each written with its manifest.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ethdash import adapters, templates
from ethdash.datasets import catalog
from ethdash.datasets.selection import Filters
from ethdash.errors import EthdashError
from ethdash.evaluation import export, latex, measures, sensitivity, statistics
from ethdash.evaluation.assemble import CROSS_FIT, Evaluation, evaluate
from ethdash.evaluation.figures import reliability_chart, scatter_chart, scatter_sample
from ethdash.evaluation.frames import human_vs_model, metric_cells
from ethdash.scoring import System, service
from ethdash.store import Store

TABLE_COLUMNS = ["system", "metric", "estimate", "low", "high", "items", "c", "T", "calibration", "warning"]


@dataclass
class Tables:
    evaluation: Evaluation
    metrics: pd.DataFrame  # long: a row per (system, metric)
    references: pd.DataFrame
    paired: pd.DataFrame  # a row per (system A, metric): A − the first system
    best: dict[str, str | None]  # metric → the system set in bold (None: no clear best)
    warnings: list[str]

    @property
    def systems(self) -> list[str]:
        return [p.label for p in self.evaluation.predictions]

    @property
    def n_items(self) -> int:
        return len(self.evaluation.aligned.items)

    def wide(self, family: str = "study") -> pd.DataFrame:
        """A family's table as the page shows it: a row per system, "estimate [low, high]" per metric."""
        return metric_cells(self.metrics, self.systems, family)

    def metrics_latex(self, what: str = "Metrics") -> str:
        """The study's metrics as one table, and the field's (where any applies) as a second one."""
        references = [statistics.HUMAN_CEILING] if statistics.HUMAN_CEILING in self.systems else []
        present = set(self.metrics["metric"])
        tables = []
        for family, title in measures.FAMILIES.items():
            if not any(m.name in present for m in measures.compared(family)):
                continue
            heading = what if family == "study" else f"{what}: {title[0].lower() + title[1:]}"
            caption = export.with_warnings(latex.table_caption(heading, self.n_items, family=family), self.warnings)
            label = "tab:ethdash-metrics" if family == "study" else f"tab:ethdash-metrics-{family}"
            tables.append(
                latex.metric_table(
                    self.metrics, self.systems, self.best, caption, label, references=references, family=family
                )
            )
        return "\n".join(tables)


def compare(
    store: Store,
    model: str,
    adapter_names: list[str],
    template: str,
    dataset: str,
    split: str | None,
    filters: Filters | None = None,
    calibration_split: str | None = CROSS_FIT,
    via: service.Via = service.LOCAL,
    also_templates: tuple[str, ...] = (),
    leave_out_censored: bool = False,
) -> tuple[Evaluation, tuple[str, ...]]:
    """The comparison Compare shows for this choice (the base model and its adapters through one template,
    and through `also_templates` too, each model + adapter + template a system), and the view's options;
    unknown names are clear errors."""
    tpl = templates.get(template)
    for other in also_templates:
        if templates.get(other).view != tpl.view or templates.get(other).dataset != tpl.dataset:
            raise EthdashError(
                f"template '{other}' does not ask about {tpl.dataset}'s '{tpl.view}' view as '{template}' does: "
                f"choose from {', '.join(n for n in templates.for_view(tpl.dataset, tpl.view) if n != template)}"
            )
    known = {d.name: d for d in catalog.datasets(store)}
    if dataset not in known:
        raise EthdashError(f"unknown dataset '{dataset}': the store has {', '.join(sorted(known)) or 'none'}")
    try:
        options = known[dataset].view(tpl.view).options
    except KeyError:
        views = ", ".join(v.name for v in known[dataset].views)
        raise EthdashError(
            f"template '{tpl.name}' reads the view '{tpl.view}', which {dataset} does not have (its views: {views})"
        ) from None
    splits = catalog.splits(store, dataset)
    for name, where in ((split, "split"), (calibration_split, "calibration split")):
        if name is not None and name not in splits:
            raise EthdashError(f"unknown {where} '{name}' of {dataset}: choose from {', '.join(splits)}")
    for name in adapter_names:
        adapters.get(store, name)
    named = bool(also_templates)
    systems = [
        System(model, name, t, named_by_template=named)
        for name in (None, *adapter_names)
        for t in (tpl.name, *also_templates)
    ]
    ev = evaluate(
        store, systems, dataset, split, tpl.view, options, filters, calibration_split, via,
        leave_out_censored=leave_out_censored,
    )  # fmt: skip
    return ev, options


def by_template(ev: Evaluation) -> dict[str, dict[str, np.ndarray]]:
    """Per model + adapter (its label without a template), its distributions under each template."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for system, pred in zip(ev.systems, ev.predictions):
        out.setdefault(system.adapter or f"{system.model} (base)", {})[system.template] = pred.p
    return out


def consistency_table(ev: Evaluation) -> pd.DataFrame:
    """Per model + adapter asked through several templates: its consistency across them (sensitivity)."""
    rows = []
    for name, templates_p in by_template(ev).items():
        if len(templates_p) >= 2:
            c = sensitivity.consistency(templates_p)
            rows.append(
                {
                    "system": name,
                    "templates": len(c.templates),
                    "items": c.items,
                    "mean pairwise TV": c.total_variation,
                    "argmax agreement": c.argmax_agreement,
                }
            )
    return pd.DataFrame(rows, columns=["system", "templates", "items", "mean pairwise TV", "argmax agreement"])


def tables(ev: Evaluation, n_resamples: int = 1000, seed: int = 0, table: pd.DataFrame | None = None) -> Tables:
    """Every table of a comparison (`table`: its metric table where already computed with these resamples
    and seed, as the Compare page has it); raises if fewer than two items are scored by every system."""
    if len(ev.aligned.items) < 2:
        raise ValueError("fewer than two items are scored by every system")
    table = ev.table(n_resamples, seed) if table is None else table
    models = ev.model_predictions()
    best = statistics.best_systems(ev.counts, models, table, n_resamples, seed, ordered=ev.ordered)
    paired = [
        ev.paired(p.label, models[0].label, n_resamples, seed).assign(system=p.label, against=models[0].label)
        for p in models[1:]
    ]
    paired_frame = (
        pd.concat(paired, ignore_index=True)[["system", "against", "metric", "difference", "low", "high", "favours"]]
        if paired
        else pd.DataFrame(columns=["system", "against", "metric", "difference", "low", "high", "favours"])
    )
    paired_frame["metric"] = paired_frame["metric"].map(measures.readable)
    notes = [*statistics.table_warnings(table), *filter(None, [ev.judgments_note(), ev.censored_note()])]
    return Tables(ev, table[TABLE_COLUMNS], ev.references(), paired_frame, best, notes)


def figures(ev: Evaluation, options: tuple[str, ...], option: int = 0) -> dict:
    """The reliability diagram and the humans-against-models scatter of one option."""
    points = human_vs_model(ev.counts, ev.aligned.items, ev.model_predictions(), option)
    return {
        "reliability": reliability_chart(statistics.reliability(ev.counts, ev.predictions)),
        "scatter": scatter_chart(points, options[option]),
    }


def write(
    result: Tables, folder: Path, meta: dict, options: tuple[str, ...], option: int = 0, with_figures: bool = True
) -> list[Path]:
    """metrics (CSV and Parquet long, LaTeX wide), references and paired differences (CSV, Parquet, LaTeX),
    and the figures (PDF, SVG, PNG at both column widths), each with its manifest."""
    n = result.n_items
    meta = {**meta, "warnings": result.warnings}
    paths = export.write_table(
        result.metrics, folder, "metrics", meta, latex_text=result.metrics_latex(), caption=f"Metrics on {n} items."
    )
    paths += export.write_table(
        result.references, folder, "references", meta, caption=f"Reference soft xent (nats) on the same {n} items."
    )
    if len(result.paired):
        caption = f"Paired differences (A − B) on the same resampled {n} items, 95% bootstrap intervals."
        paths += export.write_table(result.paired, folder, "paired", meta, caption=caption)
    if with_figures:
        n_points = len(scatter_sample(n))
        points = {"points": f"a fixed sample of {n_points} of the {n} items; means over all"} if n_points < n else {}
        for name, fig in figures(result.evaluation, options, option).items():
            extra = points if name == "scatter" else {}
            paths += export.write_figure(fig, folder, name, {**meta, "what": name, **extra})
    return paths
