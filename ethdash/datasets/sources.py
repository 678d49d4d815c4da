"""Turn the paths a user names into validated items: files, folders and `.tar.gz` archives.

Everything is read and validated before anything is written, so that one bad file leaves the
store exactly as it was.
"""

from __future__ import annotations

import hashlib
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from ethdash.datasets.items import CUSTOM_VIEW, Dataset, Item, LabelView, scruples_dataset
from ethdash.datasets.readers.mapping import Mapping, read_mapped
from ethdash.datasets.readers.records import ProblemLog
from ethdash.datasets.readers.scruples import EXPECTED_NAME, identify, read_scruples
from ethdash.errors import DataError, Problem


@dataclass(frozen=True)
class SourceFile:
    name: str
    sha256: str


@dataclass
class ReadResult:
    datasets: dict[str, Dataset] = field(default_factory=dict)
    items: list[Item] = field(default_factory=list)
    sources: list[SourceFile] = field(default_factory=list)


def read_paths(paths: list[Path], mapping: Mapping | None = None) -> ReadResult:
    """Read and validate everything; raise DataError listing every problem found."""
    result = ReadResult()
    problems: list[Problem] = []
    for path in paths:
        for name, data in _expand(path, mapping, problems):
            log = ProblemLog(name)
            items, dataset = _read_one(name, data, mapping, log)
            problems.extend(log.problems)
            if dataset is not None and not log.problems:
                result.datasets[dataset.name] = dataset
                result.items.extend(items)
                result.sources.append(SourceFile(name, hashlib.sha256(data).hexdigest()))
    problems.extend(_duplicates_across_files(result.items))
    if problems:
        raise DataError(problems)
    if not result.items:
        raise DataError([Problem(", ".join(map(str, paths)), "no items found")])
    return result


def _read_one(name: str, data: bytes, mapping: Mapping | None, log: ProblemLog) -> tuple[list[Item], Dataset | None]:
    if mapping is not None:
        description, judgments = mapping.judgments_description(), mapping.judgments
        views = (LabelView(CUSTOM_VIEW, mapping.options, description, judgments, mapping.ordered),)
        return read_mapped(data, name, mapping, log), Dataset(mapping.dataset, "custom", views)
    known = identify(Path(name.rstrip("]")).name)
    if known is None:
        log.add(f"the file name says neither dataset: expected {EXPECTED_NAME}, or give a mapping (--mapping)")
        return [], None
    kind, split = known
    return read_scruples(data, name, kind, split, log), scruples_dataset(kind)


def _expand(path: Path, mapping: Mapping | None, problems: list[Problem]) -> list[tuple[str, bytes]]:
    """(name, bytes) of every file to read under `path`."""
    if not path.exists():
        problems.append(Problem(str(path), "no such file or folder"))
        return []
    if path.is_dir():
        wanted = _wanted_in_folder(path, mapping)
        if not wanted:
            problems.append(
                Problem(
                    str(path), f"no importable files in this folder (expected {EXPECTED_NAME} or a .tar.gz of them)"
                )
            )
        return [pair for p in wanted for pair in _expand(p, mapping, problems)]
    if path.name.endswith((".tar.gz", ".tgz")):
        return _tar_members(path, problems)
    try:
        return [(str(path), path.read_bytes())]
    except OSError as exc:
        problems.append(Problem(str(path), f"cannot read: {exc.strerror}"))
        return []


def _wanted_in_folder(folder: Path, mapping: Mapping | None) -> list[Path]:
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    if mapping is not None:
        return [p for p in files if mapping.file_format(p.name)]
    return [p for p in files if identify(p.name) or p.name.endswith((".tar.gz", ".tgz"))]


def _tar_members(path: Path, problems: list[Problem]) -> list[tuple[str, bytes]]:
    out = []
    try:
        with tarfile.open(path, "r:gz") as archive:
            for member in archive:
                parts = Path(member.name).parts
                if member.name.startswith("/") or ".." in parts:  # never taken for a file of the archive
                    problems.append(
                        Problem(str(path), f"archive member '{member.name}' is refused: its path leaves the archive")
                    )
                    continue
                if member.isfile() and identify(Path(member.name).name):
                    handle = archive.extractfile(member)
                    if handle is not None:
                        out.append((f"{path}[{member.name}]", handle.read()))
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        problems.append(Problem(str(path), f"not a readable .tar.gz archive ({exc or type(exc).__name__})"))
        return []
    if not out:
        problems.append(Problem(str(path), f"the archive holds no {EXPECTED_NAME} files"))
    return out


def _duplicates_across_files(items: list[Item]) -> list[Problem]:
    seen: dict[tuple[str, str, str], Item] = {}
    problems = []
    for item in items:
        if item.key in seen and seen[item.key].source != item.source:
            first = seen[item.key]
            problems.append(
                Problem(
                    item.source, f"id '{item.item_id}' also appears in {first.source}:{first.line}", item.line, "id"
                )
            )
        seen.setdefault(item.key, item)
    return problems
