"""Retake the README's screenshots in headless Chromium (Debian's), from a real `ethdash app`.

- docs/screenshot.png: Browse on the demo sample (a fresh ETHDASH_HOME: the app imports the demo), item 4,
  with the embedded model's probabilities.
- docs/compare.png: Compare on the real test dilemmas in a store `ethdash reproduce` has filled (its two
  dilemma adapters and their scores), given as --reproduced HOME.

Run: .venv/bin/python docs/take_screenshots.py --reproduced ~/.ethdash  (or a reproduction's ETHDASH_HOME)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def start(home: Path) -> tuple[subprocess.Popen, str]:
    from ethdash.scoring.backends.vllm_server import free_port

    port = free_port()
    app = subprocess.Popen(
        [sys.executable, "-m", "ethdash", "app", "--port", str(port)],
        cwd=ROOT,
        env={**os.environ, "ETHDASH_HOME": str(home)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                return app, url
        except OSError:
            time.sleep(0.3)
    app.kill()
    raise SystemExit("the app did not start")


def settle(page) -> None:
    page.wait_for_timeout(1500)
    page.get_by_test_id("stStatusWidget").wait_for(state="hidden", timeout=600_000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reproduced", type=Path, required=True, help="ETHDASH_HOME of a finished reproduction.")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    from ethdash import adapters
    from ethdash.store import Store

    store = Store(args.reproduced / "ethdash.duckdb")
    dilemma_adapters = sorted(n for n, _, _ in adapters.all_adapters(store) if "-dil-" in n)
    print(f"Compare: the base model with {', '.join(dilemma_adapters)}")
    with sync_playwright() as p, tempfile.TemporaryDirectory() as fresh:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        app, url = start(Path(fresh))
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.goto(f"{url}/?dataset=dilemmas&split=demo&item=demo-dilemma-04")
            page.get_by_text("Human vote split and model probabilities").wait_for(timeout=600_000)
            settle(page)
            page.screenshot(path=str(ROOT / "docs" / "screenshot.png"))
        finally:
            app.terminate()
        app, url = start(args.reproduced)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1100})
            query = f"dataset=dilemmas&split=test&view=worse&adapters={','.join(dilemma_adapters)}"
            page.goto(f"{url}/compare?{query}")
            page.get_by_text("Metrics", exact=True).wait_for(timeout=600_000)
            settle(page)
            # Coverage at the top: the metric tables and their warning below it.
            page.get_by_text("Coverage", exact=True).evaluate("e => e.scrollIntoView({block: 'start'})")
            page.wait_for_timeout(500)
            page.screenshot(path=str(ROOT / "docs" / "compare.png"))
        finally:
            app.terminate()
        browser.close()


if __name__ == "__main__":
    main()
