"""One input pipeline for both frameworks: fast tokenizer, on-disk cache, seeded batches, dynamic padding.

Everything here is numpy; the backends turn the padded numpy batches into their own tensors.
"""

from __future__ import annotations

import hashlib
import json
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from paddleport.errors import PaddleportError
from paddleport.glue_runners.data import GlueSplit

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")
CACHE_FORMAT = 1


@dataclass(frozen=True)
class Features:
    """Token ids of every example (unpadded) and their labels."""

    input_ids: list[np.ndarray]
    token_type_ids: list[np.ndarray]
    labels: np.ndarray | None

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def lengths(self) -> np.ndarray:
        return np.fromiter((len(ids) for ids in self.input_ids), dtype=np.int64, count=len(self.input_ids))


@dataclass(frozen=True)
class LoadedTokenizer:
    tokenizer: Any
    fingerprint: str  # hash of the tokenizer files, part of the cache key
    pad_token_id: int


def find_tokenizer_dir(model_dir: Path) -> Path:
    """The model directory, or for a converted checkpoint without tokenizer files, the directory it came from."""
    model_dir = Path(model_dir)
    if any((model_dir / name).is_file() for name in ("tokenizer.json", "vocab.txt")):
        return model_dir
    conversion = model_dir / "conversion.json"
    if conversion.is_file():
        source = json.loads(conversion.read_text()).get("source")
        if source and Path(source).is_dir() and Path(source) != model_dir:
            return find_tokenizer_dir(Path(source))
    raise PaddleportError(model_dir, "has no tokenizer files (tokenizer.json or vocab.txt); pass --tokenizer DIR")


def load_tokenizer(tokenizer_dir: Path) -> LoadedTokenizer:
    """The Hugging Face fast tokenizer of ``tokenizer_dir``.

    With a ``tokenizer.json`` it is loaded as ``PreTrainedTokenizerFast`` (which does not import torch, so the
    Paddle backend stays torch-free); otherwise through ``AutoTokenizer``.
    """
    tokenizer_dir = Path(tokenizer_dir)
    if (tokenizer_dir / "tokenizer.json").is_file():
        from transformers import PreTrainedTokenizerFast

        tokenizer = PreTrainedTokenizerFast.from_pretrained(str(tokenizer_dir))
    else:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir), use_fast=True)
    if tokenizer.pad_token_id is None:
        raise PaddleportError(tokenizer_dir, "tokenizer has no padding token")
    return LoadedTokenizer(tokenizer, _fingerprint_files(tokenizer_dir), int(tokenizer.pad_token_id))


def _fingerprint_files(directory: Path) -> str:
    digest = hashlib.sha256()
    for name in TOKENIZER_FILES:
        path = directory / name
        if path.is_file():
            digest.update(name.encode())
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def split_fingerprint(split: GlueSplit, tokenizer: LoadedTokenizer, max_length: int) -> str:
    digest = hashlib.sha256(f"{CACHE_FORMAT}|{tokenizer.fingerprint}|{max_length}|{len(split)}".encode())
    for texts in (split.texts_a, split.texts_b or []):
        digest.update("\x1e".join(texts).encode("utf-8"))
        digest.update(b"\x1d")
    return digest.hexdigest()[:24]


def tokenize_split(split: GlueSplit, tokenizer: LoadedTokenizer, max_length: int,
                   cache_dir: Path | None = None) -> Features:
    """Token ids of ``split``, read from ``cache_dir`` when this tokenizer already tokenized the same texts."""
    cache_file = None
    if cache_dir is not None:
        cache_file = Path(cache_dir) / f"features-{split_fingerprint(split, tokenizer, max_length)}.npz"
        cached = _read_cache(cache_file, split.labels) if cache_file.is_file() else None
        if cached is not None:
            return cached
    encoded = tokenizer.tokenizer(split.texts_a, split.texts_b, truncation=True, max_length=max_length,
                                  return_token_type_ids=True, return_attention_mask=False)
    features = Features(
        input_ids=[np.asarray(ids, dtype=np.int32) for ids in encoded["input_ids"]],
        token_type_ids=[np.asarray(ids, dtype=np.int8) for ids in encoded["token_type_ids"]],
        labels=split.labels,
    )
    if cache_file is not None:
        _write_cache(cache_file, features)
    return features


def _write_cache(cache_file: Path, features: Features) -> None:
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    offsets = np.concatenate([[0], np.cumsum(features.lengths)])
    temporary = cache_file.with_name(cache_file.name + ".tmp.npz")
    np.savez(temporary, offsets=offsets, input_ids=np.concatenate(features.input_ids),
             token_type_ids=np.concatenate(features.token_type_ids))
    temporary.replace(cache_file)


def _read_cache(cache_file: Path, labels: np.ndarray | None) -> Features | None:
    """The cached features, or None (a miss, with a warning) when the file is damaged, e.g. by a killed run."""
    try:
        with np.load(cache_file, allow_pickle=False) as stored:
            offsets, input_ids, token_type_ids = stored["offsets"], stored["input_ids"], stored["token_type_ids"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        warnings.warn(f"{cache_file}: damaged feature cache ignored ({type(error).__name__}: {error}); "
                      "tokenizing again", stacklevel=2)
        return None
    bounds = list(zip(offsets[:-1], offsets[1:]))
    return Features([input_ids[a:b] for a, b in bounds], [token_type_ids[a:b] for a, b in bounds], labels)


# ---------------------------------------------------------------------------------------- batching


def epoch_batches(lengths: np.ndarray, batch_size: int, seed: int, epoch: int,
                  group_by_length: bool = False) -> list[np.ndarray]:
    """The example indices of every training batch of ``epoch``: a function of (seed, epoch) only.

    Both frameworks, and a resumed run, therefore see exactly the same batches in the same order.
    With ``group_by_length``, examples of similar length share a batch (less padding): mega-batches of
    50 batches are sorted by length, then the batch order is shuffled.
    """
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    if group_by_length:
        mega = batch_size * 50
        order = np.concatenate([chunk[np.argsort(-lengths[chunk], kind="stable")]
                                for chunk in np.array_split(order, range(mega, len(order), mega))])
    batches = [order[start:start + batch_size] for start in range(0, len(order), batch_size)]
    if group_by_length:
        batches = [batches[position] for position in rng.permutation(len(batches))]
    return batches


def sequential_batches(count: int, batch_size: int) -> list[np.ndarray]:
    return [np.arange(start, min(start + batch_size, count)) for start in range(0, count, batch_size)]


def collate(features: Features, indices: np.ndarray, pad_token_id: int,
            pad_to_multiple_of: int = 1) -> dict[str, np.ndarray]:
    """A dynamically padded batch: padded to its longest example (rounded up to ``pad_to_multiple_of``)."""
    longest = max(len(features.input_ids[index]) for index in indices)
    width = -(-longest // pad_to_multiple_of) * pad_to_multiple_of
    input_ids = np.full((len(indices), width), pad_token_id, dtype=np.int64)
    token_type_ids = np.zeros((len(indices), width), dtype=np.int64)
    attention_mask = np.zeros((len(indices), width), dtype=np.int64)
    for row, index in enumerate(indices):
        length = len(features.input_ids[index])
        input_ids[row, :length] = features.input_ids[index]
        token_type_ids[row, :length] = features.token_type_ids[index]
        attention_mask[row, :length] = 1
    batch = {"input_ids": input_ids, "token_type_ids": token_type_ids, "attention_mask": attention_mask}
    if features.labels is not None:
        batch["labels"] = features.labels[indices]
    return batch
