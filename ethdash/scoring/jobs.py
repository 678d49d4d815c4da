"""Score items: build requests, skip what the store already has, compute the rest, store them.

A score is keyed by everything that can change its numbers: the item's content, the model weights,
the adapter's content hash, the template's content, the option order, the backend and the dtype.
The same request is never computed twice. Work is written in chunks, each its own unit of work, so
an interrupted run keeps what it finished and a rerun continues where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import logsumexp

from ethdash import adapters, models, templates
from ethdash.adapters import Adapter
from ethdash.datasets import catalog
from ethdash.errors import EthdashError
from ethdash.migrations import utc_now
from ethdash.scoring.backends import BudgetSpent, Request, Result, Scorer
from ethdash.scoring.prompting import Prompter, PromptTooLong
from ethdash.store import Store, query_frame

CHUNK = 32  # requests scored and written per unit of work


@dataclass(frozen=True)
class Job:
    """What to score: one model (with an adapter or not) and one template over a dataset split."""

    model: str
    template: str
    dataset: str
    split: str | None = None
    adapter: str | None = None
    limit: int | None = None
    order: str = "both"
    backend: str = "local"
    item_ids: tuple[str, ...] | None = None  # only these items (the item open in the dashboard)


@dataclass(frozen=True)
class System:
    """What produces a distribution: a model, with an adapter or not, asked through a template."""

    model: str
    adapter: str | None
    template: str
    named_by_template: bool = False  # several templates are compared: the label names this one

    @property
    def label(self) -> str:
        name = self.adapter or f"{self.model} (base)"
        return f"{name} · {self.template}" if self.named_by_template else name

    def job(self, dataset: str, split: str | None, backend: str = "local", item_ids=None) -> Job:
        return Job(self.model, self.template, dataset, split, self.adapter, backend=backend, item_ids=item_ids)


@dataclass
class Plan:
    job: Job
    spec: models.ModelSpec
    template: templates.Template
    adapter: Adapter | None
    options: tuple[str, ...]
    items: pd.DataFrame
    keys: list[dict]  # one per (item, order), with its score_key
    todo: list[dict]  # those not stored yet
    too_long: list[tuple[str, str, str]] = field(default_factory=list)  # (item id, order, why): not scored


@dataclass(frozen=True)
class Progress:
    done: int
    total: int
    cached: int
    elapsed_s: float


KEY_VERSION = 2


def plan(
    store: Store, job: Job, dtype: str | None = None, backend_id: str | None = None, table: str = "scores"
) -> Plan:
    """Resolve names (clear errors for unknown ones) and find what is not stored yet.

    `dtype` and `backend_id` are those of the backend that computes (see `service.prepare`); by default the
    model's dtype and the backend's name. `table`: "scores" (answer-token probabilities, token templates)
    or "stated" (distributions stated in words, stated templates)."""
    with store.connect():  # one unit of work for every query below
        return _plan(store, job, dtype, backend_id, table)


def score_key(key: dict) -> str:
    """The digest of a score's key fields: the item and its order, the names asked for, and what the model
    is asked (`prompt_hash`) and what computed the answer (weights, adapter file, dtype, backend identity)."""
    fields = sorted({"key_version": KEY_VERSION, **key}.items())
    return templates.digest_of([part for field in fields for part in field])


@dataclass(frozen=True)
class _Resolved:
    """A job's names resolved: what every one of its score keys shares (`fixed`)."""

    spec: models.ModelSpec
    template: templates.Template
    adapter: Adapter | None
    options: tuple[str, ...]
    fixed: dict


def _resolve(store: Store, job: Job, dtype: str | None, backend_id: str | None, table: str) -> _Resolved:
    spec = models.get(job.model)
    template = templates.get(job.template)
    wanted_kind = templates.TOKENS if table == "scores" else templates.STATED
    if template.kind != wanted_kind:
        raise EthdashError(
            f"template '{template.name}' is a {template.kind} template: "
            + ("`ethdash stated run` asks it" if template.kind == templates.STATED else "`ethdash score` scores it")
        )
    known = {d.name: d for d in catalog.datasets(store)}
    if job.dataset not in known:
        raise EthdashError(f"unknown dataset '{job.dataset}': the store has {', '.join(known) or 'none'}")
    templates.check_dataset(template, known[job.dataset])
    if job.order not in ("both", *templates.ORDERS):
        raise EthdashError(f"--order is ab, ba or both, not '{job.order}'")
    adapter = adapters.get(store, job.adapter) if job.adapter else None
    if adapter is not None and adapter.base_model != spec.name:
        raise EthdashError(f"adapter '{adapter.name}' was trained on '{adapter.base_model}', not '{spec.name}'")
    fixed = {
        "model": spec.name,
        "model_weights": models.weights_id(spec),
        "chat_template": spec.chat_template,  # a registry override: the prompt's text around the messages
        "adapter": adapter.name if adapter else None,
        "adapter_hash": adapter.content_hash if adapter else None,
        "template": template.name,
        "backend_id": backend_id or job.backend,
        "dtype": dtype or spec.dtype,
    }
    options = known[job.dataset].view(template.view).options
    return _Resolved(spec, template, adapter, options, fixed)


