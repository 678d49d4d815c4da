"""Prompt templates: data files that say how to ask a model about an item, and how its answer
probabilities map onto the human votes. Rendering is pure; loading reads TOML files.

Shipped templates live in `ethdash/templates/`; a researcher's own in `$ETHDASH_HOME/templates/`
(or any path given to --template). Every template is identified by its name and the hash of its
content: an edited template is a new template for the score cache.
"""

from __future__ import annotations

import hashlib
import json
import string
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ethdash import names, settings
from ethdash.datasets.items import DILEMMAS, Dataset
from ethdash.errors import EthdashError

SHIPPED = Path(__file__).resolve().parent / "templates"
POSITIONS = ("first", "second")  # dilemma answers name a position in the prompt, not an action
ORDERS = ("ab", "ba")  # ab: action 1 listed first; ba: action 2 listed first
NO_ORDER = "-"  # anecdotes and custom data have one order only
PLACEHOLDERS = {DILEMMAS: {"first", "second"}, None: {"title", "text", "action"}}


TOKENS, STATED = "tokens", "stated"  # template kinds: answer-token probabilities, or a distribution in words
KINDS = (TOKENS, STATED)


class TemplateError(EthdashError):
    pass


@dataclass(frozen=True)
class Answer:
    token: str  # the exact text of the answer token, e.g. "A" or " A"
    option: str  # a view option, or for dilemmas "first"/"second"


@dataclass(frozen=True)
class Template:
    name: str
    version: int
    dataset: str
    view: str
    user: str
    answers: tuple[Answer, ...]
    system: str = ""
    assistant_prefix: str = ""
    polarity: str = "worse"
    description: str = ""
    source: str = ""
    content_hash: str = ""
    kind: str = TOKENS  # TOKENS: the answers' token probabilities; STATED: the model states the distribution
    max_new_tokens: int = 24  # STATED: how much of an answer is generated

    @property
    def is_dilemma(self) -> bool:
        return self.dataset == DILEMMAS

    def orders(self, requested: str = "both") -> tuple[str, ...]:
        if not self.is_dilemma:
            return (NO_ORDER,)
        return ORDERS if requested == "both" else (requested,)

    def messages(self, item: dict[str, Any], order: str = NO_ORDER) -> list[dict[str, str]]:
        """The chat messages for one item (a row of `catalog.items_frame`)."""
        if self.is_dilemma:
            actions = list(item["actions"])
            first, second = (actions[0], actions[1]) if order == "ab" else (actions[1], actions[0])
            values = {"first": first, "second": second}
        else:
            actions = list(item["actions"]) if item.get("actions") is not None else []
            values = {
                "title": item.get("title") or "",
                "text": item.get("text") or "",
                "action": actions[0] if actions else "",
            }
        out = [{"role": "system", "content": self.system}] if self.system else []
        return out + [{"role": "user", "content": self.user.format_map(values)}]

    def prompt_digest(self, item: dict[str, Any], options: tuple[str, ...], order: str = NO_ORDER) -> str:
        """What the model is asked, as a digest for the score key: the messages' text, the assistant prefix,
        and each answer token with the option it is counted for. The item's votes, and fields the template
        does not use, are not part of it."""
        parts = [part for m in self.messages(item, order) for part in (m["role"], m["content"])]
        parts += ["assistant_prefix", self.assistant_prefix]
        parts += [
            part
            for k, a in enumerate(self.answers)
            for part in (a.token, options[self.option_index(k, options, order)])
        ]
        if self.kind != TOKENS:  # (token templates' digests stay as they were: their scores keep their keys)
            parts += ["kind", self.kind, "max_new_tokens", str(self.max_new_tokens)]
        return digest_of(parts)

    def option_index(self, k: int, options: tuple[str, ...], order: str = NO_ORDER) -> int:
        """The index, in vote order, of the option that answer k gives its probability to."""
        answer = self.answers[k]
        if not self.is_dilemma:
            return options.index(answer.option)
        position = POSITIONS.index(answer.option)
        action = position if order == "ab" else 1 - position  # which action this answer names
        # Naming the better action counts as a vote for the other one as worse.
        return 1 - action if self.polarity == "better" else action

    def to_votes(self, answer_probs: np.ndarray, options: tuple[str, ...], order: str = NO_ORDER) -> np.ndarray:
        """Map probabilities over the answers (template order) onto the view's options (vote order)."""
        p = np.asarray(answer_probs, dtype=float)
        out = np.zeros(p.shape[:-1] + (len(options),))
        for k in range(len(self.answers)):
            out[..., self.option_index(k, options, order)] += p[..., k]
        return out

    def answer_counts(self, counts: np.ndarray, options: tuple[str, ...], order: str = NO_ORDER) -> np.ndarray:
        """The human votes re-expressed per answer (template order): the training target of a prompt."""
        n = np.asarray(counts, dtype=float)
        return np.stack([n[..., self.option_index(k, options, order)] for k in range(len(self.answers))], axis=-1)


