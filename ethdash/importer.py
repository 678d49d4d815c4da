"""Import files into the store: read and validate everything first, then write in one transaction."""

from __future__ import annotations

from pathlib import Path

from ethdash import catalog, settings
from ethdash.catalog import ImportReport
from ethdash.readers.mapping import Mapping
from ethdash.sources import read_paths
from ethdash.store import Store


def import_paths(store: Store, paths: list[Path], mapping: Mapping | None = None) -> ImportReport:
    """Idempotent (the same files twice change nothing) and atomic (a bad file writes nothing)."""
    return catalog.write_items(store, read_paths(paths, mapping))


def import_demo_if_empty(store: Store) -> ImportReport | None:
    """Fall back to the demo sample the project ships when the store has no items at all."""
    if catalog.count_items(store) > 0:
        return None
    return import_paths(store, [settings.demo_dir()])
