"""Write one in-memory transformers model in the checkpoint layouts users actually have."""

from __future__ import annotations

import json
from pathlib import Path

from tests.fixtures import copy_tokenizer

VARIANTS = ("safetensors", "bin", "sharded_safetensors", "sharded_bin", "legacy_bin", "unprefixed_safetensors")


def _state_dict(model) -> dict:
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}


def _untied(model, state: dict) -> dict:
    """Drop tied duplicates, as transformers does when it writes safetensors."""
    tied = {"cls.predictions.decoder.weight", "cls.predictions.decoder.bias"}
    return {k: v for k, v in state.items() if k not in tied}


def _write_shards(out: Path, state: dict, extension: str, save) -> None:
    names = sorted(state)
    shards = {f"model-0000{i + 1}-of-00002.{extension}": names[i::2] for i in range(2)}
    for file_name, keys in shards.items():
        save({k: state[k] for k in keys}, out / file_name)
    index_name = "model.safetensors.index.json" if extension == "safetensors" else "pytorch_model.bin.index.json"
    weight_map = {k: file_name for file_name, keys in shards.items() for k in keys}
    (out / index_name).write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))


def write_variant(model, out: Path, variant: str) -> Path:
    import safetensors.torch
    import torch

    out = Path(out)
    out.mkdir(parents=True)
    model.config.save_pretrained(out)
    copy_tokenizer(out)
    state = _state_dict(model)
    prefix = model.base_model_prefix + "."

    def save_safetensors(tensors, path):
        safetensors.torch.save_file(tensors, str(path), metadata={"format": "pt"})

    def save_bin(tensors, path):
        torch.save(tensors, str(path))

    if variant == "safetensors":
        save_safetensors(_untied(model, state), out / "model.safetensors")
    elif variant == "bin":
        save_bin(state, out / "pytorch_model.bin")
    elif variant == "sharded_safetensors":
        _write_shards(out, _untied(model, state), "safetensors", save_safetensors)
    elif variant == "sharded_bin":
        _write_shards(out, state, "bin", save_bin)
    elif variant == "legacy_bin":  # TF-era names and a persisted position_ids buffer
        legacy = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
                  for k, v in state.items()}
        base = prefix if any(k.startswith(prefix) for k in state) else ""
        legacy[f"{base}embeddings.position_ids"] = torch.arange(model.config.max_position_embeddings)[None]
        save_bin(legacy, out / "pytorch_model.bin")
    elif variant == "unprefixed_safetensors":  # base weights saved without the base-model prefix
        save_safetensors({k.removeprefix(prefix): v for k, v in _untied(model, state).items()},
                         out / "model.safetensors")
    else:
        raise ValueError(variant)
    return out
