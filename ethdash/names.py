"""The one rule for the names a researcher gives: datasets, splits, adapters, runs, models. Names become
folder names and URL parameters, so the rule keeps them inside their folder and out of any shell, while
allowing what a researcher would reasonably write ("blue.house", "Study_2", "run-3").
"""

from __future__ import annotations

import re

RULE = "letters, digits, '_', '-' and '.', starting with a letter or a digit, no '..', at most 64 characters"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def valid(name: object) -> bool:
    return isinstance(name, str) and bool(_NAME.match(name)) and ".." not in name


def refusal(what: str, name: object) -> str:
    """The message for a name that breaks the rule: which name, and the rule."""
    return f"{what} '{name}' is not allowed: use {RULE}"