def identity(
    store: Store, job: Job, dtype: str | None = None, backend_id: str | None = None, table: str = "scores"
) -> tuple:
    """Everything a job's score keys are computed from, but the store's items (`catalog.items_version`): two
    jobs with equal identities over equal items have equal keys. Unknown names are the plan's errors."""
    with store.connect():
        r = _resolve(store, job, dtype, backend_id, table)
    what = (job.dataset, job.split, job.limit, job.order, job.item_ids, table)
    return (*what, r.template.content_hash, r.options, tuple(sorted(r.fixed.items())))


def _plan(store: Store, job: Job, dtype: str | None, backend_id: str | None, table: str = "scores") -> Plan:
    r = _resolve(store, job, dtype, backend_id, table)
    template = r.template
    items = catalog.items_frame(store, job.dataset, job.split, template.view, limit=job.limit, item_ids=job.item_ids)
    if job.split is not None and items.empty:
        raise EthdashError(f"no items in {job.dataset}/{job.split} (view {template.view})")
    keys = []
    digest = _KeyDigest(r.fixed)
    item_orders = template.orders(job.order)
    columns = [items[c].tolist() for c in ("dataset", "split", "item_id", "content_hash")]
    prompt_digest = _PromptDigests(template, r.options, items)
    for row, (dataset, split, item_id, content_hash) in enumerate(zip(*columns)):
        for order in item_orders:
            prompt_hash = prompt_digest(row, content_hash, order)
            key = {
                "dataset": dataset,
                "split": split,
                "item_id": item_id,
                "item_order": order,
                "prompt_hash": prompt_hash,
                **r.fixed,
            }
            key["score_key"] = digest.of(dataset, split, item_id, order, prompt_hash)
            # Recorded with the score, outside the key: the votes and template file it was computed with.
            key.update(item_hash=content_hash, template_hash=template.content_hash, backend=job.backend)
            keys.append(key)
    stored = _stored_keys(store, [k["score_key"] for k in keys], table)
    todo = [k for k in keys if k["score_key"] not in stored]
    if todo and job.backend == "local" and table == "scores":
        todo = _adopt_legacy_scores(store, r.spec, todo)
    return Plan(job, r.spec, template, r.adapter, r.options, items, keys, todo)


class _KeyDigest:
    """`score_key` for keys that share the fields in `fixed`: their JSON is written once, and each key's
    text filled in around it (equal, byte for byte, to `score_key`'s; tested), since at corpus scale a
    page plans 166,000 keys and `json.dumps` of each whole key was most of that."""

    VARYING = ("dataset", "split", "item_id", "item_order", "prompt_hash")

    def __init__(self, fixed: dict):
        fields = sorted({"key_version": KEY_VERSION, **fixed, **dict.fromkeys(self.VARYING, "")})
        text = "["  # a str.format pattern: the fixed values' JSON (braces doubled), a field for each varying one
        for position, name in enumerate(fields):
            text += _braces_doubled((", " if position else "") + json.dumps(name, ensure_ascii=False) + ", ")
            if name in self.VARYING:
                text += "{" + name + "}"
            else:
                value = KEY_VERSION if name == "key_version" else fixed[name]
                text += _braces_doubled(json.dumps(value, ensure_ascii=False))
        self._pattern = (text + "]").format
        self._quoted: dict[object, str] = {}  # the few datasets, splits and orders, as JSON

    def of(self, dataset: str, split: str, item_id: str, item_order: str, prompt_hash: str) -> str:
        """The digest of the key of these values and the fixed fields."""
        quoted = self._quoted
        for value in (dataset, split, item_order):
            if value not in quoted:
                quoted[value] = _json_string(value)
        text = self._pattern(
            dataset=quoted[dataset],
            split=quoted[split],
            item_id=_json_string(item_id),
            item_order=quoted[item_order],
            prompt_hash=_json_string(prompt_hash),
        )
        return hashlib.sha256(text.encode()).hexdigest()