def digest_of(parts: list) -> str:
    """A digest of a sequence of strings (or None), as a JSON list: no two sequences give one text."""
    return hashlib.sha256(json.dumps(parts, ensure_ascii=False).encode()).hexdigest()


def parse(raw: dict[str, Any], source: str) -> Template:
    def fail(message: str) -> TemplateError:
        return TemplateError(f"{source}: {message}")

    for key in ("name", "version", "dataset", "view", "user", "answers"):
        if key not in raw:
            raise fail(f"missing '{key}'")
    for key in ("name", "dataset", "view", "user", "system", "assistant_prefix", "polarity", "description", "kind"):
        if key in raw and not isinstance(raw[key], str):
            raise fail(f"'{key}' must be a string")
    kind = raw.get("kind", TOKENS)
    if kind not in KINDS:
        raise fail(f"'kind' is {' or '.join(repr(k) for k in KINDS)}, not {kind!r}")
    max_new_tokens = raw.get("max_new_tokens", 24)
    if not isinstance(max_new_tokens, int) or isinstance(max_new_tokens, bool) or not 1 <= max_new_tokens <= 256:
        raise fail("'max_new_tokens' is an integer from 1 to 256")
    if not isinstance(raw["version"], int) or isinstance(raw["version"], bool):
        raise fail("'version' must be an integer")
    if not names.valid(raw["name"]):
        raise fail(names.refusal("the template name", raw["name"]))
    known = {
        "name",
        "version",
        "dataset",
        "view",
        "user",
        "answers",
        "system",
        "assistant_prefix",
        "polarity",
        "description",
        "kind",
        "max_new_tokens",
    }
    unknown = set(raw) - known
    if unknown:
        raise fail(f"unknown keys {sorted(unknown)} (known: {sorted(known)})")
    answers = raw["answers"]
    if not isinstance(answers, list) or len(answers) < 2:
        raise fail("'answers' must list at least two [[answers]] tables, each with token and option")
    parsed = []
    for k, a in enumerate(answers):
        if not isinstance(a, dict) or not isinstance(a.get("token"), str) or not isinstance(a.get("option"), str):
            raise fail(f"answers[{k}] needs a string 'token' and a string 'option'")
        parsed.append(Answer(a["token"], a["option"]))
    if len({a.token for a in parsed}) != len(parsed):
        raise fail("answer tokens must be distinct")
    polarity = raw.get("polarity", "worse")
    if polarity not in ("worse", "better"):
        raise fail("'polarity' is 'worse' or 'better'")
    is_dilemma = raw["dataset"] == DILEMMAS
    if is_dilemma and sorted(a.option for a in parsed) != sorted(POSITIONS):
        raise fail("a dilemma template has two answers, with option = 'first' and option = 'second'")
    allowed = PLACEHOLDERS[DILEMMAS if is_dilemma else None]
    used = placeholders_in(raw["user"], fail)
    if used - allowed:
        raise fail(f"unknown placeholders {sorted(used - allowed)} in 'user' (allowed: {sorted(allowed)})")
    digest = hashlib.sha256(json.dumps(raw, sort_keys=True).encode()).hexdigest()
    return Template(
        name=raw["name"],
        version=int(raw["version"]),
        dataset=raw["dataset"],
        view=raw["view"],
        user=raw["user"],
        answers=tuple(parsed),
        system=raw.get("system", ""),
        assistant_prefix=raw.get("assistant_prefix", ""),
        polarity=polarity,
        description=raw.get("description", ""),
        source=source,
        content_hash=digest,
        kind=kind,
        max_new_tokens=max_new_tokens,
    )


