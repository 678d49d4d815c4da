"""Fine-tune: start a background LoRA run, follow it live, cancel or resume it."""

import json

import pandas as pd
import streamlit as st

from ethdash import models, settings, templates
from ethdash.datasets import catalog
from ethdash.errors import EthdashError
from ethdash.evaluation import export
from ethdash.evaluation.figures import curves_chart
from ethdash.finetune import runs, tables
from ethdash.finetune.config import EVALUATIONS_PER_RUN, RunConfig
from ethdash.losses import LOSSES
from ethdash.store import Store
from views import ui

selection = ui.selection()
store = Store()
defaults = RunConfig(name="x")

st.header("Fine-tune")
st.caption(
    "A run trains a LoRA adapter toward the human vote distributions in its own process: it goes on when "
    "you close the tab or restart the app. 20% of the training items (seeded) are held out to pick the "
    "checkpoint and fit c and T*."
)

READ_ONLY = settings.read_only()  # a team's shared dashboard: runs are started from the command line
if READ_ONLY:
    st.info("This dashboard is read-only: runs are listed here, and started from the command line.")
else:
    with st.form("new_run"):
        st.subheader("New run")
        name_col, model_col, loss_col = st.columns(3)
        name = name_col.text_input("Name (the adapter's name)", placeholder="e.g. dilemmas-xent-r8", key="ft_name")
        model = model_col.selectbox("Model", list(models.registry()), key="ft_model")
        loss = loss_col.selectbox("Loss", list(LOSSES), key="ft_loss")
        in_view = templates.for_view(selection.dataset, selection.view)  # the sidebar's view first
        fitting = in_view + [n for n in templates.for_view(selection.dataset) if n not in in_view]
        data_col, split_col, eval_col, limit_col = st.columns(4)
        template = data_col.selectbox("Template", fitting, key="ft_template")
        splits = catalog.splits(store, selection.dataset)
        train_split = split_col.selectbox("Training split", splits, key="ft_split")
        eval_split = eval_col.selectbox(
            "Evaluation split (never trained on)", ["none", *splits], key="ft_eval", help="Must differ from training."
        )
        limit = limit_col.number_input("Item limit (0: all)", min_value=0, value=0, step=50, key="ft_limit")
        rank_col, alpha_col, lr_col, steps_col, batch_col = st.columns(5)
        rank = rank_col.number_input("LoRA rank", 1, 256, defaults.rank, key="ft_rank")
        alpha = alpha_col.number_input("LoRA alpha", 0.5, 1024.0, defaults.alpha, key="ft_alpha")
        learning_rate = lr_col.number_input(
            "Learning rate", 1e-6, 1.0, defaults.learning_rate, format="%.1e", key="ft_lr"
        )
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
                    dataset=selection.dataset,
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
                st.success(f"Started run '{ui.md(run.name)}' in {ui.md(run.folder)}")
            except EthdashError as exc:
                st.error(ui.md(exc))

all_runs = runs.all_runs()
if not all_runs:
    st.info("No runs yet.")
    st.stop()


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
    st.dataframe(tables.run_rows(), hide_index=True, key="runs_table")
    config = run.config()
    step = int(status.get("step", 0) or 0)
    total = status.get("total_steps") or config.steps or max(step, 1)
    st.progress(min(step / total, 1.0), text=tables.progress_text(run.name, status, total))
    records = run.metrics()
    evals = [r for r in records if r.get("kind") == "eval"]
    curves = tables.curve_records(records)
    if len(curves):
        chart = curves_chart(curves, f"{run.name}: training and held-out curves")
        st.plotly_chart(chart, key="curves")
        meta = {"what": "fine-tune curves", "run": run.name, "config": json.loads(config.to_json())}
        meta["final"] = status.get("final")
        ui.export_figure(chart, "curves", lambda: {**meta, **export.provenance()}, key="x_curves")
    if evals:
        st.caption("Held-out evaluations")
        table = pd.DataFrame(evals)[[c for c in tables.EVAL_COLUMNS if c in evals[0]]].rename(
            columns=tables.EVAL_COLUMNS
        )
        st.dataframe(table, hide_index=True, key="eval_table")
    if status.get("final"):
        st.success(f"Finished: adapter '{ui.md(run.name)}' registered; choose it in the sidebar to compare.")
    settings_col, results_col = st.columns(2)
    settings_col.caption("Configuration")
    settings_col.table(tables.settings_table(config, status), hide_index=True, alt=f"The settings of run {run.name}")
    if status.get("final"):
        results_col.caption("Result (the chosen checkpoint on the held-out items)")
        results_col.table(tables.results_table(status["final"]), hide_index=True, alt=f"The results of run {run.name}")
    st.caption("Log (last lines)")
    st.code(run.log_tail(15) or "(empty)", language=None)


live()
if READ_ONLY:
    st.stop()
status = run.status()
cancel_col, resume_col, _ = st.columns([1, 1, 4])
if cancel_col.button("Cancel run", disabled=status.get("state") not in runs.ACTIVE, key="ft_cancel"):
    try:
        runs.cancel(run)
        st.rerun()
    except EthdashError as exc:
        st.error(ui.md(exc))
if resume_col.button("Resume run", disabled=status.get("state") not in ("failed", "cancelled"), key="ft_resume"):
    try:
        runs.resume(run)
        st.rerun()
    except EthdashError as exc:
        st.error(ui.md(exc))
