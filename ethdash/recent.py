"""A small, thread-safe memo of the last few results (Streamlit runs each session's script in its own
thread): the pages rebuild the same derived tables on every rerun, and a memo keyed on the store's state
(see `catalog.items_version`, `jobs.scores_version`) keeps them until what they are derived from changes."""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class Recent(Generic[T]):
    """The `kept` most recently used results, by key."""

    def __init__(self, kept: int):
        self.kept = kept
        self._entries: collections.OrderedDict[Hashable, T] = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> T | None:
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
            return value

    def put(self, key: Hashable, value: T) -> T:
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.kept:
                self._entries.popitem(last=False)
        return value

    def get_or_compute(self, key: Hashable, compute: Callable[[], T]) -> T:
        """The remembered result, else computed (outside the lock: two threads may both compute it once)."""
        found = self.get(key)
        return found if found is not None else self.put(key, compute())

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
