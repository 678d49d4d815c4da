"""The embedded default model: converted once into ETHDASH_CACHE, loaded offline."""

from __future__ import annotations

import json
import os
import subprocess
import sys

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


def test_the_weights_id_is_the_same_wherever_the_model_was_converted(tmp_path):
    """A second conversion of the GGUF file, found through another path (as on another machine): the
    conversion records differ (they name the source), the weights id does not (issue 15)."""
    from ethdash import models

    source = embedded.gguf_path().parent
    packages = tmp_path / "elsewhere" / "site"
    packages.mkdir(parents=True)
    (packages / embedded.PACKAGE).symlink_to(source, target_is_directory=True)
    env = {**os.environ, "PYTHONPATH": str(packages), "ETHDASH_CACHE": str(tmp_path / "elsewhere" / "cache")}
    code = (
        "import json; from ethdash import embedded, models; folder = embedded.prepare(); spec = models.get("
        "models.DEFAULT_MODEL); print(json.dumps([json.loads((folder / embedded.MARKER).read_text())['source'], "
        "models.weights_id(spec), models.weights_id(spec, legacy=True)]))"
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    source_two, id_two, legacy_two = json.loads(done.stdout.strip().splitlines()[-1])

    spec = models.get(models.DEFAULT_MODEL)
    source_one = json.loads((embedded.prepare() / embedded.MARKER).read_text())["source"]
    assert source_one != source_two and str(tmp_path) in source_two
    assert models.weights_id(spec, legacy=True) != legacy_two  # what the earlier id did: one model, two ids
    assert models.weights_id(spec) == id_two and id_two.startswith("sha256:")
