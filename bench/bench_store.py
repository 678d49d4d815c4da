"""Store speed on the real data: import, idempotent re-import, the Browse table, corpus statistics.

Run: .venv/bin/python bench/bench_store.py [--data ../shared/data/scruples] [--repeat 5]
Prints a table and writes bench/results/store.json. Nothing here is asserted by the tests.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

from ethdash import __version__
from ethdash.datasets.corpus_stats import corpus_stats
from ethdash.datasets.importer import import_paths
from ethdash.datasets.selection import item_table
from ethdash.store import Store

ROOT = Path(__file__).resolve().parent.parent


def timed(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "scruples")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "bench.duckdb")
        rows.append(("first import (all files)", timed(lambda: import_paths(store, [args.data]), 1)))
        rows.append(("re-import, nothing changed", timed(lambda: import_paths(store, [args.data]), args.repeat)))
        rows.append(
            (
                "Browse table, dilemmas dev (2,340)",
                timed(lambda: item_table(store, "dilemmas", "dev", "worse", ("a", "b")), args.repeat),
            )
        )
        rows.append(
            (
                "Browse table, anecdotes 5 classes",
                timed(lambda: item_table(store, "anecdotes", None, "classes", tuple("ABCDE")), args.repeat),
            )
        )
        rows.append(("data stats (200 BEST draws)", timed(lambda: corpus_stats(store), max(1, args.repeat // 2))))

    print(f"{'operation':40} {'median s':>9} {'min s':>8} {'runs':>5}")
    results = []
    for name, times in rows:
        print(f"{name:40} {statistics.median(times):9.3f} {min(times):8.3f} {len(times):5d}")
        results.append(
            {"operation": name, "median_s": statistics.median(times), "min_s": min(times), "runs": len(times)}
        )
    out = ROOT / "bench" / "results" / "store.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "ethdash": __version__,
                "machine": platform.machine(),
                "python": platform.python_version(),
                "date": time.strftime("%Y-%m-%d"),
                "results": results,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\nwritten: {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
