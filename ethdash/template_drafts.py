"""A starting template for a dataset, and a template rendered for one item: what `ethdash templates new`
and `ethdash templates show` print. Pure: the dataset's description and an item in, TOML or text out.
"""

from __future__ import annotations

import json

import pandas as pd

from ethdash.datasets.items import DILEMMAS
from ethdash.templates import NO_ORDER, PLACEHOLDERS, Template

# What each placeholder stands for, by kind of dataset (the README lists the same).
MEANINGS = {
    "first": "the action listed first (in the scored order)",
    "second": "the action listed second",
    "title": "the item's title ('' where it has none)",
    "text": "the item's text ('' where it has none)",
    "action": "the item's action (anecdotes: what the author did; '' where there is none)",
}
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def placeholders(kind: str) -> list[str]:
    """The placeholders a template for this kind of dataset may use, in the order a prompt would."""
    return sorted(PLACEHOLDERS[DILEMMAS if kind == DILEMMAS else None], key=list(MEANINGS).index)


def draft(name: str, dataset: str, view: str, options: tuple[str, ...], fields: set[str]) -> str:
    """A template asking for one letter per option, with the placeholders of the fields this dataset has
    (`fields`: of title, text and action, those that at least one item fills)."""
    if len(options) > len(LETTERS):
        raise ValueError(f"at most {len(LETTERS)} options can be answered with one letter")
    used = [p for p in ("title", "action", "text") if p in fields] or ["text"]
    letters = LETTERS[: len(options)]
    choices = f"{', '.join(letters[:-1])} or {letters[-1]}"
    listing = "\n".join(f"{letter}. {option}" for letter, option in zip(letters, options))
    scenario = "\n".join("{" + p + "}" for p in used)
    comment = "\n".join(f"#   {{{p}}}: {MEANINGS[p]}" for p in placeholders("custom"))
    lines = [
        f"# A prompt template for the dataset '{dataset}', written by `ethdash templates new`: edit the wording.",
        "# Placeholders a template for this dataset may use in `user`:",
        comment,
        "# The answers: one token each (checked when scoring), mapped onto the view's options.",
        f"name = {json.dumps(name)}",
        "version = 1",
        f"dataset = {json.dumps(dataset)}",
        f"view = {json.dumps(view)}",
        f"description = {json.dumps(f'One letter per option of {dataset}: ' + ', '.join(options))}",
        'system = "You judge everyday ethical questions."',
        "# The instruction before the scenario: the prompt prefix shared by all items is then long, and the",
        "# local backend computes it once.",
        'user = """' + f"Read the scenario, then answer with a single letter, {choices}.",
        listing,
        "",
        scenario + '"""',
        'assistant_prefix = ""',
    ]
    for letter, option in zip(letters, options):
        lines += ["", "[[answers]]", f"token = {json.dumps(letter)}", f"option = {json.dumps(option)}"]
    return "\n".join(lines) + "\n"


def filled_fields(items: pd.DataFrame) -> set[str]:
    """Of title, text and action, the fields that at least one of these items fills."""
    fields = {f for f in ("title", "text") if items[f].fillna("").astype(str).str.strip().ne("").any()}
    if any(a is not None and len(a) and any(x for x in a) for a in items["actions"]):
        fields.add("action")
    return fields


def rendered(template: Template, item: dict, options: tuple[str, ...], order: str = NO_ORDER) -> str:
    """The prompt a model sees for this item, message by message, and where each answer's probability goes."""
    out = []
    for message in template.messages(item, order):
        out += [f"[{message['role']}]", message["content"], ""]
    if template.assistant_prefix:
        out += ["[assistant, before the answer]", template.assistant_prefix, ""]
    out.append("[answers]")
    for k, answer in enumerate(template.answers):
        out.append(f"{answer.token!r} → {options[template.option_index(k, options, order)]}")
    return "\n".join(out)
