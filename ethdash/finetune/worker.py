"""The entry point of a run's own process: `python -m ethdash.finetune.worker RUN_FOLDER`."""

from __future__ import annotations

import signal
import sys
import traceback
from pathlib import Path

import psutil


def main(folder: str) -> int:
    from ethdash.finetune.runs import Run
    from ethdash.finetune.train import train
    from ethdash.store import Store

    run = Run(Path(folder))
    me = psutil.Process()
    run.write_status(state="running", pid=me.pid, pid_started=me.create_time(), message="starting")
    stop = {"requested": False}

    def on_term(signum, frame):  # cancel: finish the step in progress, checkpoint, and stop
        stop["requested"] = True

    signal.signal(signal.SIGTERM, on_term)
    try:
        state = train(run, Store(), lambda: stop["requested"])
    except Exception as exc:  # noqa: BLE001 - every failure must end up in the status
        traceback.print_exc()
        run.write_status(state="failed", message=f"{type(exc).__name__}: {exc}", log_tail=run.log_tail())
        return 1
    if state == "cancelled":
        run.write_status(state="cancelled", message="cancelled")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
