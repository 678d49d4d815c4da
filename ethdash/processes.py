"""Whether a recorded background process is still the one we started."""

from __future__ import annotations

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
