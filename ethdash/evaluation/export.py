"""Figures and tables for papers: PNG (print resolution), SVG and PDF; CSV, Parquet and LaTeX (booktabs).

Every export writes a manifest beside its files: what was compared (model, adapters with their content
hashes, template with its hash, dataset, split, a checksum of the items' contents), the ethdash
version and commit, and the date. Plotly's static export (kaleido) drives a Chromium binary: the system's
(`BROWSER_PATH`, else `chromium` on PATH), never a downloaded one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import threading
import warnings
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go

from ethdash import adapters, templates
from ethdash.errors import EthdashError
from ethdash.evaluation import latex
from ethdash.evaluation.figures import COLUMN_WIDTHS, PX_PER_INCH, paper_figure
from ethdash.store import Store

FIGURE_FORMATS = ("png", "svg", "pdf")
TABLE_FORMATS = ("csv", "parquet", "tex")
PNG_DPI = 600  # print resolution: a single-column PNG is 2,100 px wide
_kaleido_lock = threading.Lock()
_kaleido_started = False


def browser_path() -> str:
    """The Chromium binary for static export, or a clear error saying what to install."""
    explicit = os.environ.get("BROWSER_PATH")
    if explicit:
        if not Path(explicit).is_file():
            raise EthdashError(f"BROWSER_PATH is {explicit}, which does not exist: point it at a Chromium binary")
        return explicit
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    raise EthdashError(
        "figure export needs a Chromium browser and none was found: install it (Debian/Ubuntu: "
        "`sudo apt-get install chromium`, or `make browser`) or set BROWSER_PATH to a Chrome/Chromium binary"
    )


def _ensure_kaleido() -> None:
    """One headless browser per process, started on first use (starting one per figure costs seconds)."""
    global _kaleido_started
    os.environ["BROWSER_PATH"] = browser_path()
    if not _kaleido_started:
        import kaleido

        kaleido.start_sync_server(silence_warnings=True)
        _kaleido_started = True


def figure_bytes(fig: go.Figure, fmt: str, width: str = "single") -> bytes:
    """The figure for a paper (`paper_figure`) at a column width ("single": 3.5 in, "double": 7 in); PDF and
    SVG pages are that size, PNG has 600 dpi at it."""
    if fmt not in FIGURE_FORMATS:
        raise EthdashError(f"figure format is one of {', '.join(FIGURE_FORMATS)}, not '{fmt}'")
    if width not in COLUMN_WIDTHS:
        raise EthdashError(f"figure width is one of {', '.join(COLUMN_WIDTHS)}, not '{width}'")
    styled = paper_figure(fig, COLUMN_WIDTHS[width])
    with _kaleido_lock:
        _ensure_kaleido()
        with warnings.catch_warnings():  # plotly warns that a running kaleido server ignores its defaults
            warnings.simplefilter("ignore", UserWarning)
            scale = PNG_DPI / PX_PER_INCH if fmt == "png" else 1
            return styled.to_image(format=fmt, width=styled.layout.width, height=styled.layout.height, scale=scale)


def latex_table(frame: pd.DataFrame, caption: str = "", float_format: str = "{:.3f}") -> str:
    """A booktabs table (\\toprule, \\midrule, \\bottomrule); text cells and the caption are escaped for LaTeX."""
    styler = frame.style.hide(axis="index").format(precision=3, escape="latex", na_rep="--")
    styler = styler.format_index(escape="latex", axis=1)
    return styler.to_latex(hrules=True, caption=latex.escape(caption) or None, position_float="centering")


def with_warnings(caption: str, warnings: list[str] | None) -> str:
    """A table's caption followed by its warnings (small samples, fits at a bound), so that they travel
    with the table into a paper."""
    if not warnings:
        return caption
    return " ".join([caption, *(f"Warning: {w}." for w in warnings)]).strip()


def table_bytes(frame: pd.DataFrame, fmt: str, caption: str = "", latex_text: str | None = None) -> bytes:
    """The table in one format; `latex_text`, where given, is the LaTeX form (the wide metric table)."""
    if fmt == "csv":
        return frame.to_csv(index=False).encode()
    if fmt == "parquet":
        return frame.to_parquet(index=False)
    if fmt == "tex":
        return (latex_text if latex_text is not None else latex_table(frame, caption)).encode()
    raise EthdashError(f"table format is one of {', '.join(TABLE_FORMATS)}, not '{fmt}'")


def data_checksum(items: pd.DataFrame) -> str:
    """sha256 over the sorted (split, id, content hash) of the items in the export."""
    digest = hashlib.sha256()
    for split, item_id, content in sorted(zip(items["split"], items["item_id"], items["content_hash"])):
        digest.update(f"{split}\t{item_id}\t{content}\n".encode())
    return digest.hexdigest()


def commit() -> str | None:
    """The checkout's commit, for manifests and reports (None outside a git checkout)."""
    root = Path(__file__).resolve().parents[2]  # ethdash/evaluation/export.py → the project
    if not (root / ".git").exists():  # a folder, or a file in a git worktree
        return None
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def manifest(
    store: Store,
    *,
    model: str,
    adapter_names: list[str],
    template: str | None,
    dataset: str,
    split: str | None,
    items: pd.DataFrame,
    what: str,
    extra: dict | None = None,
) -> dict:
    tpl = templates.get(template) if template else None
    return {
        "what": what,
        "model": model,
        "adapters": {name: adapters.get(store, name).content_hash for name in adapter_names},
        "template": {"name": tpl.name, "hash": tpl.content_hash} if tpl else None,
        "dataset": dataset,
        "split": split or "all splits",
        "items": len(items),
        "data_checksum": data_checksum(items),
        **provenance(),
        **(extra or {}),
    }


