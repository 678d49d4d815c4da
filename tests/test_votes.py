import numpy as np
import pytest
from scipy import stats as sps

from ethdash import votes


def test_posterior_interval_matches_dirichlet_draws():
    counts = np.array([[3, 1, 0, 6, 0], [0, 5, 0, 0, 0]])
    low, high = votes.posterior_interval(counts, level=0.9)
    for row, lo, hi in zip(counts, low, high):
        draws = sps.dirichlet.rvs(row + 1.0, size=200_000, random_state=0)
        np.testing.assert_allclose(lo, np.quantile(draws, 0.05, axis=0), atol=0.004)
        np.testing.assert_allclose(hi, np.quantile(draws, 0.95, axis=0), atol=0.004)


def test_majority_margin_and_controversy():
    assert list(votes.majority(np.array([[3, 2], [5, 0], [2, 2]]))) == [0, 0, -1]
    assert list(votes.majority([[1, 4, 4]])) == [-1]
    np.testing.assert_allclose(votes.vote_margin([[3, 2], [5, 0], [2, 2]]), [0.2, 1.0, 0.0])
    # anecdotes: controversial when the binarized margin is below 0.5
    assert list(votes.anecdote_controversial([[6, 4], [8, 1], [3, 1]])) == [True, False, False]
    assert list(votes.unanimous([[5, 0], [4, 1]])) == [True, False]


def test_shares_sum_to_one():
    s = votes.shares([[1, 2, 7], [0, 0, 3]])
    assert s.sum(axis=1) == pytest.approx([1.0, 1.0])
