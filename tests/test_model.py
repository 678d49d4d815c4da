"""The embedded default model: converted once into ETHDASH_CACHE, loaded offline."""

from __future__ import annotations

import os

import pytest

from ethdash import embedded

pytestmark = pytest.mark.model


def test_the_embedded_model_loads_offline_and_knows_paris(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = embedded.prepare()
    assert embedded.is_prepared(folder) and (folder / "model.safetensors").is_file()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    ids = tokenizer("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        probs = torch.softmax(model(**ids).logits[0, -1], dim=-1)
    [paris] = tokenizer.encode(" Paris")
    assert probs[paris].item() > 0.5
    assert tokenizer.convert_ids_to_tokens([49, 50]) == ["A", "B"]


def test_preparing_again_reuses_the_converted_folder():
    folder = embedded.prepare()
    stamp = os.stat(folder / "model.safetensors").st_mtime_ns
    assert embedded.prepare() == folder
    assert os.stat(folder / "model.safetensors").st_mtime_ns == stamp