def provenance() -> dict:
    """What made an export and when: the ethdash version and commit, and the date."""
    return {
        "ethdash_version": version("ethdash"),
        "ethdash_commit": commit(),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def export_folder(root: Path, stem: str) -> Path:
    """A new folder for one export, named by date and a fixed stem (never by user text)."""
    if not stem.replace("-", "").replace("_", "").isalnum():
        raise EthdashError(f"export name '{stem}' is not allowed: letters, digits, - and _")
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S-%f")
    folder = root / f"{stamp}-{stem}"
    folder.mkdir(parents=True)
    return folder


def write_figure(fig: go.Figure, folder: Path, stem: str, meta: dict) -> list[Path]:
    """The figure in every format at both column widths (`{stem}-single.pdf`, `{stem}-double.png`, ...), and
    its manifest, into folder."""
    paths = []
    for width in COLUMN_WIDTHS:
        for fmt in FIGURE_FORMATS:
            path = folder / f"{stem}-{width}.{fmt}"
            path.write_bytes(figure_bytes(fig, fmt, width))
            paths.append(path)
    widths = {w: f"{inches} in" for w, inches in COLUMN_WIDTHS.items()}
    return [*paths, _write_manifest(folder, stem, {**meta, "widths": widths}, paths)]


def write_table(
    frame: pd.DataFrame, folder: Path, stem: str, meta: dict, caption: str = "", latex_text: str | None = None
) -> list[Path]:
    """The table as CSV, Parquet and LaTeX, and its manifest; the manifest's `warnings` (if any) are added
    to the LaTeX caption (`latex_text`, where given, carries its own)."""
    caption = with_warnings(caption, meta.get("warnings"))
    paths = []
    for fmt in TABLE_FORMATS:
        path = folder / f"{stem}.{fmt}"
        path.write_bytes(table_bytes(frame, fmt, caption, latex_text))
        paths.append(path)
    return [*paths, _write_manifest(folder, stem, meta, paths)]


def _write_manifest(folder: Path, stem: str, meta: dict, paths: list[Path]) -> Path:
    files = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}
    path = folder / f"{stem}.manifest.json"
    path.write_text(json.dumps({**meta, "files": files}, indent=2))
    return path
