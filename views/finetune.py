"""Fine-tune: start a background LoRA run, follow it live, cancel or resume it."""

import time

import pandas as pd
import streamlit as st

from ethdash import catalog, models, templates, ui
from ethdash.durations import human_duration
from ethdash.errors import EthdashError
from ethdash.figures import curves_chart
from ethdash.finetune import runs
from ethdash.finetune.config import EVALUATIONS_PER_RUN, RunConfig
from ethdash.losses import LOSSES
from ethdash.store import Store

selection = ui.selection()
store = Store()
defaults = RunConfig(name="x")

st.header("Fine-tune")
st.caption(
    "A run trains a LoRA adapter toward the human vote distributions in its own process: it goes on when "
    "you close the tab or restart the app. 20% of the training items (seeded) are held out to pick the "
    "checkpoint and fit c and T*."
)

with st.form("new_run"):
    st.subheader("New run")
    name_col, model_col, loss_col = st.columns(3)
    name = name_col.text_input("Name (the adapter's name)", placeholder="e.g. dilemmas-xent-r8", key="ft_name")
    model = model_col.selectbox("Model", list(models.registry()), key="ft_model")
    loss = loss_col.selectbox("Loss", list(LOSSES), key="ft_loss")
    fitting = [t.name for t in templates.available().values() if t.dataset == selection["dataset"]]
    data_col, split_col, eval_col, limit_col = st.columns(4)
    template = data_col.selectbox("Template", fitting, key="ft_template")
    splits = catalog.splits(store, selection["dataset"])
    train_split = split_col.selectbox("Training split", splits, key="ft_split")
    eval_split = eval_col.selectbox(
        "Evaluation split (never trained on)", ["none", *splits], key="ft_eval", help="Must differ from training."
    )
    limit = limit_col.number_input("Item limit (0: all)", min_value=0, value=0, step=50, key="ft_limit")
    rank_col, alpha_col, lr_col, steps_col, batch_col = st.columns(5)
    rank = rank_col.number_input("LoRA rank", 1, 256, defaults.rank, key="ft_rank")
    alpha = alpha_col.number_input("LoRA alpha", 0.5, 1024.0, defaults.alpha, key="ft_alpha")
    learning_rate = lr_col.number_input("Learning rate", 1e-6, 1.0, defaults.learning_rate, format="%.1e", key="ft_lr")
    steps = steps_col.number_input("Steps", 1, 100_000, defaults.steps, key="ft_steps")
    batch_size = batch_col.number_input("Batch size", 1, 256, defaults.batch_size, key="ft_batch")
    seed_col, eval_every_col, _ = st.columns([1, 2, 2])
    seed = seed_col.number_input("Seed", 0, 2**31 - 1, defaults.seed, key="ft_seed")
    eval_every = eval_every_col.number_input(
        "Evaluate every (steps; 0: auto)",
        0,
        100_000,
        0,
        key="ft_eval_every",
        help=f"Steps between held-out evaluations. 0: about {EVALUATIONS_PER_RUN} evaluations over the run.",
    )
    if st.form_submit_button("Start run"):
        try:
            config = RunConfig(
                name=name.strip(),
                model=model,
                template=template,
                dataset=selection["dataset"],
                split=train_split,
                eval_split=None if eval_split == "none" else eval_split,
                limit=int(limit) or None,
                loss=loss,
                rank=int(rank),
                alpha=float(alpha),
                learning_rate=float(learning_rate),
                steps=int(steps),
                batch_size=int(batch_size),
                seed=int(seed),
                eval_every=int(eval_every) or None,
                checkpoint_every=max(1, min(defaults.checkpoint_every, int(steps))),
            )
            run = runs.start(config, store)
            st.session_state["ft_run"] = run.name  # the run list below opens the new run
            st.success(f"Started run '{run.name}' in {run.folder}")
        except EthdashError as exc:
            st.error(str(exc))

all_runs = runs.all_runs()
if not all_runs:
    st.info("No runs yet.")
    st.stop()


