"""Turn a template and an item into token ids with a model's tokenizer and chat template.

Both backends receive these ids, so they score exactly the same tokens.
"""

from __future__ import annotations

import os

from ethdash.models import ModelSpec, weights_location
from ethdash.templates import NO_ORDER, Template, TemplateError


class Prompter:
    def __init__(self, spec: ModelSpec):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import AutoTokenizer

        self.spec = spec
        self.tokenizer = AutoTokenizer.from_pretrained(weights_location(spec))
        if spec.chat_template:
            self.tokenizer.chat_template = spec.chat_template

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
        return tuple(self.tokenizer(self.prompt_text(template, item, order), add_special_tokens=False)["input_ids"])
