"""A real dashboard in a real browser: one `ethdash app` process per test session, driven by
Playwright in Debian's headless Chromium (never a downloaded browser).

The fixtures live in conftest.py; this module holds what the browser tests share.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from ethdash.scoring.backends.vllm_server import free_port
from ethdash.store import Store

ROOT = Path(__file__).resolve().parent.parent

BROWSER_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("Debian's chromium is not installed (make test installs it)")
        pytest.skip("Debian's chromium is not installed")
    return path


@dataclass
class RunningApp:
    """The app under test: its URL, its own ETHDASH_HOME and store, and its log."""

    url: str
    home: Path
    process: subprocess.Popen
    log: Path

    @property
    def store(self) -> Store:
        return Store(self.home / "ethdash.duckdb")

    def env(self) -> dict[str, str]:
        return {**os.environ, "ETHDASH_HOME": str(self.home)}

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:]


def start_app(
    home: Path, log: Path, timeout_s: float = 90, args: tuple[str, ...] = (), env: dict | None = None
) -> RunningApp:
    port = free_port()
    handle = log.open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "ethdash", "app", "--port", str(port), *args],
        cwd=ROOT,
        stdout=handle,
        stderr=subprocess.STDOUT,
        env={**os.environ, "ETHDASH_HOME": str(home), **(env or {})},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                return RunningApp(url, home, process, log)
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                pytest.fail(f"the app did not start: {log.read_text()[-2000:]}")
            time.sleep(0.3)


def stop_app(app: RunningApp) -> None:
    app.process.terminate()
    try:
        app.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        app.process.kill()


def settle(page, timeout_ms: float = 120_000) -> None:
    """Wait until the app's script run is over (its running indicator gone) before the next step.

    The indicator shows up some hundreds of milliseconds after an action: where the outcome is known,
    wait for it instead (`wait_for_item`)."""
    page.wait_for_timeout(1000)
    page.get_by_test_id("stStatusWidget").wait_for(state="hidden", timeout=timeout_ms)


def wait_for_item(page, position: int | None, item_id: str, timeout_ms: float = 60_000) -> None:
    """Wait until Browse shows this item at this position of its list (None: at any position)."""
    where = r"\d+" if position is None else str(position)
    caption = re.compile(rf"^Item {where} of \d+ · id {re.escape(item_id)} ·")
    page.get_by_text(caption).wait_for(timeout=timeout_ms)


def open_item_id(page) -> str:
    """The id of the item Browse shows, read from its caption ("Item 3 of 40 · id X · from ...")."""
    caption = page.get_by_text(re.compile(r"^Item \d+ of \d+ · id ")).inner_text()
    return re.search(r"· id (\S+) ·", caption).group(1)


def row_cells(row, at_least: int = 2, timeout_ms: float = 60_000) -> list[str]:
    """The cells of a data grid's row, once the grid has drawn at least `at_least` of them.

    A grid is redrawn on every rerun (its accessible table twin too): reading its cells at once can catch it
    between two draws with no row at all, so poll until the row is there (the twin is hidden: no visibility)."""
    deadline = time.monotonic() + timeout_ms / 1000
    while True:
        cells = row.first.locator("td").all_inner_texts()
        if len(cells) >= at_least and all(c.strip() for c in cells[:at_least]):
            return cells
        if time.monotonic() > deadline:
            raise AssertionError(f"the grid row never showed {at_least} cells (last read: {cells})")
        time.sleep(0.25)


def sidebar_value(page, label: str) -> str:
    """What a sidebar select box shows (Streamlit 1.67 draws it as a combo box)."""
    return page.get_by_test_id("stSidebar").get_by_role("combobox", name=label, exact=True).input_value()


def sidebar_options(page, label: str) -> list[str]:
    """Open a sidebar select box and read its options (then close it with Escape)."""
    box = page.get_by_test_id("stSidebar").get_by_label(label)
    if box.is_disabled():  # Streamlit disables a select box that has no options
        return []
    box.click()
    options = [o.inner_text() for o in page.get_by_role("option").all()]
    page.keyboard.press("Escape")
    return options