def run_rows() -> pd.DataFrame:
    rows = []
    for run in all_runs:
        status = run.status()
        config = run.config()
        total = status.get("total_steps") or config.steps or "—"
        rows.append(
            {
                "run": run.name,
                "state": status.get("state"),
                "step": f"{status.get('step', 0)} / {total}",
                "model": config.model,
                "loss": config.loss,
                "data": f"{config.dataset}/{config.split}",
                "message": status.get("message", ""),
            }
        )
    return pd.DataFrame(rows)


def progress_text(name: str, status: dict, total: int) -> str:
    """One line, e.g. "r8: running · step 5 of 12 · loss 0.6931 nats · 1.24 s/step · ETA about 9 s"."""
    state = status.get("state")
    parts = [f"{name}: {state}", f"step {int(status.get('step', 0) or 0)} of {total}"]
    if status.get("loss") is not None:
        parts.append(f"loss {status['loss']:.4f} nats")
    if status.get("seconds_per_step") is not None:
        parts.append(f"{status['seconds_per_step']:.2f} s/step")
    eta = status.get("eta_seconds")
    if state in runs.ACTIVE and eta is not None:
        left = max(eta - (time.time() - status.get("updated_at", time.time())), 0.0)  # counts down between steps
        parts.append(f"ETA about {human_duration(left)}")
    elif state in runs.ACTIVE:
        parts.append(status.get("message") or "starting")
    return " · ".join(parts)


CURVES = (  # metrics key, series, unit
    ("xent", "held-out soft xent", "nats"),
    ("dirichlet", "held-out Dirichlet score", "nats"),
    ("accuracy", "held-out accuracy", "%"),
)
EVAL_COLUMNS = {
    "step": "step",
    "xent": "soft xent (nats)",
    "kl": "KL (nats)",
    "dirichlet": "Dirichlet score (nats)",
    "c": "fitted c",
    "temperature": "T*",
    "calibrated_xent": "calibrated xent (nats)",
    "accuracy": "accuracy",
    "position_bias": "position bias",
    "items": "held-out items",
}
SETTINGS = {  # RunConfig field: the label a person reads
    "name": "name (the adapter's)",
    "model": "model",
    "template": "template",
    "dataset": "dataset",
    "split": "training split",
    "limit": "item limit",
    "controversial": "controversial items only",
    "min_margin": "min vote margin",
    "max_margin": "max vote margin",
    "order": "option orders trained on",
    "eval_split": "evaluation split",
    "eval_fraction": "evaluation fraction",
    "eval_seed": "evaluation seed",
    "loss": "loss",
    "rank": "LoRA rank",
    "alpha": "LoRA alpha",
    "dropout": "LoRA dropout",
    "target_modules": "target modules",
    "learning_rate": "learning rate",
    "schedule": "schedule",
    "warmup_steps": "warm-up steps",
    "max_grad_norm": "gradient clipping (max norm)",
    "steps": "steps",
    "epochs": "epochs",
    "batch_size": "batch size",
    "grad_accum": "gradient accumulation",
    "seed": "seed",
    "heldout_fraction": "held-out fraction",
    "eval_every": "evaluate every (steps)",
    "checkpoint_every": "checkpoint every (steps)",
    "quantize_4bit": "4-bit base model (QLoRA)",
    "processes": "data-parallel processes",
    "compile": "torch.compile",
}
RESULTS = {  # final result key: label
    "chosen_step": "chosen checkpoint (step)",
    "xent": "held-out soft xent (nats)",
    "kl": "held-out KL (nats)",
    "dirichlet": "held-out Dirichlet score (nats)",
    "c": "fitted c",
    "temperature": "T*",
    "calibrated_xent": "held-out calibrated xent (nats)",
    "accuracy": "held-out accuracy",
    "position_bias": "position bias",
    "items": "held-out items",
    "adapter_hash": "adapter content hash",
}


