"""The store: recorded migrations, and real concurrent processes that never see a lock error."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from ethdash import migrations
from ethdash import store as store_module
from ethdash.datasets import catalog
from ethdash.datasets.importer import import_paths
from ethdash.settings import demo_dir

from .conftest import ROOT, run_cli


def test_migrations_are_recorded_and_run_once(store):
    with store.connect() as con:
        rows = con.execute("SELECT version, name FROM schema_migrations").fetchall()
        assert rows == [(m.version, m.name) for m in migrations.MIGRATIONS]
        assert migrations.migrate(con) == []  # nothing left to apply


def test_an_old_store_is_upgraded_by_a_new_migration(store, monkeypatch):
    import_paths(store, [demo_dir()])
    newer = migrations.Migration(
        999,
        "add a notes column",
        lambda con: con.execute("ALTER TABLE items ADD COLUMN note VARCHAR DEFAULT 'upgraded'"),
    )
    monkeypatch.setattr(migrations, "MIGRATIONS", [*migrations.MIGRATIONS, newer])
    monkeypatch.setattr(store_module, "_migrated", set())  # as a fresh process would see it
    with store.connect() as con:
        versions = [r[0] for r in con.execute("SELECT version FROM schema_migrations ORDER BY 1").fetchall()]
        notes = con.execute("SELECT DISTINCT note FROM items").fetchall()
    assert versions[-1] == 999 and notes == [("upgraded",)]
    assert catalog.count_items(store) == 36  # the data survived the upgrade


HOLDER = """
import sys, time
from ethdash.store import Store
with Store().transaction() as con:
    con.execute("SELECT count(*) FROM items").fetchall()
    print("locked", flush=True)
    time.sleep(float(sys.argv[1]))
"""


def hold_store(seconds: float) -> subprocess.Popen:
    """Another ethdash process holding the store's write lock for `seconds`."""
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(seconds)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_concurrent_commands_wait_for_each_other_instead_of_failing(store, tmp_path):
    import_paths(store, [demo_dir()])
    csv = tmp_path / "s.csv"
    csv.write_text("text,y,n\nsomething,3,4\n")
    holder = hold_store(3.0)
    started = time.monotonic()
    commands = [
        ["data", "stats", "--json", "--draws", "5"],
        ["data", "import", str(demo_dir())],
        [
            "data",
            "import",
            str(csv),
            "--dataset",
            "survey",
            "--text-column",
            "text",
            "--option",
            "Y=y",
            "--option",
            "N=n",
        ],
        ["data", "stats", "--draws", "5"],
    ]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "ethdash", *c], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for c in commands
    ]
    results = [p.communicate(timeout=120) + (p.returncode,) for p in procs]
    holder.wait(timeout=30)
    for command, (_, err, code) in zip(commands, results):
        assert code == 0, (command, err)
        assert "lock" not in err.lower()
    assert time.monotonic() - started >= 2.0  # they really waited for the holder
    assert {d.name for d in catalog.datasets(store)} == {"dilemmas", "anecdotes", "survey"}


def test_a_store_locked_for_too_long_gives_a_clear_error(store):
    import_paths(store, [demo_dir()])
    holder = hold_store(20.0)  # longer than the command takes to start on a busy machine (6 s was not)
    try:
        result = run_cli("data", "stats", env={"ETHDASH_LOCK_TIMEOUT": "1"})
    finally:
        holder.wait(timeout=30)
    assert result.returncode == 1
    assert f"the store {store.path} stayed locked by another process for 1 s" in result.stderr
    assert "Traceback" not in result.stderr


def test_threads_of_one_process_share_the_store(store):
    """Streamlit reruns pages on many threads: each takes its own unit of work."""
    import concurrent.futures

    import_paths(store, [demo_dir()])
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        counts = list(pool.map(lambda _: catalog.count_items(store), range(400)))
    assert counts == [36] * 400


def test_retry_gives_up_only_after_the_timeout(store):
    timeout_s = 0.3
    catalog.count_items(store)  # create the store
    holder = hold_store(3.0)
    try:
        started = time.monotonic()
        with pytest.raises(store_module.StoreBusyError):
            store_module.open_with_retry(store.path, timeout_s=timeout_s)
        assert time.monotonic() - started >= timeout_s
    finally:
        holder.wait(timeout=30)


def test_a_damaged_store_is_one_clear_message_and_a_backup_restores_it(store, tmp_path):
    """Before: a damaged file gave a raw DuckDB traceback ("Could not read enough bytes…") with no hint."""
    import shutil

    from .conftest import snapshot

    import_paths(store, [demo_dir()])
    before = snapshot(store)
    made = run_cli("store", "backup", str(tmp_path / "backup.duckdb"))
    assert made.returncode == 0, made.stderr
    checked = run_cli("store", "check")
    assert checked.returncode == 0 and "readable" in checked.stdout and "items" in checked.stdout

    size = store.path.stat().st_size
    with store.path.open("r+b") as handle:  # damage it as a cut copy or a failing disk would
        handle.truncate(size // 3)
    for command in (("store", "check"), ("data", "stats")):
        result = run_cli(*command)
        assert result.returncode == 1, result.stdout
        assert f"error: the store {store.path} cannot be read" in result.stderr, result.stderr
        assert "ethdash store backup" in result.stderr and "Traceback" not in result.stderr

    shutil.copyfile(tmp_path / "backup.duckdb", store.path)  # the restore the README describes
    assert run_cli("store", "check").returncode == 0
    assert snapshot(store) == before
    again = run_cli("store", "backup", str(tmp_path / "backup.duckdb"))
    assert again.returncode == 1 and "exists" in again.stderr