def placeholders_in(user: str, fail: Callable[[str], TemplateError]) -> set[str]:
    """The placeholders of a prompt, each a plain {name}: a format spec ({first:>9}), a conversion ({first!r})
    or an attribute or index ({first.x}, {first[0]}) would let a template compute with the data (or pad a
    prompt to gigabytes), so each is refused. Literal braces are written {{ and }}."""
    try:
        parts = list(string.Formatter().parse(user))
    except ValueError as exc:  # an unmatched brace
        raise fail(f"'user' is not a valid template ({exc}): write a literal brace as {{{{ or }}}}") from None
    used = set()
    for _, field, spec, conversion in parts:
        if field is None:
            continue
        if spec or conversion or not field.isidentifier():
            shown = "{" + field + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
            raise fail(f"placeholder {shown} in 'user': only plain placeholders such as {{first}} are allowed")
        used.add(field)
    return used


# Parsed template files by path and content: the pages resolve every system's template on every rerun,
# and parsing them all cost about 20 ms each time (reading them costs little). An edited file is parsed again.
_PARSED: dict[tuple[str, bytes], Template] = {}


def load_file(path: Path) -> Template:
    try:
        content = path.read_bytes()
        memo = (str(path), content)
        found = _PARSED.get(memo)  # (one lookup: another session's thread may clear the memo meanwhile)
        if found is not None:
            return found
        raw = tomllib.loads(content.decode("utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise TemplateError(f"{path}: cannot read the template ({exc})") from exc
    if len(_PARSED) >= 1024:  # edited files leave their earlier versions behind
        _PARSED.clear()
    template = _PARSED[memo] = parse(raw, str(path))
    return template


def user_dir() -> Path:
    return settings.templates_dir()


def available() -> dict[str, Template]:
    """Shipped templates, then the user's (a user template with a shipped name replaces it)."""
    found: dict[str, Template] = {}
    for folder in (SHIPPED, user_dir()):
        if folder.is_dir():
            for path in sorted(folder.glob("*.toml")):
                template = load_file(path)
                found[template.name] = template
    return found


def for_view(dataset: str, view: str | None = None, kind: str = "tokens") -> list[str]:
    """The names of the templates that ask about a dataset (and view): the one named DATASET-VIEW first (the
    study's question, and what `ethdash templates new` names a dataset's first template), then the rest (the
    paraphrases) by name. `kind`: token templates (what the pages score) by default, or stated ones."""
    names = [t.name for t in available().values() if t.dataset == dataset and view in (None, t.view) and t.kind == kind]
    return sorted(names, key=lambda n: (n != f"{dataset}-{view}" if view else False, n))


def get(name_or_path: str) -> Template:
    path = Path(name_or_path)
    if path.suffix == ".toml" and path.is_file():
        return load_file(path)
    templates = available()
    if name_or_path not in templates:
        raise TemplateError(
            f"unknown template '{name_or_path}': choose from {', '.join(sorted(templates))}, "
            f"or give the path of a .toml file"
        )
    return templates[name_or_path]


def check_dataset(template: Template, dataset: Dataset) -> None:
    """The template must target this dataset and one of its views, and name only its options."""
    if template.dataset != dataset.name:
        raise TemplateError(f"template '{template.name}' is for dataset '{template.dataset}', not '{dataset.name}'")
    try:
        view = dataset.view(template.view)
    except KeyError:
        raise TemplateError(
            f"template '{template.name}': dataset '{dataset.name}' has no view '{template.view}' "
            f"(views: {', '.join(v.name for v in dataset.views)})"
        ) from None
    if not template.is_dilemma:
        unknown = [a.option for a in template.answers if a.option not in view.options]
        if unknown:
            raise TemplateError(
                f"template '{template.name}': answers name {unknown}, which are not options of "
                f"view '{view.name}' ({', '.join(view.options)})"
            )
