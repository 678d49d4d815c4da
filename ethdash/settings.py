"""Where ethdash keeps things. One function per location, each with an environment override.

- ETHDASH_HOME: the store (one DuckDB file) and, later, fine-tune run folders. Tests point it
  at a temporary folder.
- ETHDASH_CACHE: heavy, rebuildable things (the converted embedded model, downloaded tarballs).
  Tests share it so that they never rebuild the model.
- ETHDASH_DATA: an optional folder of Scruples files that `ethdash setup` imports.
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


def lock_timeout_s() -> float:
    """How long a command waits for another ethdash process to release the store."""
    return float(os.environ.get("ETHDASH_LOCK_TIMEOUT", "120"))


def demo_dir() -> Path:
    """The demo sample the project ships (written by ethdash, not Scruples data)."""
    return Path(__file__).resolve().parent.parent / "data" / "demo"
