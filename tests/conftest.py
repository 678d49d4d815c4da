"""Shared fixtures. Every test gets its own ETHDASH_HOME (store); ETHDASH_CACHE is shared so that
the converted model is never rebuilt by tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ethdash.store import Store

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = (ROOT.parent / "shared" / "data").resolve()
SCRUPLES = SHARED_DATA / "scruples"
META = SHARED_DATA / "scruples-meta"
DILEMMAS_DEV = SCRUPLES / "dilemmas" / "dev.scruples-dilemmas.jsonl"
DILEMMAS_TEST = SCRUPLES / "dilemmas" / "test.scruples-dilemmas.jsonl"
ANECDOTE_SAMPLE = SCRUPLES / "anecdotes" / "sample.scruples-anecdotes.jsonl"


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("ETHDASH_HOME", str(home))
    monkeypatch.delenv("ETHDASH_DATA", raising=False)
    return home


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
