"""Background scoring jobs: their state read from the log (pure), real `ethdash score` processes that fail,
are cancelled or are killed from outside, and `ethdash score --items`."""

from __future__ import annotations

import os
import signal

import pytest

from ethdash.datasets import catalog
from ethdash.datasets.importer import import_paths
from ethdash.errors import EthdashError
from ethdash.processes import alive
from ethdash.scoring import System, background
from ethdash.scoring.service import Via
from ethdash.settings import demo_dir

from .conftest import run_cli
from .helpers import MODEL, wait_until

DEMO = ("dilemmas", "demo")
BASE = System(MODEL, None, "dilemmas-worse")


def test_progress_and_state_come_from_the_commands_own_lines():
    assert background.progress([]) == background.Progress()
    planned = ["4720 scores wanted, 212 already stored, 4508 to compute (local)"]
    assert background.progress(planned) == background.Progress(4508, 0, None)
    assert background.progress(planned).eta_s is None  # no rate yet
    lines = [*planned, "Loading weights: 100%", "  32/4508 scored    0.8/s  ETA about 1 h 35 min"]
    progress = background.progress(lines)
    assert (progress.to_compute, progress.done, progress.rate) == (4508, 32, 0.8)
    assert progress.eta_s == pytest.approx((4508 - 32) / 0.8)
    done = [*lines, "  4508/4508 scored   35.0/s  ETA about 0 s", "done: 4720 scores of m with t on d/s"]
    assert background.state({}, running=True, lines=done) == background.RUNNING
    assert background.state({}, running=False, lines=done) == background.FINISHED
    assert background.state({}, running=False, lines=lines) == background.FAILED  # ended without its last line
    assert background.state({}, running=False, lines=[]) == background.FAILED
    assert background.state({"cancelled_at": 1.0}, running=False, lines=lines) == background.CANCELLED
    assert background.state({"cancelled_at": 1.0}, running=True, lines=lines) == background.CANCELLED
    assert background.state({"cancelled_at": 1.0}, running=False, lines=done) == background.FINISHED  # too late
    warned = [*done, "Exception ignored in atexit callback"]  # printed at exit, after the last line
    assert background.state({}, running=False, lines=warned) == background.FINISHED


def test_a_job_through_a_server_passes_the_backend_its_url_and_k_to_the_command(store, tmp_path):
    """The pages' backend choice reaches the job's `ethdash score`: the command (run here as a dry run, which
    contacts no server) takes the options and plans the OpenAI-compatible backend's prompts."""
    import_paths(store, [demo_dir()])
    ids = list(catalog.items_frame(store, *DEMO, "worse")["item_id"])[:3]
    items = tmp_path / "items.txt"
    items.write_text("".join(f"{i}\n" for i in ids))
    via = Via("openai", "http://127.0.0.1:9/v1", 5)
    argv = background.score_command(BASE, *DEMO, via, items)
    assert argv[argv.index("--backend") + 1 :][:5] == ["openai", "--server", via.server, "--top-logprobs", "5"]
    assert "--backend" not in background.score_command(BASE, *DEMO)  # the embedded model: the default
    done = run_cli(*argv[3:], "--dry-run")
    assert done.returncode == 0, done.stderr
    assert "dry run: 6 requests" in done.stdout  # three items, both orders; nothing sent


def test_a_job_that_errors_shows_as_failed_with_its_log(store):
    import_paths(store, [demo_dir()])
    job = background.start_scoring(System(MODEL, "no-such-adapter", "dilemmas-worse"), *DEMO)
    wait_until(lambda: background.get(job["id"])["state"] != background.RUNNING, timeout_s=120)
    ended = background.get(job["id"])
    assert ended["state"] == background.FAILED and "unknown adapter 'no-such-adapter'" in ended["log_tail"]
    assert ended["ended_at"] >= ended["started_at"]
    assert [j["id"] for j in background.jobs()] == [job["id"]]


@pytest.mark.model
def test_only_the_given_items_are_scored_and_unknown_ids_are_refused(store):
    import_paths(store, [demo_dir()])
    ids = list(catalog.items_frame(store, *DEMO, "worse")["item_id"])
    with pytest.raises(EthdashError, match="line breaks"):
        background.start_scoring(BASE, *DEMO, item_ids=["a\nb"])
    bad = store.path.parent / "bad.txt"
    bad.write_text(f"{ids[0]}\nnope-1\n\nnope-2\n")
    refused = run_cli(
        "score", "--template", "dilemmas-worse", "--dataset", "dilemmas", "--split", "demo", "--items", str(bad)
    )
    assert refused.returncode == 1
    assert "2 of the 3 ids in" in refused.stderr and "are not items of dilemmas/demo" in refused.stderr
    assert "nope-1, nope-2" in refused.stderr

    job = background.start_scoring(BASE, *DEMO, item_ids=ids[:2])
    assert background.get(job["id"])["items"] == 2
    wait_until(lambda: background.get(job["id"])["state"] != background.RUNNING, timeout_s=300)
    ended = background.get(job["id"])
    assert ended["state"] == background.FINISHED, ended["log_tail"]
    assert "4 scores wanted" in ended["log_tail"]  # two items, both orders: not the 48 of the split
    with store.connect() as con:
        scored = con.execute("SELECT DISTINCT item_id FROM scores").fetchall()
    assert sorted(r[0] for r in scored) == sorted(ids[:2])


def test_a_cancelled_job_stops_and_a_killed_one_fails(store):
    import_paths(store, [demo_dir()])
    cancelled = background.start_scoring(BASE, *DEMO)
    killed = background.start_scoring(System(MODEL, None, "dilemmas-worse"), *DEMO)
    assert background.get(cancelled["id"])["state"] == background.RUNNING
    after = background.cancel(cancelled["id"])
    assert after["state"] == background.CANCELLED and not after["running"]
    assert not alive(cancelled["pid"], cancelled["pid_started"])
    with pytest.raises(EthdashError, match="is cancelled, not running"):
        background.cancel(cancelled["id"])

    os.kill(killed["pid"], signal.SIGKILL)
    wait_until(lambda: not background.get(killed["id"])["running"], timeout_s=30)
    assert background.get(killed["id"])["state"] == background.FAILED
    assert {j["id"]: j["state"] for j in background.jobs()} == {
        cancelled["id"]: background.CANCELLED,
        killed["id"]: background.FAILED,
    }
