"""Fine-tune: start a background LoRA run, follow it live, cancel or resume it."""

import pandas as pd
import streamlit as st

from ethdash import catalog, models, templates, ui
from ethdash.errors import EthdashError
from ethdash.figures import curves_chart
from ethdash.finetune import runs
from ethdash.finetune.config import RunConfig
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
    seed = st.number_input("Seed", 0, 2**31 - 1, defaults.seed, key="ft_seed")
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
                eval_every=max(1, min(defaults.eval_every, int(steps))),
                checkpoint_every=max(1, min(defaults.checkpoint_every, int(steps))),
            )
            run = runs.start(config, store)
            st.session_state["ft_selected"] = run.name
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
        total = config.steps or "—"
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


st.subheader("Runs")
names = [r.name for r in all_runs]
wanted = st.session_state.get("ft_selected")
chosen = st.selectbox("Run", names, index=names.index(wanted) if wanted in names else len(names) - 1, key="ft_run")
st.session_state["ft_selected"] = chosen
run = runs.get(chosen)


@st.fragment(run_every=2)
def live() -> None:
    """The run list and the chosen run's progress, curves and log, refreshed in place every 2 s."""
    st.dataframe(run_rows(), hide_index=True, key="runs_table")
    status = run.status()
    config = run.config()
    state = status.get("state")
    step = int(status.get("step", 0) or 0)
    total = config.steps or max(step, 1)
    st.progress(min(step / total, 1.0), text=f"{run.name}: {state}, step {step} of {total}")
    records = run.metrics()
    train = [
        {"step": r["step"], "value": r["loss"], "series": "training loss"} for r in records if r.get("kind") == "train"
    ]
    evals = [r for r in records if r.get("kind") == "eval"]
    curves = train + [
        {"step": r["step"], "value": r[m], "series": f"held-out {m}"}
        for r in evals
        for m in ("xent", "dirichlet")
        if r.get(m) is not None
    ]
    if curves:
        st.plotly_chart(curves_chart(pd.DataFrame(curves), f"{run.name}: loss and held-out metrics"), key="curves")
    if evals:
        st.dataframe(pd.DataFrame(evals).drop(columns=["kind"]), hide_index=True, key="eval_table")
    if status.get("final"):
        st.success(f"Finished: adapter '{run.name}' registered; choose it in the sidebar to compare.")
        st.json(status["final"], expanded=False)
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
