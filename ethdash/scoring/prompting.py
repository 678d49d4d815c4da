"""Turn a template and an item into token ids with a model's tokenizer and chat template.

Both backends receive these ids, so they score exactly the same tokens.
"""

from __future__ import annotations

import os

from ethdash import settings
from ethdash.models import ModelSpec, weights_location
from ethdash.templates import NO_ORDER, Template, TemplateError

# A token is rarely longer than a few characters: a prompt of more than this many characters per allowed
# token is refused before the tokenizer sees it (tokenizing 50 MB takes about a minute).
CHARS_PER_TOKEN_BOUND = 16


class PromptTooLong(ValueError):
    def __init__(self, what: str, length: int, limit: int, unit: str):
        super().__init__(f"the prompt is {length:,} {unit}, more than the {limit:,} allowed ({what})")
        self.length, self.unit = length, unit


class Prompter:
    def __init__(self, spec: ModelSpec):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import AutoTokenizer

        self.spec = spec
        self.tokenizer = AutoTokenizer.from_pretrained(weights_location(spec))
        if spec.chat_template:
            self.tokenizer.chat_template = spec.chat_template
        self.max_tokens = settings.max_prompt_tokens() or _context_length(self.tokenizer)

    def answer_ids(self, template: Template) -> tuple[int, ...]:
        """One token id per answer; a clear error for an answer that is not a single token."""
        ids = []
        for answer in template.answers:
            encoded = self.tokenizer.encode(answer.token, add_special_tokens=False)
            if len(encoded) != 1:
                pieces = self.tokenizer.convert_ids_to_tokens(encoded)
                raise TemplateError(
                    f"template '{template.name}' ({template.source}): the answer token {answer.token!r} is "
                    f"{len(encoded)} tokens for model '{self.spec.name}' ({pieces}); answers must be single tokens"
                )
            ids.append(encoded[0])
        return tuple(ids)

    def prompt_text(self, template: Template, item: dict, order: str = NO_ORDER) -> str:
        text = self.tokenizer.apply_chat_template(
            template.messages(item, order), add_generation_prompt=True, tokenize=False
        )
        return text + template.assistant_prefix

    def prompt_ids(self, template: Template, item: dict, order: str = NO_ORDER) -> tuple[int, ...]:
        """The prompt's token ids; PromptTooLong when it exceeds the model's context (or
        ETHDASH_MAX_PROMPT_TOKENS), found from its characters first where it is far too long."""
        chars = sum(len(m["content"]) for m in template.messages(item, order))
        if chars > self.max_tokens * CHARS_PER_TOKEN_BOUND:
            why = f"{self.max_tokens:,} tokens × {CHARS_PER_TOKEN_BOUND} characters for {self.spec.name}"
            raise PromptTooLong(why, chars, self.max_tokens * CHARS_PER_TOKEN_BOUND, "characters")
        ids = tuple(self.tokenizer(self.prompt_text(template, item, order), add_special_tokens=False)["input_ids"])
        if len(ids) > self.max_tokens:
            raise PromptTooLong(f"the context of {self.spec.name}", len(ids), self.max_tokens, "tokens")
        return ids


def _context_length(tokenizer) -> int:
    """The tokenizer's declared maximum, unless it is the library's 'unlimited' placeholder."""
    declared = int(getattr(tokenizer, "model_max_length", 0) or 0)
    return declared if 0 < declared < 10_000_000 else 8192
