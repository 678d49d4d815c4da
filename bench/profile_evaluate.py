"""Where `ethdash evaluate`'s time goes at corpus scale: the six systems on anecdotes/train (27,766 items), a
whole process under Python's profiler, first with no bootstrap kept in the store, then again (reading the
first run's). Writes the functions with the most cumulative time to bench/results/profile_evaluate.txt.

Run after bench/corpus_scale.py has built its store:
  .venv/bin/python bench/profile_evaluate.py --home DIR
"""

from __future__ import annotations

import argparse
import io
import os
import pstats
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--home", type=Path, required=True, help="The store bench/corpus_scale.py built.")
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args()
    os.environ["ETHDASH_HOME"] = str(args.home)
    sys.path.insert(0, str(ROOT / "bench"))
    from corpus_scale import ADAPTERS, forget_kept_bootstraps

    from ethdash.store import Store

    forget_kept_bootstraps(Store())
    adapters = [a for name in ADAPTERS for a in ("--adapter", name)]
    command = ["evaluate", "--template", "anecdotes-binarized", "--dataset", "anecdotes", "--split", "train"]
    report = io.StringIO()
    for run in ("no bootstrap kept", "run again, the bootstrap kept"):
        dump = args.home / f"evaluate-{run.split()[0]}.prof"
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "cProfile", "-o", str(dump), "-m", "ethdash", *command, *adapters],
            check=True, capture_output=True, cwd=ROOT,
        )  # fmt: skip
        took = time.perf_counter() - start
        print(f"=== ethdash evaluate, 6 systems, anecdotes/train, {run}: {took:.1f} s under the profiler", file=report)
        pstats.Stats(str(dump), stream=report).sort_stats("cumulative").print_stats(r"ethdash", args.top)
    text = report.getvalue()
    print(text)
    (ROOT / "bench" / "results" / "profile_evaluate.txt").write_text(text)


if __name__ == "__main__":
    main()
