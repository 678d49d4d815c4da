"""Scoring jobs in the background: a detached `ethdash score` process per system, recorded in a folder.

The dashboard starts them so that its page stays usable; they write to the store in chunks (each
its own unit of work), and their progress is the growing number of stored scores. The command line
is a list of fixed options and registered names: nothing reaches a shell.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil

from ethdash import settings
from ethdash.processes import alive
from ethdash.scored import System


def jobs_dir() -> Path:
    return settings.home_dir() / "jobs"


def score_command(system: System, dataset: str, split: str | None, server: str | None = None) -> list[str]:
    argv = [sys.executable, "-m", "ethdash", "score", "--model", system.model, "--template", system.template]
    argv += ["--dataset", dataset]
    if split:
        argv += ["--split", split]
    if system.adapter:
        argv += ["--adapter", system.adapter]
    if server:
        argv += ["--backend", "vllm", "--server", server]
    return argv


def start_scoring(system: System, dataset: str, split: str | None, server: str | None = None) -> dict:
    folder = jobs_dir()
    folder.mkdir(parents=True, exist_ok=True)
    job_id = f"score-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    log_path = folder / f"{job_id}.log"
    argv = score_command(system, dataset, split, server)
    with log_path.open("w") as log:
        process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    record = {
        "id": job_id,
        "system": system.label,
        "dataset": dataset,
        "split": split,
        "argv": argv,
        "pid": process.pid,
        "pid_started": psutil.Process(process.pid).create_time(),
        "log": str(log_path),
        "started_at": time.time(),
    }
    (folder / f"{job_id}.json").write_text(json.dumps(record, indent=2))
    return record


def jobs(since_s: float = 24 * 3600) -> list[dict]:
    """Recent jobs, newest first, each with `running` and the last line of its log."""
    folder = jobs_dir()
    if not folder.is_dir():
        return []
    out = []
    for path in sorted(folder.glob("score-*.json"), reverse=True):
        record = json.loads(path.read_text())
        if time.time() - record["started_at"] > since_s:
            continue
        log = Path(record["log"])
        lines = log.read_text(errors="replace").replace("\r", "\n").splitlines() if log.is_file() else []
        record["running"] = alive(record["pid"], record["pid_started"])
        record["last_line"] = next((line for line in reversed(lines) if line.strip()), "")
        out.append(record)
    return out
