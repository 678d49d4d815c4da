"""Scoring jobs in the background: a detached `ethdash score` process per system, recorded in a folder.

The dashboard starts them so that its page stays usable; they write to the store in chunks (each
its own unit of work). Each job is a record `JOB.json`, its log `JOB.log` and, when it scores given
items, `JOB.items` (one id per line, read by `ethdash score --items`). A job is running while its
process lives; then finished (its log ends with the command's `done:` line), failed (it ended
without it: crashed or killed) or cancelled (`cancel`, which stops its whole process group). Its
progress is read from the log's lines, so that the store is left to the job meanwhile. The command
line is a list of fixed options and registered names: nothing reaches a shell.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ethdash import settings
from ethdash.errors import EthdashError
from ethdash.processes import alive, launch_detached
from ethdash.scoring import System
from ethdash.scoring.service import LOCAL, Via

RUNNING, FINISHED, FAILED, CANCELLED = "running", "finished", "failed", "cancelled"
DONE_PREFIX = "done: "  # the last line `ethdash score` prints when it has stored every score
_PLANNED = re.compile(r"(\d+) scores wanted, (\d+) already stored, (\d+) to compute")
_PROGRESS = re.compile(r"(\d+)/(\d+) scored\s+([\d.]+)/s")


def score_command(
    system: System, dataset: str, split: str | None, via: Via = LOCAL, items_file: Path | None = None
) -> list[str]:
    argv = [sys.executable, "-m", "ethdash", "score", "--model", system.model, "--template", system.template]
    argv += ["--dataset", dataset]
    if split:
        argv += ["--split", split]
    if system.adapter:
        argv += ["--adapter", system.adapter]
    if items_file is not None:
        argv += ["--items", str(items_file)]
    if via.backend != LOCAL.backend:
        argv += ["--backend", via.backend]
    if via.server:
        argv += ["--server", via.server]
    if via.top_k:
        argv += ["--top-logprobs", str(via.top_k)]
    return argv


def start_scoring(
    system: System,
    dataset: str,
    split: str | None,
    via: Via = LOCAL,
    item_ids: Sequence[str] | None = None,
) -> dict:
    """Start scoring a system on a split (on only `item_ids` of it when given), through the backend `via`
    names, in its own process group."""
    folder = settings.jobs_dir()
    folder.mkdir(parents=True, exist_ok=True)
    job_id = f"score-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    log_path = folder / f"{job_id}.log"
    items_file = None
    if item_ids is not None:
        if not item_ids:
            raise EthdashError("no items to score")
        if any("\n" in i or "\r" in i or i != i.strip() for i in item_ids):
            raise EthdashError("item ids with line breaks or outer spaces cannot be passed to a background job")
        items_file = folder / f"{job_id}.items"
        items_file.write_text("".join(f"{i}\n" for i in item_ids))
    argv = score_command(system, dataset, split, via, items_file)
    started = launch_detached(argv, log_path)
    record = {
        "id": job_id,
        "system": system.label,
        "dataset": dataset,
        "split": split,
        "items": None if item_ids is None else len(item_ids),  # None: the whole split
        "argv": argv,
        "pid": started.pid,
        "pid_started": started.started,
        "log": str(log_path),
        "started_at": time.time(),
    }
    _write(record)
    return record


def _record_path(job_id: str) -> Path:
    if not re.fullmatch(r"score-[\w-]+", job_id):
        raise EthdashError(f"'{job_id}' is not a job id")
    return settings.jobs_dir() / f"{job_id}.json"


def _write(record: dict) -> None:
    path = _record_path(record["id"])
    fields = {k: v for k, v in record.items() if k not in _DERIVED}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(fields, indent=2))
    tmp.replace(path)  # readers never see half a record


@dataclass(frozen=True)
class Progress:
    """What a job's log says of it: the scores to compute and those done, and the recent rate."""

    to_compute: int | None = None
    done: int = 0
    rate: float | None = None  # scores per second

    @property
    def eta_s(self) -> float | None:
        if self.to_compute is None or not self.rate:
            return None
        return max(self.to_compute - self.done, 0) / self.rate


def progress(lines: Sequence[str]) -> Progress:
    """The progress of `ethdash score` from its log lines (pure)."""
    to_compute, done, rate = None, 0, None
    for line in lines:
        if planned := _PLANNED.search(line):
            to_compute, done, rate = int(planned.group(3)), 0, None
        elif step := _PROGRESS.search(line):
            done, to_compute, rate = int(step.group(1)), int(step.group(2)), float(step.group(3))
    return Progress(to_compute, done, rate)


def state(record: dict, running: bool, lines: Sequence[str]) -> str:
    """running, finished, failed or cancelled (pure). A process that ended without the command's last
    line failed, whatever stopped it: an error, a crash, a kill from outside."""
    if running and not record.get("cancelled_at"):
        return RUNNING
    # The command prints its last line once, at the very end of a run that succeeded; it wins over a
    # cancel that came too late, and a warning printed after it (at interpreter exit) does not hide it.
    if any(line.startswith(DONE_PREFIX) for line in lines):
        return FINISHED
    return CANCELLED if record.get("cancelled_at") else FAILED


_DERIVED = ("running", "state", "last_line", "log_tail", "progress", "ended_at")


def _log_lines(record: dict) -> tuple[list[str], float | None]:
    log = Path(record["log"])
    try:
        text, mtime = log.read_text(errors="replace"), log.stat().st_mtime
    except OSError:
        return [], None
    return text.replace("\r", "\n").splitlines(), mtime


def with_state(record: dict, tail_lines: int = 12) -> dict:
    """The record with `running`, `state`, `progress`, `last_line`, `log_tail` and, once ended, `ended_at`
    (the log's last write: the process writes nothing after it ends)."""
    # Alive first, then the log: a job that ends between the two is read with its complete log.
    running = alive(record["pid"], record["pid_started"]) and not record.get("cancelled_at")
    lines, mtime = _log_lines(record)
    out = {**record, "running": running, "state": state(record, running, lines), "progress": progress(lines)}
    written = [line for line in lines if line.strip()]
    out["last_line"] = written[-1] if written else ""
    out["log_tail"] = "\n".join(written[-tail_lines:])
    if not running:
        out["ended_at"] = record.get("cancelled_at") or mtime or record["started_at"]
    return out


def jobs(since_s: float = 24 * 3600) -> list[dict]:
    """Recent jobs, newest first, each with its state (see `with_state`)."""
    folder = settings.jobs_dir()
    if not folder.is_dir():
        return []
    out = []
    for path in sorted(folder.glob("score-*.json"), reverse=True):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if time.time() - record["started_at"] > since_s:
            continue
        out.append(with_state(record))
    return out


def get(job_id: str) -> dict:
    path = _record_path(job_id)
    if not path.is_file():
        raise EthdashError(f"no background job '{job_id}'")
    return with_state(json.loads(path.read_text()))


def cancel(job_id: str, timeout_s: float = 10.0) -> dict:
    """Stop a job's process group (TERM, then KILL after timeout_s) and mark it cancelled."""
    job = get(job_id)
    if job["state"] != RUNNING:
        raise EthdashError(f"job {job_id} is {job['state']}, not running")
    job["cancelled_at"] = time.time()
    _write(job)  # first: a job seen dead meanwhile reads as cancelled, not failed
    pid, started = job["pid"], job["pid_started"]
    if alive(pid, started):  # never signal a pid that went to another process
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)  # the session leader's group: the command and any child
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and alive(pid, started):
        time.sleep(0.1)
    if alive(pid, started):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    return get(job_id)
