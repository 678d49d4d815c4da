"""A large comparison's bootstrap is kept in the store: a later process reads it back instead of computing it,
and reads nothing computed by other code."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ethdash.evaluation import kept, measures, statistics
from ethdash.evaluation.kept import StoredBootstrap

from .conftest import DILEMMAS_DEV
from .test_compare import predictions


@pytest.fixture(scope="module")
def all_dev_votes() -> np.ndarray:
    """The vote counts of all 2,340 real dev dilemmas: a comparison large enough to be kept."""
    if not DILEMMAS_DEV.is_file():
        pytest.skip("the real Scruples data is not beside the project")
    lines = DILEMMAS_DEV.read_text().splitlines()
    return np.array([json.loads(line)["gold_annotations"] for line in lines], dtype=float)


def _systems(votes: np.ndarray) -> list[statistics.Predictions]:
    noisy, constant = predictions(votes, 9)
    first = np.random.default_rng(4).uniform(0.3, 0.9, len(votes))
    return [statistics.with_fit("noisy", noisy, 11.0, 1.4, first), statistics.with_fit("constant", constant, 8.0, 1.0)]


def _as_a_new_process(monkeypatch) -> None:
    """Nothing remembered in memory, and no bootstrap may be computed: only read."""
    monkeypatch.setattr(statistics, "_RESAMPLED", type(statistics._RESAMPLED)())

    def refuse(*args, **kwargs):
        raise AssertionError("computed again")

    monkeypatch.setattr(measures, "resampled", refuse)


def test_a_large_comparison_is_read_back_by_a_later_process_and_not_by_other_code(store, all_dev_votes, monkeypatch):
    assert len(all_dev_votes) >= statistics.KEPT_FROM_ITEMS
    systems = _systems(all_dev_votes)
    with statistics.kept_in(StoredBootstrap(store)):
        table = statistics.metric_table(all_dev_votes, systems, n_resamples=200, seed=3)
        paired = statistics.paired_differences(all_dev_votes, *systems, n_resamples=200, seed=3)
    with store.connect() as con:
        rows = con.execute("SELECT metrics, octet_length(resampled) FROM bootstrap_results").fetchall()
    assert len(rows) == 2  # one per system; the paired differences reused them
    assert all(size == len(names) * 200 * 8 for names, size in rows)

    _as_a_new_process(monkeypatch)
    with statistics.kept_in(StoredBootstrap(store)):
        pd.testing.assert_frame_equal(statistics.metric_table(all_dev_votes, systems, n_resamples=200, seed=3), table)
        again = statistics.paired_differences(all_dev_votes, *systems, n_resamples=200, seed=3)
        pd.testing.assert_frame_equal(again, paired)
        with pytest.raises(AssertionError, match="computed again"):  # other resamples: not these results
            statistics.metric_table(all_dev_votes, systems, n_resamples=200, seed=4)

    # Another version of the code that computes metrics reads none of them.
    monkeypatch.setattr(kept, "code_version", lambda: b"other code")
    _as_a_new_process(monkeypatch)
    with statistics.kept_in(StoredBootstrap(store)), pytest.raises(AssertionError, match="computed again"):
        statistics.metric_table(all_dev_votes, systems, n_resamples=200, seed=3)


def test_small_comparisons_and_comparisons_outside_kept_in_are_not_kept(store, all_dev_votes):
    systems = _systems(all_dev_votes[: statistics.KEPT_FROM_ITEMS - 1])
    with statistics.kept_in(StoredBootstrap(store)):
        statistics.metric_table(all_dev_votes[: statistics.KEPT_FROM_ITEMS - 1], systems, n_resamples=50)
    statistics.metric_table(all_dev_votes, _systems(all_dev_votes), n_resamples=50)
    with store.connect() as con:
        assert con.execute("SELECT count(*) FROM bootstrap_results").fetchall() == [(0,)]


def test_the_most_recently_used_results_are_kept(store, all_dev_votes, monkeypatch):
    monkeypatch.setattr(kept, "KEPT", 3)
    systems = _systems(all_dev_votes)

    def stored(seed: int) -> list[bool]:
        """Whether each system's result for this seed is in the store."""
        with store.connect() as con:
            keys = {row[0] for row in con.execute("SELECT content_key FROM bootstrap_results").fetchall()}
        contents = [statistics._content_key(all_dev_votes, p, 20, seed, False) for p in systems]
        return [StoredBootstrap._key(c) in keys for c in contents]

    with statistics.kept_in(StoredBootstrap(store)):
        statistics.metric_table(all_dev_votes, systems, n_resamples=20, seed=0)
        statistics.metric_table(all_dev_votes, systems, n_resamples=20, seed=1)  # 4 results: 3 kept
        assert stored(1) == [True, True] and sum(stored(0)) == 1
        # A later process reads seed 0's kept result (now the most recently used) and computes the other.
        monkeypatch.setattr(statistics, "_RESAMPLED", type(statistics._RESAMPLED)())
        statistics.metric_table(all_dev_votes, systems, n_resamples=20, seed=0)
    assert stored(0) == [True, True] and sum(stored(1)) == 1
