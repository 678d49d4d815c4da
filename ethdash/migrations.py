"""Schema migrations of the store: small functions registered in order and recorded when applied.

Never edit a migration that has shipped; add a new one. Upgrading an old store is automatic.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import duckdb


# Times are stored as naive TIMESTAMPs in UTC (TIMESTAMPTZ would need pytz to read back).
def utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


Migrate = Callable[[duckdb.DuckDBPyConnection], None]


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    apply: Migrate


MIGRATIONS: list[Migration] = []


def migration(version: int, name: str) -> Callable[[Migrate], Migrate]:
    def register(fn: Migrate) -> Migrate:
        assert all(m.version < version for m in MIGRATIONS), "migrations must be registered in order"
        MIGRATIONS.append(Migration(version, name, fn))
        return fn

    return register


def applied_versions(con: duckdb.DuckDBPyConnection) -> list[int]:
    con.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INTEGER PRIMARY KEY, name VARCHAR NOT NULL, applied_at TIMESTAMP NOT NULL)"
    )
    return [row[0] for row in con.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()]


def migrate(con: duckdb.DuckDBPyConnection) -> list[int]:
    """Apply every migration not yet recorded, each in its own transaction. Returns those applied."""
    done = set(applied_versions(con))
    applied = []
    for m in MIGRATIONS:
        if m.version in done:
            continue
        con.begin()
        try:
            m.apply(con)
            con.execute("INSERT INTO schema_migrations VALUES (?, ?, ?)", [m.version, m.name, utc_now()])
        except BaseException:
            con.rollback()
            raise
        con.commit()
        applied.append(m.version)
    return applied


@migration(1, "datasets, label views, items, votes, imports")
def _initial(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("""
        CREATE TABLE datasets (
            name VARCHAR PRIMARY KEY,
            kind VARCHAR NOT NULL,          -- dilemmas, anecdotes or custom
            description VARCHAR
        )""")
    con.execute("""
        CREATE TABLE label_views (
            dataset VARCHAR NOT NULL,
            view VARCHAR NOT NULL,
            options VARCHAR[] NOT NULL,
            position INTEGER NOT NULL,      -- the first view is the dataset's default
            description VARCHAR,
            PRIMARY KEY (dataset, view)
        )""")
    con.execute("""
        CREATE TABLE items (
            dataset VARCHAR NOT NULL,
            split VARCHAR NOT NULL,
            item_id VARCHAR NOT NULL,
            title VARCHAR,
            text VARCHAR,
            actions VARCHAR[] NOT NULL,
            post_type VARCHAR,
            controversial BOOLEAN NOT NULL,
            meta JSON,
            content_hash VARCHAR NOT NULL,
            source VARCHAR NOT NULL,
            source_line INTEGER,
            imported_at TIMESTAMP NOT NULL,
            PRIMARY KEY (dataset, split, item_id)
        )""")
    con.execute("""
        CREATE TABLE votes (
            dataset VARCHAR NOT NULL,
            split VARCHAR NOT NULL,
            item_id VARCHAR NOT NULL,
            view VARCHAR NOT NULL,
            sample VARCHAR NOT NULL,        -- gold, or second: an independent human sample
            counts INTEGER[] NOT NULL,
            PRIMARY KEY (dataset, split, item_id, view, sample)
        )""")
    con.execute("""
        CREATE TABLE imports (
            source VARCHAR NOT NULL,
            sha256 VARCHAR NOT NULL,
            items_new INTEGER NOT NULL,
            items_changed INTEGER NOT NULL,
            imported_at TIMESTAMP NOT NULL
        )""")


@migration(2, "adapters and scores")
def _scores(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("""
        CREATE TABLE adapters (
            name VARCHAR PRIMARY KEY,
            base_model VARCHAR NOT NULL,
            path VARCHAR NOT NULL,
            content_hash VARCHAR NOT NULL,  -- of the adapter files when registered
            meta JSON,
            registered_at TIMESTAMP NOT NULL
        )""")
    con.execute("""
        CREATE TABLE scores (
            score_key VARCHAR PRIMARY KEY,  -- digest of every field below that can change the number
            dataset VARCHAR NOT NULL,
            split VARCHAR NOT NULL,
            item_id VARCHAR NOT NULL,
            item_hash VARCHAR NOT NULL,
            model VARCHAR NOT NULL,
            model_weights VARCHAR NOT NULL,
            adapter VARCHAR,                -- NULL for the base model
            adapter_hash VARCHAR,
            template VARCHAR NOT NULL,
            template_hash VARCHAR NOT NULL,
            item_order VARCHAR NOT NULL,    -- ab or ba for dilemmas, - otherwise
            backend VARCHAR NOT NULL,
            dtype VARCHAR NOT NULL,
            probs DOUBLE[] NOT NULL,        -- over the view's options, in vote order, renormalised
            answer_logprobs DOUBLE[] NOT NULL,  -- raw log-probabilities of the answer tokens, template order
            outside_mass DOUBLE NOT NULL,   -- probability of every token outside the answer set
            seconds DOUBLE NOT NULL,        -- compute time attributed to this score
            created_at TIMESTAMP NOT NULL
        )""")
    con.execute("CREATE INDEX scores_item ON scores (dataset, split, item_id)")


@migration(3, "annotations")
def _annotations(con: duckdb.DuckDBPyConnection) -> None:
    # Append-only: every save is a new row, so the history of a researcher's judgment is kept and two
    # annotators saving at once never overwrite each other.
    con.execute("""
        CREATE TABLE annotations (
            annotation_id VARCHAR PRIMARY KEY,
            dataset VARCHAR NOT NULL,
            split VARCHAR NOT NULL,
            item_id VARCHAR NOT NULL,
            annotator VARCHAR NOT NULL,
            judgment VARCHAR,               -- an option of the view, or NULL for no judgment
            confidence DOUBLE,              -- 0 to 1
            tags VARCHAR[] NOT NULL,
            note VARCHAR NOT NULL,
            created_at TIMESTAMP NOT NULL
        )""")
    con.execute("CREATE INDEX annotations_item ON annotations (dataset, split, item_id)")


@migration(4, "annotator labels")
def _annotator_labels(con: duckdb.DuckDBPyConnection) -> None:
    # Imported per-annotator data: each annotator's label behind an item's votes, kept apart from the
    # annotations made in the app, so that agreement can be measured over both and annotators scored as
    # systems.
    con.execute("""
        CREATE TABLE annotator_labels (
            dataset VARCHAR NOT NULL,
            split VARCHAR NOT NULL,
            item_id VARCHAR NOT NULL,
            view VARCHAR NOT NULL,
            annotator VARCHAR NOT NULL,
            option VARCHAR NOT NULL,
            source_line INTEGER,
            PRIMARY KEY (dataset, split, item_id, view, annotator)
        )""")


@migration(5, "score key version 2")
def _score_key_v2(con: duckdb.DuckDBPyConnection) -> None:
    # The score key covers what the model is asked (a digest of the prompt's text and answer tokens) instead
    # of the item's content (votes included) and the template's file, and the backend's identity (which
    # server, serving which weights) instead of its name. Rows written before keep their keys (NULL here)
    # and are given version-2 keys when a plan first asks for them (`scoring.jobs`).
    con.execute("ALTER TABLE scores ADD COLUMN prompt_hash VARCHAR")
    con.execute("ALTER TABLE scores ADD COLUMN backend_id VARCHAR")


@migration(6, "soft labels")
def _soft_labels(con: duckdb.DuckDBPyConnection) -> None:
    # Human judgments given as shares (survey data): the numbers of a view may be shares, or shares times
    # the item's respondents, which are not whole. Which kind a view holds is its `judgments`.
    con.execute("ALTER TABLE votes ALTER counts TYPE DOUBLE[]")
    con.execute("ALTER TABLE label_views ADD COLUMN judgments VARCHAR NOT NULL DEFAULT 'counts'")


@migration(7, "ordered options")
def _ordered_options(con: duckdb.DuckDBPyConnection) -> None:
    # A view whose options are a scale (a dataset's declaration): distances along it (Wasserstein-1) apply.
    con.execute("ALTER TABLE label_views ADD COLUMN ordered BOOLEAN NOT NULL DEFAULT false")


@migration(8, "censored answers")
def _censored_answers(con: duckdb.DuckDBPyConnection) -> None:
    # An API returns only its top-k tokens: how many of a score's answers were outside them (their
    # log-probabilities then an upper bound), and the API's system_fingerprint, where it gives one.
    # (nullable: DuckDB cannot add a NOT NULL column to a table with an index; NULL reads as 0)
    con.execute("ALTER TABLE scores ADD COLUMN censored INTEGER DEFAULT 0")
    con.execute("ALTER TABLE scores ADD COLUMN system_fingerprint VARCHAR")


@migration(9, "stated distributions")
def _stated(con: duckdb.DuckDBPyConnection) -> None:
    # A model's answer to a template that asks it to state the distribution in words: the text it generated,
    # the shares parsed from it (vote order), or why they could not be (one row per item and order, keyed like
    # a score: what was asked, of which weights, through which backend).
    con.execute("""
        CREATE TABLE stated (
            score_key VARCHAR PRIMARY KEY,
            dataset VARCHAR NOT NULL,
            split VARCHAR NOT NULL,
            item_id VARCHAR NOT NULL,
            item_order VARCHAR NOT NULL,
            model VARCHAR NOT NULL,
            model_weights VARCHAR NOT NULL,
            adapter VARCHAR,
            adapter_hash VARCHAR,
            template VARCHAR NOT NULL,
            backend VARCHAR NOT NULL,
            backend_id VARCHAR NOT NULL,
            prompt_hash VARCHAR NOT NULL,
            text VARCHAR NOT NULL,
            probs DOUBLE[],                 -- the stated shares in vote order; NULL when not parseable
            failure VARCHAR,                -- why the text gives no distribution; NULL when it does
            created_at TIMESTAMP NOT NULL
        )""")


@migration(10, "bootstrap results")
def _bootstrap_results(con: duckdb.DuckDBPyConnection) -> None:
    # A system's bootstrap over a large comparison, by a digest of everything it is computed from (the votes,
    # the probabilities, c, T*, the resamples, the code that computes metrics): computed once, not once per
    # process (`ethdash.evaluation.kept`). Only the most recently used are kept.
    con.execute("""
        CREATE TABLE bootstrap_results (
            content_key VARCHAR PRIMARY KEY,
            metrics VARCHAR[] NOT NULL,     -- the metrics, in the order of their rows in `resampled`
            estimates DOUBLE[] NOT NULL,    -- each metric over the items as they are
            resampled BLOB NOT NULL,        -- float64, metrics x resamples, C order
            used_at TIMESTAMP NOT NULL      -- written or last read: the least recently used go first
        )""")