def shown(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def labelled(pairs: list[tuple[str, object]], header: str) -> pd.DataFrame:
    return pd.DataFrame({header: [label for label, _ in pairs], "value": [shown(v) for _, v in pairs]})


def settings_table(config: RunConfig, status: dict) -> pd.DataFrame:
    values = dict(config.__dict__)
    if values["limit"] is None:
        values["limit"] = "all items"
    if values["eval_every"] is None:  # the interval the run chose (about ten a run)
        chosen = status.get("eval_every")
        values["eval_every"] = f"{chosen} (auto)" if chosen else "auto"
    return labelled([(SETTINGS.get(key, key.replace("_", " ")), value) for key, value in values.items()], "setting")


def results_table(final: dict) -> pd.DataFrame:
    values = dict(final)
    if isinstance(values.get("accuracy"), float):
        values["accuracy"] = f"{values['accuracy']:.1%}"
    if values.get("adapter_hash"):
        values["adapter_hash"] = values["adapter_hash"][:16] + "…"
    return labelled([(label, values[key]) for key, label in RESULTS.items() if key in values], "result")


st.subheader("Runs")
names = [r.name for r in all_runs]
if st.session_state.get("ft_run") not in names:
    st.session_state["ft_run"] = names[-1]
chosen = st.selectbox("Run", names, key="ft_run")
run = runs.get(chosen)


@st.fragment(run_every=2)
def live() -> None:
    """The run list and the chosen run's progress, curves and log, refreshed in place every 2 s."""
    status = run.status()
    state = status.get("state")
    # The sidebar's adapter list is built by app.py, which a fragment's refresh does not rerun: when the run
    # stops, rerun the whole app once so that a finished run's adapter can be chosen there at once.
    seen = st.session_state.setdefault("ft_seen_states", {})
    before, seen[run.name] = seen.get(run.name), state
    if before in runs.ACTIVE and state not in runs.ACTIVE:
        st.rerun(scope="app")
    st.dataframe(run_rows(), hide_index=True, key="runs_table")
    config = run.config()
    step = int(status.get("step", 0) or 0)
    total = status.get("total_steps") or config.steps or max(step, 1)
    st.progress(min(step / total, 1.0), text=progress_text(run.name, status, total))
    records = run.metrics()
    evals = [r for r in records if r.get("kind") == "eval"]
    curves = [
        {"step": r["step"], "value": r["loss"], "series": "training loss", "unit": "nats"}
        for r in records
        if r.get("kind") == "train"
    ]
    curves += [
        {"step": r["step"], "value": r[key], "series": series, "unit": unit}
        for key, series, unit in CURVES
        for r in evals
        if r.get(key) is not None
    ]
    if curves:
        st.plotly_chart(curves_chart(pd.DataFrame(curves), f"{run.name}: training and held-out curves"), key="curves")
    if evals:
        st.caption("Held-out evaluations")
        table = pd.DataFrame(evals)[[c for c in EVAL_COLUMNS if c in evals[0]]].rename(columns=EVAL_COLUMNS)
        st.dataframe(table, hide_index=True, key="eval_table")
    if status.get("final"):
        st.success(f"Finished: adapter '{run.name}' registered; choose it in the sidebar to compare.")
    settings_col, results_col = st.columns(2)
    settings_col.caption("Configuration")
    settings_col.table(settings_table(config, status), hide_index=True, alt=f"The settings of run {run.name}")
    if status.get("final"):
        results_col.caption("Result (the chosen checkpoint on the held-out items)")
        results_col.table(results_table(status["final"]), hide_index=True, alt=f"The results of run {run.name}")
    st.caption("Log (last lines)")
    st.code(run.log_tail(15) or "(empty)", language=None)


live()
status = run.status()
cancel_col, resume_col, _ = st.columns([1, 1, 4])
if cancel_col.button("Cancel run", disabled=status.get("state") not in runs.ACTIVE, key="ft_cancel"):
    try:
        runs.cancel(run)
        st.rerun()
    except EthdashError as exc:
        st.error(str(exc))
if resume_col.button("Resume run", disabled=status.get("state") not in ("failed", "cancelled"), key="ft_resume"):
    try:
        runs.resume(run)
        st.rerun()
    except EthdashError as exc:
        st.error(str(exc))
