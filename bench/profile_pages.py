"""Where the pages' time goes at corpus scale: Browse's first render, the next item and Compare, each run
as bench/app_latency.py runs them (AppTest, a fresh session), with Python's profiler on inside the page's
script thread. Prints, per step, the functions with the most cumulative time, and writes them to
bench/results/profile_pages.txt.

Run after bench/corpus_scale.py has built its store:
  .venv/bin/python bench/profile_pages.py --home DIR [--dataset anecdotes] [--warm]
The first session after the start is profiled (nothing about the split cached, no bootstrap kept in the
store: what a first look costs); with --warm, a session after one unprofiled session (what every later visit
costs); with --kept, the first session with the bootstraps an earlier process kept in the store (a restart).
"""

from __future__ import annotations

import argparse
import io
import os
import pstats
import sys
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Run as the app's main script (it must sit beside app.py: the pages are found relative to it): profiles
# each script run in the thread that runs it, and keeps the statistics by the step the bench names.
WRAPPER = """
import cProfile, os, pstats, runpy
from pathlib import Path
profile = cProfile.Profile()
profile.enable()
try:
    runpy.run_path(str(Path(__file__).parent / "app.py"), run_name="__main__")
finally:
    profile.disable()
    to = Path(os.environ["ETHDASH_PROFILE_TO"])
    profile.dump_stats(f"{to}.step{len(list(to.parent.glob('*.step*')))}")
"""
STEPS = ("Browse first render", "next item", "Compare")
SPLITS = {"dilemmas": ("train", "worse", "dilemmas-worse"), "anecdotes": ("train", "binarized", "anecdotes-binarized")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--home", type=Path, required=True, help="The store bench/corpus_scale.py built.")
    parser.add_argument("--dataset", choices=sorted(SPLITS), default="anecdotes")
    parser.add_argument("--warm", action="store_true", help="Profile a later session, not the first.")
    parser.add_argument(
        "--kept", action="store_true", help="The first session, with the bootstraps an earlier process kept."
    )
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    os.environ["ETHDASH_HOME"] = str(args.home)
    sys.path.insert(0, str(ROOT / "bench"))
    from app_latency import one_session
    from corpus_scale import ADAPTERS, forget_kept_bootstraps

    from ethdash.store import Store

    split, view, template = SPLITS[args.dataset]
    sidebar = {"dataset": args.dataset, "view": view, "template": template}
    out_dir = args.home / f"profile-{uuid.uuid4().hex[:8]}"
    out_dir.mkdir()
    os.environ["ETHDASH_PROFILE_TO"] = str(out_dir / "run")
    if args.warm:
        one_session(split, ADAPTERS, **sidebar)
    elif not args.kept:  # a first look: no bootstrap kept in the store by an earlier process either
        forget_kept_bootstraps(Store())
    wrapper = ROOT / f".profile-{uuid.uuid4().hex[:8]}.py"
    wrapper.write_text(WRAPPER)
    try:
        times = one_session(split, ADAPTERS, main=wrapper, **sidebar)
    finally:
        wrapper.unlink()
    dumps = sorted(out_dir.glob("run.step*"), key=lambda p: int(p.suffix.removeprefix(".step")))
    report = io.StringIO()
    when = "a later session" if args.warm else "the first session after the start"
    when += ", the bootstraps kept in the store by an earlier process" if args.kept else ""
    print(f"{args.dataset}/{split}, 6 systems, {when}\n", file=report)
    if len(dumps) != len(STEPS):  # a step that reran the script: name the runs by number
        print(f"{len(dumps)} script runs for the {len(STEPS)} steps {times}", file=report)
    names = STEPS if len(dumps) == len(STEPS) else [f"script run {k + 1}" for k in range(len(dumps))]
    seconds = list(times.values()) if len(dumps) == len(STEPS) else [float("nan")] * len(dumps)
    for step, took, dump in zip(names, seconds, dumps):
        print(f"=== {step}: {took:.2f} s in AppTest under the profiler (its overhead included)", file=report)
        stats = pstats.Stats(str(dump), stream=report)
        stats.sort_stats("cumulative").print_stats(r"ethdash|views|numpy|pandas|plotly|streamlit", args.top)
    text = report.getvalue()
    print(text)
    name = f"profile_pages_{args.dataset}_{'warm' if args.warm else 'kept' if args.kept else 'first'}.txt"
    (ROOT / "bench" / "results" / name).write_text(text)


if __name__ == "__main__":
    main()
