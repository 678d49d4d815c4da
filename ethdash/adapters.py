"""LoRA adapters: PEFT folders registered with a name, their base model and a content hash.

A changed adapter folder is a new adapter: scores are keyed by the hash of the files as they are
when scored, so cached scores of the old content are never reused for the new.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from pathlib import Path

from ethdash import names
from ethdash.errors import EthdashError
from ethdash.migrations import utc_now
from ethdash.store import Store

CONFIG = "adapter_config.json"


@dataclass(frozen=True)
class Adapter:
    name: str
    base_model: str
    path: Path
    content_hash: str

    def served_name(self) -> str:
        """An immutable name for a vLLM server: reloading under one name serves stale results."""
        return f"{self.name}-{self.content_hash[:12]}"


_hash_memo: dict[tuple, str] = {}  # (folder, files' names, sizes and mtimes) -> hash
_hash_memo_lock = threading.Lock()


def content_hash(folder: Path) -> str:
    """SHA-256 of the adapter's config and weights.

    Remembered per process for the files' (name, size, mtime_ns): the dashboard asks on every rerun,
    and reading megabytes of weights each time cost more than the rest of the page. Any write to a
    file changes its mtime_ns, so an edited adapter is hashed anew.
    """
    if not (folder / CONFIG).is_file():
        raise EthdashError(f"{folder} is not a PEFT adapter folder (no {CONFIG})")
    files = [
        p for p in sorted(folder.iterdir()) if p.is_file() and (p.name == CONFIG or p.name.startswith("adapter_model"))
    ]
    stats = [(p.name, p.stat()) for p in files]
    signature = (str(folder.resolve()), *((name, st.st_size, st.st_mtime_ns) for name, st in stats))
    with _hash_memo_lock:
        known = _hash_memo.get(signature)
    if known is not None:
        return known
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    with _hash_memo_lock:
        _hash_memo[signature] = digest.hexdigest()
    return digest.hexdigest()


def register(store: Store, name: str, folder: Path, base_model: str, meta: dict | None = None) -> Adapter:
    if not names.valid(name):
        raise EthdashError(names.refusal("adapter name", name))
    folder = folder.resolve()
    adapter = Adapter(name, base_model, folder, content_hash(folder))
    with store.transaction() as con:
        con.execute("DELETE FROM adapters WHERE name = ?", [name])
        con.execute(
            "INSERT INTO adapters VALUES (?, ?, ?, ?, ?, ?)",
            [name, base_model, str(folder), adapter.content_hash, json.dumps(meta or {}), utc_now()],
        )
    return adapter


def get(store: Store, name: str) -> Adapter:
    """The adapter as its folder is now (the hash is recomputed: an edited folder is a new adapter)."""
    with store.connect() as con:
        row = con.execute("SELECT name, base_model, path FROM adapters WHERE name = ?", [name]).fetchone()
        known = [r[0] for r in con.execute("SELECT name FROM adapters ORDER BY name").fetchall()]
    if row is None:
        raise EthdashError(
            f"unknown adapter '{name}'"
            + (
                f": registered are {', '.join(known)}"
                if known
                else ": none is registered (ethdash adapters add NAME PATH)"
            )
        )
    folder = Path(row[2])
    if not folder.is_dir():
        raise EthdashError(f"adapter '{name}': its folder {folder} is gone")
    return Adapter(row[0], row[1], folder, content_hash(folder))


def all_adapters(store: Store) -> list[tuple[str, str, str]]:
    with store.connect() as con:
        return con.execute("SELECT name, base_model, path FROM adapters ORDER BY name").fetchall()


def meta(store: Store, name: str) -> dict:
    """What was recorded with the adapter: for fine-tuned ones, the run's config and final metrics."""
    with store.connect() as con:
        row = con.execute("SELECT meta FROM adapters WHERE name = ?", [name]).fetchone()
    return json.loads(row[0]) if row and row[0] else {}
