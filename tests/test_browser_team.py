"""A dashboard shared by a team (issue 16, finding 2): beyond 127.0.0.1 only with a password, and a
read-only mode in which nobody can start runs, background jobs or scoring, or point the app at a server."""

from __future__ import annotations

import re

import pytest

from .browser import settle, start_app, stop_app
from .conftest import DILEMMAS_DEV, run_cli

pytestmark = pytest.mark.browser


def test_listening_beyond_loopback_needs_a_password(isolated_home):
    refused = run_cli("app", "--host", "0.0.0.0", "--port", "1", timeout=60)
    assert refused.returncode == 1 and "set ETHDASH_APP_PASSWORD" in refused.stderr, refused.stderr


def test_a_read_only_dashboard_behind_a_password(chromium_browser, tmp_path):
    from ethdash.datasets.importer import import_paths
    from ethdash.store import Store

    home = tmp_path / "home"
    import_paths(Store(home / "ethdash.duckdb"), [DILEMMAS_DEV])
    app = start_app(
        home, tmp_path / "app.log", args=("--host", "0.0.0.0", "--read-only"), env={"ETHDASH_APP_PASSWORD": "s3cret"}
    )
    context = chromium_browser.new_context(viewport={"width": 1400, "height": 1200})
    try:
        page = context.new_page()
        page.goto(app.url)
        page.get_by_label("Password", exact=True).wait_for(timeout=60_000)
        assert page.get_by_text(re.compile(r"^Item \d+ of")).count() == 0  # nothing before the password
        page.get_by_label("Password", exact=True).fill("wrong")
        page.get_by_role("button", name="Sign in").click()
        page.get_by_text("Wrong password.").wait_for()
        page.get_by_label("Password", exact=True).fill("s3cret")
        page.get_by_role("button", name="Sign in").click()
        page.get_by_text(re.compile(r"^Item \d+ of \d+ · id ")).wait_for(timeout=90_000)
        settle(page)
        assert page.get_by_label("Server URL").count() == 0
        page.get_by_text(re.compile(r"no stored scores here \(read-only")).first.wait_for()  # none computed
        with Store(home / "ethdash.duckdb").connect() as con:
            assert con.execute("SELECT count(*) FROM scores").fetchone()[0] == 0

        page.get_by_role("link", name="Compare").click()
        page.get_by_text("Coverage", exact=True).wait_for()
        settle(page)
        page.get_by_text(re.compile(r"^Read-only: missing scores are computed from the command line")).wait_for()
        assert page.get_by_role("button", name=re.compile(r"^Score the missing items")).count() == 0

        page.get_by_role("link", name="Fine-tune").click()
        page.get_by_text("This dashboard is read-only").wait_for()
        settle(page)
        assert page.get_by_role("button", name="Start run").count() == 0
    finally:
        context.close()
        stop_app(app)
