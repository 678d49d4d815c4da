"""The study's protocol as data: which items train and evaluate each experiment, and the run settings.

Every choice the report states comes from here (or from the templates and the data), so the report
and the computation cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

LOSSES = ("soft-xent", "dirichlet")
HELDOUT_FRACTION = 0.2  # of the training items: checkpoint choice and the fits of c and T*
ANECDOTE_EVAL_FRACTION = 0.2  # the anecdote sample has no official split: a seeded 80/20 split
SPLIT_SEED = 0


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    dilemma_train_limit: int | None  # training items (the first N of the training split)
    dilemma_eval_limit: int | None  # evaluation items (the first N of the evaluation split)
    anecdote_train_limit: int | None  # training items: the first N of the sample's 80% part
    anecdote_eval_limit: int | None  # evaluation items: the first N of the sample's 20% part
    dilemma_steps: int
    anecdote_steps: int
    batch_size: int = 8
    rank: int = 8
    alpha: float = 16.0
    learning_rate: float = 5e-4
    eval_every: int = 25
    seconds_per_prompt: float = 0.07  # rough scoring cost on a 2-core CPU, for the duration estimate
    seconds_per_step: float = 1.6  # rough training step cost at batch 8 (dilemmas), same machine
    anecdote_step_factor: float = 4.0  # anecdote prompts are several times longer


PROFILES = {
    "default": Profile(
        "default",
        "all the real data: every dev dilemma trains (20% held out), every test dilemma in both orders "
        "evaluates; the 559-anecdote sample split 80/20",
        dilemma_train_limit=None,
        dilemma_eval_limit=None,
        anecdote_train_limit=None,
        anecdote_eval_limit=None,
        dilemma_steps=250,
        anecdote_steps=60,
    ),
    "quick": Profile(
        "quick",
        "a subset for about 15 minutes on a 2-core CPU: 400 dev dilemmas train, 300 test dilemmas "
        "evaluate; of the anecdote sample's 80/20 split, 160 train and 60 evaluate",
        dilemma_train_limit=400,
        dilemma_eval_limit=300,
        anecdote_train_limit=160,
        anecdote_eval_limit=60,
        dilemma_steps=60,
        anecdote_steps=30,
        eval_every=20,
    ),
    "smoke": Profile(
        "smoke",
        "a few items and steps, to test the pipeline (not a result)",
        dilemma_train_limit=16,
        dilemma_eval_limit=8,
        anecdote_train_limit=2,  # anecdotes are long posts: a few seconds per prompt on one thread
        anecdote_eval_limit=2,
        dilemma_steps=2,
        anecdote_steps=1,  # Adam's first step is lr·sign(gradient): both losses may give one adapter
        batch_size=4,
        eval_every=2,
    ),
}


@dataclass(frozen=True)
class Experiment:
    """One dataset and label view: the base model, and adapters fine-tuned on it when `losses` is set."""

    key: str
    title: str
    dataset: str
    template: str
    view: str
    train_split: str | None  # None: no fine-tuning
    eval_split: str
    eval_fraction: float  # > 0: the evaluation items are a seeded part of eval_split (which is also train_split)
    losses: tuple[str, ...]
    steps: int
    train_limit: int | None
    eval_limit: int | None


def experiments(profile: Profile, splits: dict[str, list[str]]) -> list[Experiment]:
    """The study's experiments for the splits the store has (dataset → splits)."""
    out = []
    dilemma_splits = splits.get("dilemmas", [])
    if "test" in dilemma_splits and ({"train", "dev"} & set(dilemma_splits)):
        train = "train" if "train" in dilemma_splits else "dev"
        out.append(
            Experiment(
                "dilemmas",
                "DILEMMAS (which action is worse; both option orders)",
                "dilemmas",
                "dilemmas-worse",
                "worse",
                train,
                "test",
                0.0,
                LOSSES,
                profile.dilemma_steps,
                profile.dilemma_train_limit,
                profile.dilemma_eval_limit,
            )
        )
    anecdote_splits = splits.get("anecdotes", [])
    if anecdote_splits:
        split = "sample" if "sample" in anecdote_splits else anecdote_splits[0]
        common = dict(
            dataset="anecdotes",
            train_split=split,
            eval_split=split,
            eval_fraction=ANECDOTE_EVAL_FRACTION,
            steps=profile.anecdote_steps,
            train_limit=profile.anecdote_train_limit,
            eval_limit=profile.anecdote_eval_limit,
        )
        out.append(
            Experiment(
                key="anecdotes-binarized",
                title="ANECDOTES, binarized (RIGHT / WRONG)",
                template="anecdotes-binarized",
                view="binarized",
                losses=LOSSES,
                **common,
            )
        )
        out.append(
            Experiment(
                key="anecdotes-classes",
                title="ANECDOTES, 5 classes (base model only)",
                template="anecdotes-classes",
                view="classes",
                losses=(),
                **{**common, "train_split": None},
            )
        )
    return out
