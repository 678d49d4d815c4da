"""Bootstrap results kept in the store, so that a large comparison's bootstrap is computed once, not once per
process: `ethdash evaluate` run again, the app restarted, or Compare after `evaluate` read it back.

A result is found by a digest of everything it is computed from (`statistics._content_key`: the votes, the
probabilities, c and T*, the resamples) and of the code that computes metrics and draws the resamples, so
that a new version of it never reads an earlier version's numbers. Only the `KEPT` most recently used results
are kept.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import sys
from pathlib import Path

import duckdb
import numpy as np
import scipy

from ethdash import metrics, votes
from ethdash.errors import EthdashError
from ethdash.evaluation import measures, statistics
from ethdash.migrations import utc_now
from ethdash.store import Store

KEPT = 500  # about 100 KB each (1,000 resamples of 12 metrics): 50 MB at most; Compare with 20 people keeps 153

log = logging.getLogger(__name__)


@functools.cache
def code_version() -> bytes:
    """A digest of the code that decides a bootstrap's numbers and how they are stored: these modules, and
    the numpy (its random streams draw the resamples) and scipy versions."""
    digest = hashlib.blake2b(f"numpy {np.__version__} scipy {scipy.__version__}".encode())
    for module in (metrics, votes, measures, statistics, sys.modules[__name__]):
        digest.update(Path(module.__file__).read_bytes())
    return digest.digest()


class StoredBootstrap:
    """`statistics.Kept` in a store's `bootstrap_results` table. Failing to read or write it costs only a
    recomputation: the comparison itself never fails on it (a line in the log says why)."""

    def __init__(self, store: Store):
        self.store = store

    @staticmethod
    def _key(content: bytes) -> str:
        return hashlib.blake2b(code_version() + content, digest_size=20).hexdigest()

    def load(self, keys: list[bytes]) -> dict[bytes, statistics.PerMetric]:
        try:
            wanted = {self._key(k): k for k in keys}
            if not wanted:
                return {}
            marks = ", ".join("?" * len(wanted))
            with self.store.transaction() as con:
                query = "SELECT content_key, metrics, estimates, resampled FROM bootstrap_results WHERE content_key IN"
                rows = con.execute(f"{query} ({marks})", list(wanted)).fetchall()
                if rows:  # read now: the last to be pruned
                    found_keys = [row[0] for row in rows]
                    con.execute(
                        f"UPDATE bootstrap_results SET used_at = ? WHERE content_key IN ({', '.join('?' * len(rows))})",
                        [utc_now(), *found_keys],
                    )
        except (OSError, duckdb.Error, EthdashError) as exc:
            log.warning("bootstrap results not read from %s: %s", self.store.path, exc)
            return {}
        found = {}
        for key, names, estimates, blob in rows:
            if not names:
                found[wanted[key]] = {}
                continue
            resampled = np.frombuffer(blob, dtype=np.float64).reshape(len(names), -1)  # read-only, shared
            found[wanted[key]] = {name: (float(e), resampled[i]) for i, (name, e) in enumerate(zip(names, estimates))}
        return found

    def save(self, results: dict[bytes, statistics.PerMetric]) -> None:
        now = utc_now()
        try:
            rows = []
            for content, per_metric in results.items():
                names = list(per_metric)
                resampled = [np.asarray(per_metric[n][1], dtype=np.float64) for n in names]
                blob = np.stack(resampled).tobytes() if names else b""
                rows.append([self._key(content), names, [float(per_metric[n][0]) for n in names], blob, now])
            if not rows:
                return
            with self.store.transaction() as con:
                con.executemany("INSERT OR REPLACE INTO bootstrap_results VALUES (?, ?, ?, ?, ?)", rows)
                con.execute(
                    """DELETE FROM bootstrap_results WHERE content_key NOT IN (
                           SELECT content_key FROM bootstrap_results ORDER BY used_at DESC, content_key LIMIT ?)""",
                    [KEPT],
                )
        except (OSError, duckdb.Error, EthdashError) as exc:
            log.warning("bootstrap results not kept in %s: %s", self.store.path, exc)
