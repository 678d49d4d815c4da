"""Download the official Scruples tarballs into ETHDASH_CACHE (then the caller imports them)."""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from ethdash import settings
from ethdash.errors import EthdashError

OFFICIAL_BASE_URL = "https://storage.googleapis.com/ai2-mosaic-public/projects/scruples/v1.0/data"
ARCHIVES = {"anecdotes": "anecdotes.tar.gz", "dilemmas": "dilemmas.tar.gz"}
CHUNK = 1 << 16

# progress(done_bytes, total_bytes or None)
Progress = Callable[[int, int | None], None]


def base_url() -> str:
    return os.environ.get("ETHDASH_SCRUPLES_URL", OFFICIAL_BASE_URL).rstrip("/")


def download(url: str, target: Path, progress: Progress | None = None, timeout_s: float = 60.0) -> Path:
    """Stream `url` to `target`, through a partial file so that an interrupted download leaves none."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response, partial.open("wb") as out:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            done = 0
            while chunk := response.read(CHUNK):
                out.write(chunk)
                done += len(chunk)
                if progress:
                    progress(done, total)
        if total is not None and done != total:
            raise EthdashError(f"{url}: the download stopped at {done} of {total} bytes")
    except urllib.error.HTTPError as exc:
        partial.unlink(missing_ok=True)
        raise EthdashError(f"{url}: the server answered HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        partial.unlink(missing_ok=True)
        reason = getattr(exc, "reason", exc)
        raise EthdashError(f"{url}: cannot download ({reason})") from exc
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(target)
    return target


def fetch_scruples(
    datasets: list[str], progress_for: Callable[[str], Progress | None] | None = None, url: str | None = None
) -> list[Path]:
    """Download the named datasets' archives into ETHDASH_CACHE/downloads and return their paths."""
    root = (url or base_url()).rstrip("/")
    folder = settings.downloads_dir()
    paths = []
    for name in datasets:
        if name not in ARCHIVES:
            raise EthdashError(f"unknown dataset '{name}': choose from {', '.join(ARCHIVES)}")
        archive = ARCHIVES[name]
        source = f"{root}/{archive}"
        paths.append(download(source, folder / archive, progress_for(source) if progress_for else None))
    return paths
