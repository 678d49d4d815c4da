"""Compare, Fine-tune and Export pages in AppTest against a real store: the real dilemmas, real scores
from the embedded model (base and a LoRA adapter), real background processes."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ethdash import adapters, annotations, metrics, orders, scoring
from ethdash.datasets import catalog
from ethdash.datasets.importer import import_paths
from ethdash.evaluation import measures
from ethdash.finetune.config import RunConfig
from ethdash.models import get as get_model
from ethdash.scoring.backends.local import LocalScorer
from ethdash.scoring.prompting import Prompter
from ethdash.settings import demo_dir
from ethdash.store import Store

from .conftest import run_cli
from .helpers import MODEL, make_adapter, wait_until
from .test_app import app_test

pytestmark = pytest.mark.model
BASE = f"{MODEL} (base)"
N_SCORED = 16  # per split, from the start of dev and of test


@pytest.fixture(scope="session")
def scored_file(tmp_path_factory, shared_data) -> Path:
    """A store with the real dilemmas (dev and test), base and adapter 'tuned' scored on 16 items of each split.

    'tuned' is registered with the metadata a fine-tune run writes (its config: trained on the first 16
    dev items) so that Compare can tell it is evaluated on its training items; training it for real is
    tested in test_finetune.py and below through the Fine-tune page.
    """
    home = tmp_path_factory.mktemp("scored-home")
    previous = os.environ.get("ETHDASH_HOME")
    os.environ["ETHDASH_HOME"] = str(home)
    try:
        store = Store(home / "ethdash.duckdb")
        import_paths(store, [shared_data / "scruples" / "dilemmas"])
        config = RunConfig(name="tuned", split="dev", limit=N_SCORED)
        adapters.register(store, "tuned", make_adapter(home / "tuned", seed=3), MODEL, meta={"config": config.__dict__})
        spec = get_model(MODEL)
        scorer, prompter = LocalScorer(spec), Prompter(spec)
        for split in ("dev", "test"):
            ids = tuple(catalog.items_frame(store, "dilemmas", split, "worse", limit=N_SCORED)["item_id"])
            for adapter in (None, "tuned"):
                job = scoring.Job(MODEL, "dilemmas-worse", "dilemmas", split, adapter, item_ids=ids)
                scoring.run(store, scoring.plan(store, job), scorer, prompter)
    finally:
        if previous is None:
            os.environ.pop("ETHDASH_HOME", None)
        else:
            os.environ["ETHDASH_HOME"] = previous
    return home / "ethdash.duckdb"


@pytest.fixture
def scored(store, scored_file) -> Store:
    store.path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(scored_file, store.path)
    return store


def independent(store: Store, split: str, adapter: str | None) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """Gold counts and order-averaged probabilities straight from SQL, sorted by item id."""
    with store.connect() as con:
        rows = con.execute(
            """SELECT s.item_id, s.item_order, s.probs, v.counts, i.content_hash FROM scores s
               JOIN votes v ON v.dataset = s.dataset AND v.split = s.split AND v.item_id = s.item_id
                    AND v.view = 'worse' AND v.sample = 'gold'
               JOIN items i ON i.dataset = s.dataset AND i.split = s.split AND i.item_id = s.item_id
               WHERE s.split = ? AND s.adapter IS NOT DISTINCT FROM ? ORDER BY s.item_id, s.item_order""",
            [split, adapter],
        ).df()
    ab, ba = rows[rows["item_order"] == "ab"], rows[rows["item_order"] == "ba"]
    p = orders.combine(np.stack(ab["probs"].to_numpy()), np.stack(ba["probs"].to_numpy()))
    counts = np.stack(ab["counts"].to_numpy()).astype(float)
    return counts, p, ab[["item_id", "content_hash"]].reset_index(drop=True)


def compare_page(adapters_param: str = "tuned", split: str = "dev"):
    at = app_test()
    at.query_params["dataset"] = "dilemmas"
    at.query_params["split"] = split
    at.query_params["adapters"] = adapters_param
    at.run()
    at.switch_page("views/compare.py").run()
    assert not at.exception, at.exception
    return at


def frame_with(at, column: str) -> pd.DataFrame:
    """The shown table that has this column (AppTest does not expose dataframe keys)."""
    for element in at.dataframe:
        if column in element.value.columns:
            return element.value
    raise AssertionError(f"no table with a column '{column}'")


def first_number(cell: str) -> float:
    return float(cell.split(" ")[0])


def test_compare_shows_metrics_equal_to_an_independent_computation(scored):
    at = compare_page()
    coverage = frame_with(at, "scored")
    assert list(coverage["scored"]) == [N_SCORED, N_SCORED] and list(coverage["items"]) == [2340, 2340]
    table = frame_with(at, "soft xent")
    assert list(table.index) == [BASE, "tuned", "humans (second sample)"]
    for label, adapter in ((BASE, None), ("tuned", "tuned")):
        counts, p, _ = independent(scored, "dev", adapter)
        assert first_number(table.loc[label, "soft xent"]) == pytest.approx(metrics.soft_xent(counts, p), abs=6e-4)
        assert first_number(table.loc[label, "Brier"]) == pytest.approx(metrics.brier(counts, p), abs=6e-4)
        assert first_number(table.loc[label, "accuracy"]) == pytest.approx(metrics.accuracy(counts, p).value, abs=6e-4)
    assert first_number(table.loc[BASE, "soft xent"]) != first_number(table.loc["tuned", "soft xent"])
    warnings = [w.value for w in at.warning]
    assert any(f"tuned was trained on {N_SCORED} of these {N_SCORED} items" in w for w in warnings), warnings
    references = frame_with(at, "reference").set_index("reference")["xent"]
    counts, _, _ = independent(scored, "dev", None)
    assert references["uniform"] == pytest.approx(np.log(2))
    prior = (counts / counts.sum(1, keepdims=True)).mean(0)
    assert references["class prior"] == pytest.approx(metrics.soft_xent(counts, np.tile(prior, (len(counts), 1))))


def test_votes_imported_again_change_what_compare_shows_at_the_next_look(scored, shared_data, tmp_path):
    """Corrected votes keep their items' scores (the prompt is the same) and the metrics follow the new votes
    at the next rerun: nothing the app keeps is served from the earlier votes."""
    at = compare_page()
    before = first_number(frame_with(at, "soft xent").loc[BASE, "soft xent"])
    _, _, done = independent(scored, "dev", None)
    corrected = []
    for line in (shared_data / "scruples" / "dilemmas" / "dev.scruples-dilemmas.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record["id"] in set(done["item_id"]):  # the scored items, their two actions' votes swapped
            record["gold_annotations"] = record["gold_annotations"][::-1]
            record["gold_label"] = 1 - record["gold_label"]
            corrected.append(json.dumps(record))
    (tmp_path / "corrected").mkdir()
    (tmp_path / "corrected" / "dev.scruples-dilemmas.jsonl").write_text("\n".join(corrected) + "\n")
    assert import_paths(scored, [tmp_path / "corrected"]).changed == N_SCORED
    at.run()
    assert not at.exception, at.exception
    assert list(frame_with(at, "scored")["scored"]) == [N_SCORED, N_SCORED]  # no score computed again
    counts, p, _ = independent(scored, "dev", None)
    after = first_number(frame_with(at, "soft xent").loc[BASE, "soft xent"])
    assert after == pytest.approx(metrics.soft_xent(counts, p), abs=6e-4) and abs(after - before) > 1e-3


def test_calibration_on_another_split_uses_that_splits_items(scored):
    at = compare_page()
    at.radio(key="c_calibration").set_value("split test").run()
    assert not at.exception
    counts_test, p_test, _ = independent(scored, "test", None)
    c = metrics.fit_concentration(counts_test, p_test)
    caption = next(c.value for c in at.caption if "c and T* per system" in c.value)
    assert f"{BASE} c={c:.3g}" in caption
    counts_dev, p_dev, _ = independent(scored, "dev", None)
    table = frame_with(at, "soft xent")
    expected = metrics.dirichlet_score(counts_dev, p_dev, c)
    assert first_number(table.loc[BASE, "Dirichlet score"]) == pytest.approx(expected, abs=6e-4)


def test_exports_write_valid_files_with_their_manifest(scored):
    at = compare_page()
    at.button(key="x_metrics_write").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    folder = Path(at.session_state["x_metrics_files"][0]).parent
    csv = pd.read_csv(folder / "metrics.csv")
    parquet = pd.read_parquet(folder / "metrics.parquet")
    assert len(csv) == len(parquet) > 0
    counts, p, items = independent(scored, "dev", None)
    xent = metrics.soft_xent(counts, p)
    tex = (folder / "metrics.tex").read_text()
    assert "\\toprule" in tex and "\\midrule" in tex and "\\bottomrule" in tex and f"{xent:.3f}" in tex
    assert "soft\\\\xent $\\downarrow$" in tex and "\\caption{" in tex  # the wide table (headers on two lines)
    manifest = json.loads((folder / "metrics.manifest.json").read_text())
    assert manifest["adapters"] == {"tuned": adapters.get(scored, "tuned").content_hash}
    assert manifest["dataset"] == "dilemmas" and manifest["split"] == "dev" and manifest["items"] == N_SCORED
    digest = hashlib.sha256()
    for item_id, content in sorted(zip(items["item_id"], items["content_hash"])):
        digest.update(f"dev\t{item_id}\t{content}\n".encode())
    assert manifest["data_checksum"] == digest.hexdigest()
    for name, sha in manifest["files"].items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == sha

    at.button(key="x_reliability_write").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    folder = Path(at.session_state["x_reliability_files"][0]).parent
    from PIL import Image

    for width, pixels in (("single", 2100), ("double", 4200)):  # 600 dpi at 3.5 and 7 inches
        assert (folder / f"reliability-{width}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (folder / f"reliability-{width}.pdf").read_bytes()[:5] == b"%PDF-"
        ET.parse(io.BytesIO((folder / f"reliability-{width}.svg").read_bytes()))  # well-formed SVG
        assert Image.open(folder / f"reliability-{width}.png").size[0] == pixels


def cell_numbers(cell: str) -> tuple[float, ...]:
    """ "0.695 [0.690, 0.700]" → (0.695, 0.690, 0.700)."""
    return tuple(float(x) for x in re.findall(r"-?\d+\.\d+", cell))


def test_evaluate_prints_and_writes_the_numbers_the_page_shows(scored, tmp_path):
    at = compare_page()
    grids = {"study": frame_with(at, "soft xent"), "field": frame_with(at, "JS divergence")}
    out = tmp_path / "paper"
    args = ["--template", "dilemmas-worse", "--dataset", "dilemmas", "--split", "dev", "--adapter", "tuned"]
    done = run_cli("evaluate", *args, "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert f"Compared on {N_SCORED} items of dilemmas/dev" in done.stdout
    long = pd.read_csv(out / "metrics.csv")
    assert set(long["system"]) == set(grids["study"].index) == {BASE, "tuned", "humans (second sample)"}
    assert set(long["metric"]) > {"jsd", "tv", "macro_f1", "balanced_accuracy", "entropy_rho", "outside"}
    for row in long.itertuples():
        page = grids[measures.BY_NAME[row.metric].family]
        shown = cell_numbers(page.loc[row.system, measures.label(row.metric)])
        written = (row.estimate,) if np.isnan(row.low) else (row.estimate, row.low, row.high)
        assert shown == pytest.approx(written, abs=5.1e-4), (row.system, row.metric)
        assert page.loc[row.system, measures.label(row.metric)].replace("\u00a0", " ") in done.stdout
    # The LaTeX table: a row per system, a column per metric with its direction, bold only where the paired
    # interval of the best against the runner-up (here tuned against the base) excludes 0.
    tex = (out / "metrics.tex").read_text()
    assert tex.count("\\begin{table*}") == 2  # the study's metrics, then the field's
    tex = tex[: tex.index("\\end{table*}")]
    body = tex[tex.index("\\midrule") : tex.index("\\bottomrule")]
    header = tex[tex.index("\\toprule") : tex.index("\\midrule")]
    compared = [m for m in measures.compared("study") if m.name in set(long["metric"])]
    assert header.count("&") == len(compared) and "\\caption{" in tex and "\\label{tab:" in tex
    assert "position\\\\bias $\\to 0$" in header and "accuracy\\\\$\\uparrow$" in header  # on two lines
    paired = pd.read_csv(out / "paired.csv").set_index("metric")
    estimates = long.set_index(["system", "metric"])["estimate"]
    for metric in compared:
        key = f"|{metric.label}|" if metric.signed else metric.label
        favours = paired.loc[key, "favours"]
        value = f"{estimates[favours, metric.name]:.3f}" if favours in ("tuned", BASE) else None
        marked = re.findall(r"\\textbf\{([-$\d.]+)\}", body)
        assert (value in marked) if value else True, (metric.name, favours, marked)
    study_rows = paired.loc[[f"|{m.label}|" if m.signed else m.label for m in compared]]
    assert len(re.findall(r"\\textbf", body)) == sum(study_rows["favours"].isin(["tuned", BASE]))
    for name in ("reliability", "scatter"):
        for width in ("single", "double"):
            assert (out / f"{name}-{width}.pdf").read_bytes()[:5] == b"%PDF-"
    manifest = json.loads((out / "metrics.manifest.json").read_text())
    assert manifest["adapters"] == {"tuned": adapters.get(scored, "tuned").content_hash}
    assert manifest["items"] == N_SCORED

    unknown = run_cli("evaluate", *args[:-1], "nope")
    assert unknown.returncode == 1 and "unknown adapter 'nope'" in unknown.stderr and "Traceback" not in unknown.stderr


def test_export_without_a_browser_says_what_to_install(scored, monkeypatch):
    import plotly.graph_objects as go

    from ethdash.errors import EthdashError
    from ethdash.evaluation import export

    monkeypatch.setenv("BROWSER_PATH", "/nonexistent/chromium")
    with pytest.raises(EthdashError, match="BROWSER_PATH"):
        export.figure_bytes(go.Figure(), "png")
    monkeypatch.delenv("BROWSER_PATH")
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(EthdashError, match="apt-get install chromium"):
        export.browser_path()


def test_browse_filters_by_disagreement_and_by_tags(scored):
    at = app_test()
    at.query_params["dataset"] = "dilemmas"
    at.query_params["split"] = "dev"
    at.query_params["adapters"] = "tuned"
    at.run()
    at.selectbox(key="f_against").set_value("tuned").run()
    at.slider(key="f_min_disagreement").set_value(0.2).run()
    counts, p, _ = independent(scored, "dev", "tuned")
    expected = int((metrics.total_variation(counts / counts.sum(1, keepdims=True), p) > 0.2).sum())
    assert at.caption[1].value == f"{expected} of 2340 items", [c.value for c in at.caption]

    at.selectbox(key="f_against").set_value("off").run()
    _, _, items = independent(scored, "dev", None)
    for item_id, tags in ((items["item_id"][0], ("family",)), (items["item_id"][1], ("money", "family"))):
        annotations.save(
            scored,
            annotations.Annotation("dilemmas", "dev", item_id, "ann", None, None, tags),
            ("action 1", "action 2"),
        )
    at.run()
    at.multiselect(key="f_tags").set_value(["money"]).run()
    assert at.caption[0].value == "1 of 2340 items"
    at.multiselect(key="f_tags").set_value(["family"]).run()
    assert at.caption[0].value == "2 of 2340 items"


def test_coverage_follows_the_slice_and_scores_added_since_the_last_look(scored):
    """The slice's coverage counts what is scored among the sliced items (none when nothing passes), and
    scores added after a first look count at the next one: what the process keeps is keyed on the store's
    state, never served stale."""
    from ethdash.datasets.selection import Filters, apply_filters, item_table
    from ethdash.evaluation.assemble import load

    system, options = scoring.System(MODEL, "tuned", "dilemmas-worse"), ("action 1", "action 2")
    columns = ["scored", "items", "split_scored", "split_items"]
    nothing = Filters(search="no item has these words")
    _, _, coverage = load(scored, [system], "dilemmas", "dev", "worse", options, nothing)
    assert coverage.loc[0, columns].tolist() == [0, 0, N_SCORED, 2340]
    _, _, done = independent(scored, "dev", "tuned")
    sample = Filters(sample=300)
    sliced = apply_filters(item_table(scored, "dilemmas", "dev", "worse", options), sample)
    inside = int(sliced["item_id"].isin(done["item_id"]).sum())
    _, _, coverage = load(scored, [system], "dilemmas", "dev", "worse", options, sample)
    assert coverage.loc[0, columns].tolist() == [inside, 300, N_SCORED, 2340]

    more = tuple(catalog.items_frame(scored, "dilemmas", "dev", "worse", limit=N_SCORED + 3)["item_id"])
    spec = get_model(MODEL)
    job = scoring.Job(MODEL, "dilemmas-worse", "dilemmas", "dev", "tuned", item_ids=more)
    assert scoring.run(scored, scoring.plan(scored, job), LocalScorer(spec), Prompter(spec)) == 6  # 3 items x 2
    _, _, coverage = load(scored, [system], "dilemmas", "dev", "worse", options)
    assert coverage.loc[0, columns].tolist() == [N_SCORED + 3, 2340, N_SCORED + 3, 2340]


def test_missing_scores_are_computed_in_the_background(store):
    import_paths(store, [demo_dir()])
    at = app_test()
    at.query_params["dataset"] = "dilemmas"
    at.run()
    at.switch_page("views/compare.py").run()
    assert not at.exception
    assert list(frame_with(at, "scored")["scored"]) == [1]  # the item Browse opened, scored on demand
    at.button(key="c_score").click().run()
    assert not at.exception

    def stored() -> int:
        with store.connect() as con:
            return con.execute("SELECT count(*) FROM scores").fetchone()[0]

    wait_until(lambda: stored() == 48, timeout_s=300)
    assert stored() == 48  # 24 demo dilemmas x 2 orders, written by the background process
    at.run()
    assert list(frame_with(at, "scored")["scored"]) == [24]
    assert frame_with(at, "soft xent").index[0] == BASE


def test_a_run_started_from_the_form_finishes_and_its_adapter_can_be_chosen(store):
    from ethdash.finetune import runs

    import_paths(store, [demo_dir()])
    at = app_test()
    at.query_params["dataset"] = "dilemmas"
    at.run()
    at.switch_page("views/finetune.py").run()
    at.text_input(key="ft_name").set_value("from-form")
    at.number_input(key="ft_limit").set_value(8)
    at.number_input(key="ft_steps").set_value(2)
    at.number_input(key="ft_batch").set_value(4)
    at.button[0].click().run()  # the form's submit button
    assert not at.exception and not at.error, [e.value for e in at.error]
    run = runs.get("from-form")
    assert run.config().limit == 8 and run.config().steps == 2
    wait_until(lambda: run.status().get("state") in ("succeeded", "failed"), timeout_s=400)
    assert run.status()["state"] == "succeeded", run.log_tail()
    at.run()
    assert frame_with(at, "state")["state"].tolist() == ["succeeded"]
    fresh = app_test()
    fresh.query_params["dataset"] = "dilemmas"
    fresh.run()
    assert "from-form" in fresh.sidebar.multiselect[0].options  # the finished run's adapter, ready to compare
