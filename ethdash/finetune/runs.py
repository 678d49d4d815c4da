"""Run folders and their processes.

A run is a folder under `$ETHDASH_HOME/runs/<name>/` that alone tells what happened:
`config.json`, `status.json` (rewritten atomically), `metrics.jsonl` (append-only), `checkpoints/`
(PEFT adapter folders with the optimizer state, each marked complete when fully written),
`adapter/` (the final adapter) and `log.txt` (the process's output). Runs report through their
folder, never through the store, so the app and the CLI use the store freely while runs go; the
store is written once, at the end, to register the adapter.

A run executes in its own process, detached from whoever started it (a new session), so it
survives the app and the terminal. The command line is built from fixed parts and the folder path:
nothing a user types reaches a shell.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

from ethdash import settings
from ethdash.errors import EthdashError
from ethdash.finetune.config import ConfigError, RunConfig, validate
from ethdash.processes import alive, launch_detached
from ethdash.store import Store

ACTIVE = ("queued", "running")
COMPLETE = "complete"  # marker file written last into a checkpoint


class Run:
    def __init__(self, folder: Path):
        self.folder = folder
        self.name = folder.name

    config_path = property(lambda self: self.folder / "config.json")
    status_path = property(lambda self: self.folder / "status.json")
    metrics_path = property(lambda self: self.folder / "metrics.jsonl")
    log_path = property(lambda self: self.folder / "log.txt")
    checkpoints_dir = property(lambda self: self.folder / "checkpoints")
    adapter_dir = property(lambda self: self.folder / "adapter")

    def config(self) -> RunConfig:
        return RunConfig.from_dict(json.loads(self.config_path.read_text()))

    def raw_status(self) -> dict:
        try:
            return json.loads(self.status_path.read_text())
        except (OSError, ValueError):
            return {"state": "unknown"}

    def write_status(self, **fields) -> dict:
        status = {**self.raw_status(), **fields, "updated_at": time.time()}
        partial = self.status_path.with_suffix(".tmp")
        partial.write_text(json.dumps(status, indent=2))
        partial.replace(self.status_path)  # atomic: a reader never sees half a status
        return status

    def append_metrics(self, record: dict) -> None:
        with self.metrics_path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")

    def drop_metrics_after(self, step: int) -> None:
        """Keep the metrics records of steps up to `step` (a resume redoes the later ones), atomically."""
        kept = [r for r in self.metrics() if int(r.get("step", 0)) <= step]
        partial = self.metrics_path.with_suffix(".tmp")
        partial.write_text("".join(json.dumps(r) + "\n" for r in kept))
        partial.replace(self.metrics_path)

    def metrics(self) -> list[dict]:
        if not self.metrics_path.is_file():
            return []
        out = []
        for line in self.metrics_path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:  # a line cut by a kill
                continue
        return out

    def checkpoints(self) -> list[Path]:
        """Complete checkpoints, oldest first."""
        if not self.checkpoints_dir.is_dir():
            return []
        return sorted(p for p in self.checkpoints_dir.iterdir() if (p / COMPLETE).is_file())

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def status(self) -> dict:
        """The status, with a dead process noticed: a run whose process is gone has failed."""
        status = self.raw_status()
        if status.get("state") in ACTIVE and not alive(status.get("pid"), status.get("pid_started")):
            status = self.write_status(
                state="failed", message="the run's process died (killed or crashed)", log_tail=self.log_tail()
            )
        return status


def get(name: str) -> Run:
    folder = settings.runs_dir() / name
    if not name or "/" in name or name.startswith(".") or not (folder / "config.json").is_file():
        known = ", ".join(r.name for r in all_runs()) or "none"
        raise EthdashError(f"unknown run '{name}' (runs: {known})")
    return Run(folder)


def all_runs() -> list[Run]:
    if not settings.runs_dir().is_dir():
        return []
    return [Run(p) for p in sorted(settings.runs_dir().iterdir()) if (p / "config.json").is_file()]


def create(config: RunConfig, store: Store) -> Run:
    """Validate and write the run folder; nothing runs yet."""
    validate(config, store)
    folder = settings.runs_dir() / config.name
    if folder.exists():
        raise ConfigError(f"a run named '{config.name}' exists already ({folder})")
    folder.mkdir(parents=True)
    run = Run(folder)
    run.config_path.write_text(config.to_json())
    run.write_status(state="queued", created_at=time.time(), step=0)
    return run


def launch(run: Run) -> int:
    """Start the run's own process, detached; returns its pid."""
    worker = ["-m", "ethdash.finetune.worker", str(run.folder)]
    processes = run.config().processes
    if processes > 1:  # data parallel: torchrun starts one worker per process (per GPU)
        worker = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}", *worker]
    started = launch_detached([sys.executable, *worker], run.log_path, append=True, cwd=run.folder)
    run.write_status(state="queued", pid=started.pid, pid_started=started.started)
    return started.pid


def start(config: RunConfig, store: Store) -> Run:
    run = create(config, store)
    launch(run)
    return run


def cancel(run: Run, timeout_s: float = 60.0) -> dict:
    status = run.status()
    if status.get("state") not in ACTIVE:
        raise EthdashError(f"run '{run.name}' is {status.get('state')}, not running")
    pid = status.get("pid")
    run.write_status(cancel_requested=True)
    if pid:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)  # the worker saves a checkpoint and marks itself cancelled
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and alive(pid, status.get("pid_started")):
        time.sleep(0.2)
    if alive(pid, status.get("pid_started")):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    if run.raw_status().get("state") != "cancelled":
        run.write_status(state="cancelled", message="cancelled")
    return run.raw_status()


def resume(run: Run) -> int:
    status = run.status()
    if status.get("state") not in ("failed", "cancelled"):
        raise EthdashError(f"run '{run.name}' is {status.get('state')}: only failed or cancelled runs resume")
    # The failure's message and log tail belong to the failed attempt, not to the resumed one.
    run.write_status(state="queued", message="resuming", cancel_requested=False, log_tail=None)
    return launch(run)


def remove_incomplete_checkpoints(run: Run) -> None:
    if run.checkpoints_dir.is_dir():
        for p in run.checkpoints_dir.iterdir():
            if not (p / COMPLETE).is_file():
                shutil.rmtree(p, ignore_errors=True)
