"""Parity inputs: real text (the embedded QQP sample, a GLUE pair TSV or one sentence a line), tokenized once.

Every batch is a dict of int64 numpy arrays (``input_ids``, ``attention_mask``, ``token_type_ids``) padded
to its longest row, plus ``labels`` (QQP ``is_duplicate`` when the file has it).  The first batch always holds
the edge cases: a length-1 sequence (``[CLS]`` alone), the empty text (``[CLS] [SEP]``) and a sequence
of exactly ``max_length`` tokens, so padding and the longest positions are both exercised.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from paddleport.errors import PaddleportError

GLUE_PAIR_COLUMNS = ("question1", "question2")
GLUE_LABEL_COLUMN = "is_duplicate"
DEFAULT_LIMIT = 32


@dataclass
class TextExamples:
    """Sentences (or sentence pairs) with optional integer labels, and where they came from."""

    first: list[str]
    second: list[str] | None = None
    labels: list[int] | None = None
    source: str = ""

    def __len__(self) -> int:
        return len(self.first)


@dataclass
class EncodedBatches:
    """Padded batches ready for either framework, and a description for reports."""

    batches: list[dict[str, np.ndarray]]
    source: str
    num_examples: int
    max_length: int
    lengths: list[int] = field(default_factory=list)

    def describe(self) -> dict:
        return {
            "source": self.source,
            "num_examples": self.num_examples,
            "num_batches": len(self.batches),
            "max_length": self.max_length,
            "shortest": min(self.lengths),
            "longest": max(self.lengths),
        }


def default_inputs_path() -> Path:
    from paddleport.data import QQP_DIR

    return QQP_DIR / "dev.tsv"


def read_examples(path: str | Path | None = None, limit: int | None = DEFAULT_LIMIT) -> TextExamples:
    """Read a GLUE pair TSV (QQP columns) or a plain text file (one sentence a line); default: QQP dev."""
    path = Path(path) if path is not None else default_inputs_path()
    if not path.is_file():
        raise PaddleportError(path, "inputs file not found")
    try:
        header = path.read_text(encoding="utf-8").split("\n", 1)[0].split("\t")
        examples = _read_glue_pairs(path, limit) if set(GLUE_PAIR_COLUMNS) <= set(header) else _read_lines(path, limit)
    except UnicodeDecodeError as error:
        raise PaddleportError(path, f"is not UTF-8 text (byte {error.object[error.start]:#04x} "
                                    "cannot be decoded)") from None
    if len(examples) == 0:
        raise PaddleportError(path, "inputs file holds no sentences")
    return examples


def _read_glue_pairs(path: Path, limit: int | None) -> TextExamples:
    first, second, labels = [], [], []
    with path.open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE):
            if not row.get("question1") or row.get("question2") is None:
                continue
            first.append(row["question1"])
            second.append(row["question2"])
            label = (row.get(GLUE_LABEL_COLUMN) or "").strip()
            labels.append(int(label) if label.isdigit() else 0)
            if limit is not None and len(first) >= limit:
                break
    return TextExamples(first, second, labels, source=f"{path} (GLUE pairs)")


def _read_lines(path: Path, limit: int | None) -> TextExamples:
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return TextExamples(lines[:limit] if limit is not None else lines, source=f"{path} (one sentence a line)")


def encode_examples(
    tokenizer, examples: TextExamples, *, batch_size: int = 8, max_length: int = 128, seed: int = 0
) -> EncodedBatches:
    """Tokenize once, prepend the edge cases, and pad each batch to its longest row."""
    if batch_size < 1 or max_length < 2:
        raise PaddleportError("--batch-size/--max-length", "batch size must be >= 1 and max length >= 2")
    rows = _edge_case_rows(tokenizer, examples, max_length) + _tokenize_rows(tokenizer, examples, max_length)
    labels = _labels(examples, len(rows), seed)
    batches = [
        _pad_batch(rows[start:start + batch_size], labels[start:start + batch_size], tokenizer.pad_token_id or 0)
        for start in range(0, len(rows), batch_size)
    ]
    return EncodedBatches(batches, examples.source, len(rows), max_length, [len(r["input_ids"]) for r in rows])


def _tokenize_rows(tokenizer, examples: TextExamples, max_length: int) -> list[dict[str, list[int]]]:
    encoded = tokenizer(
        examples.first, examples.second, truncation=True, max_length=max_length, return_token_type_ids=True
    )
    return [
        {"input_ids": ids, "token_type_ids": types}
        for ids, types in zip(encoded["input_ids"], encoded["token_type_ids"])
    ]


def _edge_case_rows(tokenizer, examples: TextExamples, max_length: int) -> list[dict[str, list[int]]]:
    """[CLS] alone, the empty text, and a row of exactly max_length tokens (real text repeated)."""
    cls_id = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    empty = tokenizer("", return_token_type_ids=True)
    long_text = " ".join(examples.first + (examples.second or []))
    while len(tokenizer(long_text, truncation=True, max_length=max_length)["input_ids"]) < max_length:
        long_text = f"{long_text} {long_text}"
    longest = tokenizer(long_text, truncation=True, max_length=max_length, return_token_type_ids=True)
    return [
        {"input_ids": [cls_id], "token_type_ids": [0]},
        {"input_ids": empty["input_ids"], "token_type_ids": empty["token_type_ids"]},
        {"input_ids": longest["input_ids"], "token_type_ids": longest["token_type_ids"]},
    ]


def _labels(examples: TextExamples, count: int, seed: int) -> list[int]:
    """The file's labels for the real rows; seeded 0/1 labels for the edge cases and unlabeled text."""
    seeded = np.random.default_rng(seed).integers(0, 2, size=count).tolist()
    known = examples.labels or []
    edge = count - len(examples)
    return seeded[:edge] + [known[i] if i < len(known) else seeded[edge + i] for i in range(len(examples))]


def _pad_batch(rows: list[dict[str, list[int]]], labels: list[int], pad_id: int) -> dict[str, np.ndarray]:
    width = max(len(row["input_ids"]) for row in rows)
    batch = {
        "input_ids": np.full((len(rows), width), pad_id, dtype=np.int64),
        "attention_mask": np.zeros((len(rows), width), dtype=np.int64),
        "token_type_ids": np.zeros((len(rows), width), dtype=np.int64),
    }
    for i, row in enumerate(rows):
        length = len(row["input_ids"])
        batch["input_ids"][i, :length] = row["input_ids"]
        batch["attention_mask"][i, :length] = 1
        batch["token_type_ids"][i, :length] = row["token_type_ids"]
    batch["labels"] = np.asarray(labels, dtype=np.int64)
    return batch


def load_parity_batches(
    hf_dir: str | Path,
    inputs: str | Path | None = None,
    *,
    batch_size: int = 8,
    max_length: int = 128,
    limit: int | None = DEFAULT_LIMIT,
    seed: int = 0,
) -> EncodedBatches:
    """Read the inputs and tokenize them with the Hugging Face tokenizer found in ``hf_dir``."""
    return encode_examples(
        load_tokenizer(hf_dir), read_examples(inputs, limit), batch_size=batch_size, max_length=max_length, seed=seed
    )


def load_tokenizer(model_dir: str | Path):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(model_dir))
    except (OSError, ValueError) as error:
        raise PaddleportError(model_dir, f"no usable tokenizer ({str(error).splitlines()[0]})") from None
