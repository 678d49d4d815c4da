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
    import os

    main_process = os.environ.get("RANK", "0") == "0"
    if "WORLD_SIZE" not in os.environ:  # under torchrun, the recorded process stays torchrun (the group leader)
        me = psutil.Process()
        run.write_status(state="running", pid=me.pid, pid_started=me.create_time(), message="starting")
    stop = {"requested": False}

    def on_term(signum, frame):  # cancel: finish the step in progress, checkpoint, and stop
        stop["requested"] = True

    signal.signal(signal.SIGTERM, on_term)
    share_cores(run)
    try:
        state = train(run, Store(), lambda: stop["requested"])
    except Exception as exc:  # noqa: BLE001 - every failure must end up in the status
        traceback.print_exc()
        if main_process:
            run.write_status(state="failed", message=f"{type(exc).__name__}: {exc}", log_tail=run.log_tail())
        return 1
    if state == "cancelled" and main_process:
        run.write_status(state="cancelled", message="cancelled")
    return 0


def share_cores(run) -> None:
    """Split the cores between the runs going at once: oversubscribed threads slow every run down."""
    import os

    import torch

    from ethdash.finetune.runs import all_runs

    wanted = os.environ.get("ETHDASH_TRAIN_THREADS")
    if wanted:
        threads = int(wanted)
    else:
        active = sum(
            1 for r in all_runs() if r.name == run.name or r.raw_status().get("state") in ("queued", "running")
        )
        threads = max(1, (os.cpu_count() or 1) // max(active, 1))
    torch.set_num_threads(threads)
    print(f"using {threads} CPU threads", flush=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
