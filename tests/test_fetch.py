"""`ethdash data fetch` against a real HTTP server on 127.0.0.1 serving tarballs built from the
real data (the official host cannot be reached from our machines)."""

from __future__ import annotations

import functools
import http.server
import tarfile
import threading
from pathlib import Path

import pytest

from ethdash.datasets import catalog
from ethdash.scoring.backends.vllm_server import free_port

from .conftest import ANECDOTE_SAMPLE, DILEMMAS_DEV, DILEMMAS_TEST, run_cli, snapshot


@pytest.fixture
def server(tmp_path: Path, shared_data: Path):
    """Serve official-layout archives: each holds a folder with the split files and a README."""
    root = tmp_path / "www"
    root.mkdir()
    with tarfile.open(root / "dilemmas.tar.gz", "w:gz") as tar:
        tar.add(DILEMMAS_DEV, arcname="dilemmas/dev.scruples-dilemmas.jsonl")
        tar.add(DILEMMAS_TEST, arcname="dilemmas/test.scruples-dilemmas.jsonl")
    with tarfile.open(root / "anecdotes.tar.gz", "w:gz") as tar:
        tar.add(ANECDOTE_SAMPLE, arcname="anecdotes/sample.scruples-anecdotes.jsonl")
    handler = functools.partial(_QuietHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep test output clean
        pass


def test_fetch_downloads_with_progress_and_imports(store, server, tmp_path):
    root, url = server
    cache = tmp_path / "cache"
    result = run_cli("data", "fetch", "--url", url, env={"ETHDASH_CACHE": str(cache)})
    assert result.returncode == 0, result.stderr
    assert f"downloading {url}/dilemmas.tar.gz" in result.stderr and "%" in result.stderr  # a progress bar
    for name in ("dilemmas.tar.gz", "anecdotes.tar.gz"):
        assert (cache / "downloads" / name).read_bytes() == (root / name).read_bytes()
    assert not list((cache / "downloads").glob("*.partial"))
    assert len(catalog.items_frame(store, "dilemmas", "test", "worse")) == 2360
    assert len(catalog.items_frame(store, "anecdotes", "sample", "classes")) == 559
    assert "5259 new" in result.stdout
    again = run_cli("data", "fetch", "--url", url, "--dataset", "dilemmas", env={"ETHDASH_CACHE": str(cache)})
    assert again.returncode == 0 and "0 new, 0 changed, 4700 unchanged" in again.stdout


def test_a_dead_server_a_missing_file_and_a_corrupt_archive(store, server, tmp_path):
    root, url = server
    env = {"ETHDASH_CACHE": str(tmp_path / "cache")}
    before = snapshot(store)

    dead = f"http://127.0.0.1:{free_port()}"
    result = run_cli("data", "fetch", "--url", dead, env=env)
    assert result.returncode == 1 and f"{dead}/anecdotes.tar.gz: cannot download" in result.stderr

    (root / "anecdotes.tar.gz").unlink()
    result = run_cli("data", "fetch", "--url", url, env=env)
    assert result.returncode == 1 and f"{url}/anecdotes.tar.gz: the server answered HTTP 404" in result.stderr

    (root / "dilemmas.tar.gz").write_bytes(b"\x1f\x8b garbage, not a gzip stream")
    result = run_cli("data", "fetch", "--url", url, "--dataset", "dilemmas", env=env)
    assert result.returncode == 1 and "dilemmas.tar.gz: not a readable .tar.gz archive" in result.stderr
    assert "Traceback" not in result.stderr
    assert snapshot(store) == before
