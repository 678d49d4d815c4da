"""Shared fixtures. Every test gets its own ETHDASH_HOME (store); ETHDASH_CACHE is shared so that
the converted model is never rebuilt by tests."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import hypothesis
import pytest

from ethdash.store import Store

# Under `make test`'s two processes (pytest-xdist), each test process and everything it starts (CLI
# processes, fine-tune workers, the app) computes on one thread: two torch processes with two threads each
# on two cores spin against each other (a 4-minute fine-tune test took 16).
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "ETHDASH_TRAIN_THREADS"):
        os.environ.setdefault(variable, "1")

# Property tests check values, never speed: no per-example deadline (a busy 2-core CI machine is slow).
hypothesis.settings.register_profile("ethdash", deadline=None)
hypothesis.settings.load_profile("ethdash")

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = (ROOT.parent / "shared" / "data").resolve()
SCRUPLES = SHARED_DATA / "scruples"
META = SHARED_DATA / "scruples-meta"
DILEMMAS_DEV = SCRUPLES / "dilemmas" / "dev.scruples-dilemmas.jsonl"
DILEMMAS_TEST = SCRUPLES / "dilemmas" / "test.scruples-dilemmas.jsonl"
ANECDOTE_SAMPLE = SCRUPLES / "anecdotes" / "sample.scruples-anecdotes.jsonl"


# `make test` runs two processes (pytest-xdist): each test goes to whichever process is free, in this order
# (--no-loadscope-reorder): the longest modules first (minutes each, measured on a 2-core machine), so
# that both processes end together instead of one waiting on a last long test. Only the order changes; a
# module missing here runs after these, in the usual order. (The vLLM tests run after, alone: the Makefile.)
LONGEST_FIRST = [
    "test_finetune.py",
    "test_reproduce.py",
    "test_browser_first_session.py",
    "test_browser_compare.py",
    "test_scoring.py",
    "test_browser_browse.py",
    "test_browser_finetune.py",
]
# Modules whose tests share an expensive module- or session-scoped fixture (items scored for the module, a
# scored store, rendered figures): one process runs all of a module's tests.
SHARED_FIXTURES = {
    "test_browser_compare.py",
    "test_scoring.py",
    "test_dashboard.py",
    "test_figure_layout.py",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: order within a module kept


def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """`--dist loadscope` with these units of work: a module of SHARED_FIXTURES, or any other single test.
    (xdist's own `loadgroup` marks do not take effect under pytest 9.2: its workers' node ids keep no group.)"""
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class SharedModulesTogether(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return module if Path(module).name in SHARED_FIXTURES else nodeid

    return SharedModulesTogether(config, log)


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("ETHDASH_HOME", str(home))
    monkeypatch.delenv("ETHDASH_DATA", raising=False)
    yield home
    # A test that failed while a fine-tune run was going (a timeout) must not leave its detached worker
    # training for the rest of the suite: on 2 cores it slows every later test many times over.
    from ethdash.finetune import runs

    for run in runs.all_runs():
        if run.raw_status().get("state") in runs.ACTIVE:
            with contextlib.suppress(Exception):
                runs.cancel(run, timeout_s=10)


@pytest.fixture
def store(isolated_home: Path) -> Store:
    return Store(isolated_home / "ethdash.duckdb")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SCRUPLES.is_dir():
        pytest.skip("the real Scruples data is not beside the project (../shared/data); CI always has it")
    return SHARED_DATA


def run_cli(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the real `ethdash` command in its own process."""
    return subprocess.run(
        [sys.executable, "-m", "ethdash", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
        cwd=ROOT,
    )


def snapshot(store: Store) -> dict[str, list]:
    """Every row of every table, to check that a failed operation left the store as it was."""
    if not store.path.exists():
        return {}
    with store.connect() as con:
        tables = [
            r[0] for r in con.execute("SELECT table_name FROM information_schema.tables ORDER BY table_name").fetchall()
        ]
        return {t: sorted(map(repr, con.execute(f'SELECT * FROM "{t}"').fetchall())) for t in tables}


# --- The browser tests' app: one real `ethdash app` per test session, on its own store of real data ---


@pytest.fixture(scope="session")
def browser_app(tmp_path_factory: pytest.TempPathFactory, shared_data: Path):
    """A running dashboard on a store holding the real dilemmas (dev and test) and anecdote sample.

    Tests share it (starting an app and loading the model costs seconds each), so each test keeps to
    its own items, annotator names, run names and adapters."""
    from ethdash.datasets.importer import import_paths

    from .browser import start_app, stop_app

    home = tmp_path_factory.mktemp("app-home")
    import_paths(Store(home / "ethdash.duckdb"), [DILEMMAS_DEV, DILEMMAS_TEST, ANECDOTE_SAMPLE])
    app = start_app(home, home.parent / "app.log")
    yield app
    stop_app(app)


@pytest.fixture
def on_app(browser_app, monkeypatch: pytest.MonkeyPatch):
    """The test's library calls and CLI processes use the running app's home (its store, runs, jobs)."""
    monkeypatch.setenv("ETHDASH_HOME", str(browser_app.home))
    return browser_app


@pytest.fixture(scope="session")
def chromium_browser():
    from playwright.sync_api import sync_playwright

    from .browser import BROWSER_ARGS, chromium

    executable = chromium()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=BROWSER_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(chromium_browser, on_app, tmp_path: Path):
    """A fresh browser context (its own session with the app) at a 1400 x 1200 window; a screenshot of
    the last state is left in the test's folder when the test fails."""
    context = chromium_browser.new_context(viewport={"width": 1400, "height": 1200})
    page = context.new_page()
    page.set_default_timeout(60_000)
    yield page
    try:
        page.screenshot(path=str(tmp_path / "last.png"), full_page=True)
    finally:
        context.close()
