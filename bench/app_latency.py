"""Dashboard latency with all the real data imported and scores cached: the first render of Browse,
switching to the next item, and rendering Compare for two adapters (plus the base model).

Measured with Streamlit's AppTest in this process: the time the page's script takes on the server,
which is what ethdash controls (the browser adds its own drawing time). Each repeat is a fresh session;
what the process caches (st.cache_data, the library's memos of the store's state) is warm after the first,
as in a running server; the model itself is never loaded because every score shown is cached.

Run: .venv/bin/python bench/app_latency.py [--split test] [--adapters A,B] [--repeat 5]
with ETHDASH_HOME pointing at a store holding the real dilemmas and, for the two adapters, their scores
on that split (`ethdash reproduce` leaves exactly that for its dilemma adapters on test).
Prints a table and writes bench/results/app_latency.json. Nothing here is asserted by the tests.
Targets (issue 5): Browse < 1 s, item switch < 0.3 s, Compare < 2 s.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

from streamlit.testing.v1 import AppTest

from ethdash import __version__, adapters, models
from ethdash.evaluation import load
from ethdash.scoring import System
from ethdash.store import Store

ROOT = Path(__file__).resolve().parent.parent
TARGETS = {"browse_first_render": 1.0, "item_switch": 0.3, "compare_render": 2.0}


def default_adapters(store: Store, split: str) -> list[str]:
    names = [n for n, base, _ in adapters.all_adapters(store) if base == models.DEFAULT_MODEL and "-dil-" in n]
    return names[:2]


def one_session(split: str, chosen: list[str], main: Path = ROOT / "app.py", **sidebar: str) -> dict[str, float]:
    """One fresh session: Browse's first render, Next, then Compare; `sidebar`: other URL parameters
    (dataset, view, template; the dilemmas by default). `main`: the app's script (bench/profile_pages.py
    runs it under a profiler)."""
    at = AppTest.from_file(str(main), default_timeout=600)
    for key, value in {"dataset": "dilemmas", **sidebar, "split": split, "adapters": ",".join(chosen)}.items():
        at.query_params[key] = value
    start = time.perf_counter()
    at.run()
    browse = time.perf_counter() - start
    assert not at.exception, at.exception
    start = time.perf_counter()
    at.button(key="browse_next").click().run()
    switch = time.perf_counter() - start
    start = time.perf_counter()
    at.switch_page("views/compare.py").run()
    compare = time.perf_counter() - start
    assert not at.exception, at.exception
    assert any("soft xent" in t.value.columns for t in at.dataframe), "Compare showed no metric table"
    return {"browse_first_render": browse, "item_switch": switch, "compare_render": compare}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--split", default="test")
    parser.add_argument("--adapters", default=None, help="Two registered adapters (default: the reproduction's).")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    store = Store()
    chosen = args.adapters.split(",") if args.adapters else default_adapters(store, args.split)
    if len(chosen) != 2:
        raise SystemExit("two adapters are needed: run `ethdash reproduce` first, or give --adapters A,B")
    systems = [System(models.DEFAULT_MODEL, a, "dilemmas-worse") for a in (None, *chosen)]
    _, _, coverage = load(store, systems, "dilemmas", args.split, "worse", ("action 1", "action 2"))
    print(coverage.to_string(index=False))
    one_session(args.split, chosen)  # warm-up: imports, the item's scores
    runs = [one_session(args.split, chosen) for _ in range(args.repeat)]
    rows = {}
    print(f"\n{'what':<22}{'median s':>10}{'min s':>8}{'target s':>10}")
    for key, target in TARGETS.items():
        values = [r[key] for r in runs]
        rows[key] = {"median_s": statistics.median(values), "min_s": min(values), "target_s": target}
        print(f"{key:<22}{rows[key]['median_s']:>10.3f}{rows[key]['min_s']:>8.3f}{target:>10.1f}")
    result = {
        "ethdash": __version__,
        "machine": platform.machine(),
        "python": platform.python_version(),
        "split": args.split,
        "adapters": chosen,
        "items_compared": int(coverage["scored"].min()),
        "repeat": args.repeat,
        "results": rows,
    }
    out = ROOT / "bench" / "results" / "app_latency.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"\nwritten {out}")


if __name__ == "__main__":
    main()