def _braces_doubled(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


_PLAIN = re.compile(r'[^"\\\x00-\x1f]*')  # what json.dumps(s, ensure_ascii=False) writes unchanged


def _json_string(value: object) -> str:
    """json.dumps(value, ensure_ascii=False), without its cost for a string that needs no escape."""
    if isinstance(value, str) and _PLAIN.fullmatch(value):
        return f'"{value}"'
    return json.dumps(value, ensure_ascii=False)


# Prompt digests by (template file, answer options) then (item content, order): pages plan the same items for
# every system on every rerun.
_DIGESTS: dict[tuple, dict[tuple[str, str], str]] = {}
_DIGESTS_KEPT = 200_000  # about 40 MB


class _PromptDigests:
    """`Template.prompt_digest` of a plan's items by row, remembered. The items are turned into dicts when the
    first digest not remembered is computed (one conversion of the frame: a row at a time cost 0.13 ms each)."""

    def __init__(self, template: templates.Template, options: tuple[str, ...], items: pd.DataFrame):
        self._template, self._options, self._items = template, options, items
        self._records: list[dict] = []
        if sum(map(len, _DIGESTS.values())) >= _DIGESTS_KEPT:
            _DIGESTS.clear()
        self._known = _DIGESTS.setdefault((template.content_hash, options), {})

    def __call__(self, row: int, content_hash: str, order: str) -> str:
        digest = self._known.get((content_hash, order))
        if digest is None:
            if not self._records:
                self._records = catalog.records(self._items)
            digest = self._template.prompt_digest(self._records[row], self._options, order)
            self._known[(content_hash, order)] = digest
        return digest


def legacy_score_key(key: dict, legacy_weights: str) -> str:
    """The key the same score had before key version 2 (local backend only: the server a vLLM score came
    from was not recorded, so those are computed again)."""
    fields = ("dataset", "split", "item_id", "item_hash", "item_order", "model", "adapter", "adapter_hash")
    old = {f: key[f] for f in fields}
    old.update(
        model_weights=legacy_weights,
        template=key["template"],
        template_hash=key["template_hash"],
        backend="local",
        dtype=key["dtype"],
    )
    return hashlib.sha256(json.dumps(old, sort_keys=True).encode()).hexdigest()


def _adopt_legacy_scores(store: Store, spec: models.ModelSpec, todo: list[dict]) -> list[dict]:
    """Give version-2 keys to scores stored under the earlier key whose item and template are unchanged
    since (so the prompt is the same); returns what is still to compute."""
    with store.connect() as con:
        earlier = con.execute(
            "SELECT 1 FROM scores WHERE prompt_hash IS NULL AND dataset = ? AND model = ? AND template = ? LIMIT 1",
            [todo[0]["dataset"], todo[0]["model"], todo[0]["template"]],
        ).fetchall()
        if not earlier:
            return todo
    legacy_weights = models.weights_id(spec, legacy=True)
    old_keys = {legacy_score_key(k, legacy_weights): k for k in todo}
    found = _stored_keys(store, list(old_keys))
    if not found:
        return todo
    moved = pd.DataFrame(
        [
            {
                "old_key": old,
                "score_key": old_keys[old]["score_key"],
                "prompt_hash": old_keys[old]["prompt_hash"],
                "backend_id": old_keys[old]["backend_id"],
                "model_weights": old_keys[old]["model_weights"],
            }
            for old in found
        ]
    )
    with store.transaction() as con:
        con.register("moved", moved)
        con.execute(
            """CREATE TEMP TABLE adopted AS
               SELECT m.score_key AS new_key, m.prompt_hash AS new_prompt_hash, m.backend_id AS new_backend_id,
                      m.model_weights AS new_weights, s.*
               FROM scores s JOIN moved m ON s.score_key = m.old_key"""
        )
        con.execute("DELETE FROM scores WHERE score_key IN (SELECT old_key FROM moved)")
        con.execute(
            """INSERT INTO scores BY NAME
               SELECT * EXCLUDE (score_key, prompt_hash, backend_id, model_weights, new_key, new_prompt_hash,
                                 new_backend_id, new_weights),
                      new_key AS score_key, new_prompt_hash AS prompt_hash, new_backend_id AS backend_id,
                      new_weights AS model_weights
               FROM adopted"""
        )
        con.execute("DROP TABLE adopted")
        con.unregister("moved")
    adopted = {old_keys[old]["score_key"] for old in found}
    return [k for k in todo if k["score_key"] not in adopted]


def _stored_keys(store: Store, keys: list[str], table: str = "scores") -> set[str]:
    if not keys:
        return set()
    if table not in ("scores", "stated"):  # a table name in SQL: only these two
        raise ValueError(table)
    return set(_with_keys(store, f"SELECT score_key FROM {table}", keys, "")["score_key"])


# Up to this many keys are looked up with a list of parameters (the primary key's index; the item open in
# Browse: 2 ms) rather than by joining a registered frame (5 ms at any size, but the only way for many).
FEW_KEYS = 200


def _with_keys(store: Store, select: str, keys: list[str], order: str) -> pd.DataFrame:
    """The rows of `select` (a SELECT ... FROM one table) whose score_key is one of `keys`, then `order`."""
    with store.connect() as con:
        if len(keys) <= FEW_KEYS:
            wanted = f"score_key IN ({', '.join('?' * len(keys))})" if keys else "false"
            return query_frame(con, f"{select} WHERE {wanted} {order}", keys)
        con.register("wanted", pd.DataFrame({"score_key": keys}))
        try:
            return query_frame(con, f"{select} SEMI JOIN wanted USING (score_key) {order}")
        finally:
            con.unregister("wanted")


def run(
    store: Store,
    p: Plan,
    scorer: Scorer,
    prompter: Prompter | None,
    progress: Callable[[Progress], None] | None = None,
    chunk: int = CHUNK,
) -> int:
    """Compute and store every score of the plan that is not stored yet. Returns how many were computed.

    `prompter` None: the backend's server tokenizes; requests carry the chat messages and answer texts.
    A scorer that streams (`score_stream`, the local backend) gets the whole job at once, and what it has
    computed is written every `WRITE_EVERY_S` seconds; the others get it in chunks of `chunk` requests,
    each written when it is done. Either way an interruption loses at most the unit under way."""
    started = time.perf_counter()
    rows = item_rows(p)
    cached = len(p.keys) - len(p.todo)

    def report(done: int) -> None:
        if progress:
            progress(Progress(done, len(p.todo), cached, time.perf_counter() - started))

    if hasattr(scorer, "score_stream"):
        return _run_streaming(store, p, scorer, prompter, rows, report)
    done = 0
    for start in range(0, len(p.todo), chunk):
        part, requests = requests_for(p, p.todo[start : start + chunk], prompter, rows)
        if requests:
            try:
                results = scorer.score(requests)
            except BudgetSpent as exc:  # what was computed before the budget ran out is kept
                _write(store, p, part[: len(exc.results)], exc.results)
                raise
            _write(store, p, part, results)
        done += len(part)
        report(done)
    return done


WRITE_EVERY_S = 2.0  # a streaming job's results are written at least this often


def _run_streaming(store: Store, p: Plan, scorer, prompter, rows: dict, report: Callable[[int], None]) -> int:
    keys, requests = requests_for(p, p.todo, prompter, rows)
    pending_keys: list[dict] = []
    pending: list[Result] = []
    written, last_write = 0, time.perf_counter()
    for indices, results in scorer.score_stream(requests):
        pending_keys += [keys[i] for i in indices]
        pending += results
        if time.perf_counter() - last_write >= WRITE_EVERY_S:
            _write(store, p, pending_keys, pending)
            written += len(pending)
            pending_keys, pending, last_write = [], [], time.perf_counter()
        report(written + len(pending) + len(p.too_long))
    if pending:
        _write(store, p, pending_keys, pending)
        written += len(pending)
    report(written + len(p.too_long))
    return written


def item_rows(p: Plan) -> dict[str, dict]:
    """The plan's items by id, as the template reads them."""
    return catalog.records_by_id(p.items)


def requests_for(
    p: Plan, keys: list[dict], prompter: Prompter | None, rows: dict[str, dict] | None = None
) -> tuple[list[dict], list[Request]]:
    """The requests for these keys of the plan, and the keys they are for (a prompt too long for the model is
    left out, and noted in `p.too_long`). `prompter` None: for a server that tokenizes. `rows`: `item_rows(p)`
    where the caller has it."""
    if prompter is None:
        check_chat(p)
        answer_texts = tuple(a.token for a in p.template.answers)
    else:
        answer_ids = prompter.answer_ids(p.template)
    rows = item_rows(p) if rows is None else rows
    part, requests = [], []
    for k in keys:
        item = rows[k["item_id"]]
        if prompter is None:
            part.append(k)
            requests.append(Request((), (), None, tuple(p.template.messages(item, k["item_order"])), answer_texts))
            continue
        try:
            ids = prompter.prompt_ids(p.template, item, k["item_order"])
        except PromptTooLong as exc:  # refused, never sent: the others are scored
            p.too_long.append((k["item_id"], k["item_order"], str(exc)))
            continue
        part.append(k)
        requests.append(Request(ids, answer_ids, p.adapter))
    return part, requests


def check_chat(p: Plan) -> None:
    """What a chat API cannot be asked: to continue an assistant turn, or to apply an adapter."""
    if p.template.assistant_prefix:
        raise EthdashError(
            f"template '{p.template.name}' starts the assistant's answer with {p.template.assistant_prefix!r}: a "
            "chat API cannot continue an assistant turn; use a template without assistant_prefix, or --backend "
            "vllm / local"
        )
    if p.adapter is not None:
        raise EthdashError(
            f"the openai backend asks the served model itself: score adapter '{p.adapter.name}' with --backend "
            "vllm (which loads it on the server) or local"
        )


def distribution(answer_logprobs: np.ndarray) -> tuple[np.ndarray, float]:
    """Answer probabilities renormalised over the answer set, and the mass outside it."""
    lp = np.asarray(answer_logprobs, dtype=float)
    total = logsumexp(lp)
    return np.exp(lp - total), float(max(0.0, 1.0 - np.exp(total)))


SCORE_COLUMNS = (
    *("score_key", "dataset", "split", "item_id", "item_hash", "model", "model_weights", "adapter", "adapter_hash"),
    *("template", "template_hash", "item_order", "backend", "dtype", "probs", "answer_logprobs", "outside_mass"),
    *("seconds", "created_at", "prompt_hash", "backend_id", "censored", "system_fingerprint"),
)


def _write(store: Store, p: Plan, keys: list[dict], results: list[Result]) -> None:
    now = utc_now()
    records = []
    for key, result in zip(keys, results):
        answer_probs, outside = distribution(result.answer_logprobs)
        probs = p.template.to_votes(answer_probs, p.options, key["item_order"])
        records.append(
            {
                **key,
                "probs": probs.tolist(),
                "answer_logprobs": np.asarray(result.answer_logprobs).tolist(),
                "outside_mass": outside,
                "censored": int(sum(result.censored)),
                "system_fingerprint": result.fingerprint,
                "seconds": result.seconds,
                "created_at": now,
            }
        )
    frame = pd.DataFrame(records)
    columns = ", ".join(SCORE_COLUMNS)
    with store.transaction() as con:
        con.register("new_scores", frame)
        con.execute(f"INSERT OR IGNORE INTO scores ({columns}) SELECT {columns} FROM new_scores")
        con.unregister("new_scores")


def stored(store: Store, job: Job, dtype: str | None = None) -> tuple[Plan, pd.DataFrame]:
    """The plan of a job and the scores already stored for it, in one unit of work."""
    with store.connect():
        p = plan(store, job, dtype)
        return p, scores_frame(store, p)


def scores_version(store: Store) -> tuple:
    """A fingerprint of the stored scores: rows are only ever added (`_adopt_legacy_scores` re-keys rows,
    numbers unchanged), so their count and newest time change with every write."""
    return store.state("scores")


def scores_frame(store: Store, p: Plan, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """The stored scores of a plan, one row per (item, order); `columns` of them (default: all; the score
    lists of a whole split's 23 columns take 3x longer to read than the 6 that comparisons use)."""
    keys = [k["score_key"] for k in p.keys]
    if columns is not None and not set(columns) <= set(SCORE_COLUMNS):  # names that reach SQL: only these
        raise ValueError(f"not score columns: {sorted(set(columns) - set(SCORE_COLUMNS))}")
    wanted = "*" if columns is None else ", ".join(columns)
    return _with_keys(store, f"SELECT {wanted} FROM scores", keys, "ORDER BY split, item_id, item_order")


EXPORT_FORMATS = {".csv": "csv", ".parquet": "parquet"}


@dataclass(frozen=True)
class ScoreFilter:
    """Which stored scores to export; None: any. adapter "" means the base model only."""

    dataset: str | None = None
    split: str | None = None
    model: str | None = None
    adapter: str | None = None
    template: str | None = None


def export(store: Store, path, which: ScoreFilter = ScoreFilter()) -> tuple[int, int]:
    """Write the stored scores that `which` selects to CSV or Parquet (by the file's extension), each with the
    human votes and shares of its item in its template's view joined to it. Scores of a prompt that
    has changed since they were computed are left out. Returns (scores written, stale scores left out)."""
    fmt = EXPORT_FORMATS.get(Path(str(path)).suffix.lower())
    if fmt is None:
        raise EthdashError(f"cannot write {path}: the formats are {', '.join(EXPORT_FORMATS)} (from the extension)")
    where, params = [], []
    for column in ("dataset", "split", "model", "template"):
        if getattr(which, column) is not None:
            where.append(f"s.{column} = ?")
            params.append(getattr(which, column))
    if which.adapter is not None:
        where.append("s.adapter IS NULL" if which.adapter == "" else "s.adapter = ?")
        params += [] if which.adapter == "" else [which.adapter]
    with store.connect() as con:
        frame = con.execute(
            f"""SELECT s.*, i.content_hash FROM scores s
                LEFT JOIN items i ON i.dataset = s.dataset AND i.split = s.split AND i.item_id = s.item_id
                {"WHERE " + " AND ".join(where) if where else ""}
                ORDER BY s.dataset, s.split, s.item_id, s.model, s.adapter, s.template, s.item_order, s.backend""",
            params,
        ).df()
        votes = con.execute("SELECT dataset, split, item_id, view, sample, counts FROM votes").df()
    current = _asked_as_now(store, frame)
    stale = int((~current).sum())
    frame = frame[current].drop(columns="content_hash").reset_index(drop=True)
    frame = _with_votes(frame, votes)
    if fmt == "csv":
        for column in ("probs", "answer_logprobs", "votes", "shares", "second_votes"):
            frame[column] = [None if v is None else json.dumps([float(x) for x in v]) for v in frame[column]]
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return len(frame), stale


def _asked_as_now(store: Store, frame: pd.DataFrame) -> pd.Series:
    """Whether each stored score answers the prompt its item and template give today. Scores stored before
    key version 2 (no prompt digest), or whose template file is gone, fall back to: the item is unchanged."""
    current = (frame["item_hash"] == frame["content_hash"]).to_numpy(dtype=bool, na_value=False).copy()
    known = {d.name: d for d in catalog.datasets(store)}
    for (dataset, split, name), group in frame[frame["prompt_hash"].notna()].groupby(["dataset", "split", "template"]):
        try:
            template = templates.get(name)
            options = known[dataset].view(template.view).options
        except (EthdashError, KeyError):
            continue
        items = catalog.items_frame(store, dataset, split, template.view)
        records = catalog.records_by_id(items)
        asked: dict[tuple[str, str], str | None] = {}  # each (item, order) once: every system asks the same
        for position, item_id, order, digest in zip(
            frame.index.get_indexer(group.index), group["item_id"], group["item_order"], group["prompt_hash"]
        ):
            if (item_id, order) not in asked:
                item = records.get(item_id)
                asked[item_id, order] = None if item is None else template.prompt_digest(item, options, order)
            current[position] = asked[item_id, order] == digest
    return pd.Series(current, index=frame.index)


def _with_votes(frame: pd.DataFrame, votes: pd.DataFrame) -> pd.DataFrame:
    """The human votes (gold sample; the second sample where there is one) of each score's item in the view
    its template reads, and their shares."""
    views = {}
    for name in frame["template"].unique():
        try:
            views[name] = templates.get(name).view
        except EthdashError:  # a template file no longer at hand: its view is unknown
            views[name] = None
    frame = frame.assign(view=frame["template"].map(views))
    keys = ["dataset", "split", "item_id", "view"]
    for sample, column in (("gold", "votes"), ("second", "second_votes")):
        chosen = votes[votes["sample"] == sample].drop(columns="sample").rename(columns={"counts": column})
        frame = frame.merge(chosen, on=keys, how="left")
    frame["shares"] = [
        None if not isinstance(v, (list, np.ndarray)) else list(np.asarray(v, float) / max(np.sum(v), 1))
        for v in frame["votes"]
    ]
    frame["votes"] = [v if isinstance(v, (list, np.ndarray)) else None for v in frame["votes"]]
    frame["second_votes"] = [v if isinstance(v, (list, np.ndarray)) else None for v in frame["second_votes"]]
    return frame
