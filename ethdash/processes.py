"""Background processes: the one way to start one detached, and whether a recorded one still runs."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import psutil


def alive(pid: int | None, started: float | None) -> bool:
    """True while the process runs; False once it exited, became a zombie, or its pid went to another process."""
    if not pid:
        return False
    try:
        process = psutil.Process(pid)
        if started is not None and abs(process.create_time() - started) > 1.0:
            return False  # the pid was reused by another process
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


@dataclass(frozen=True)
class Detached:
    """A process started in its own session (so it outlives its parent and a signal reaches its children)."""

    process: subprocess.Popen
    pid: int
    started: float  # its creation time, to tell it from a later process given the same pid


def launch_detached(
    argv: list[str], log_path: Path, *, append: bool = False, cwd: Path | None = None, env: dict | None = None
) -> Detached:
    """Start `argv` detached, with stdin closed and stdout and stderr going to `log_path`."""
    with log_path.open("a" if append else "w") as log:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=None if cwd is None else str(cwd),
            env=env,
        )
    return Detached(process, process.pid, psutil.Process(process.pid).create_time())
