"""Loading GLUE data: GLUE-format TSV directories, CSV/JSON files (via ``datasets``) or the hub.

Every source ends up as :class:`GlueSplit` objects (texts, label ids, row ids) after the same checks:
required columns present (found by header name), at least one row, labels inside the task's label set.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from paddleport.errors import PaddleportError
from paddleport.glue_runners.tasks import GlueTask


@dataclass(frozen=True)
class GlueSplit:
    """One split as plain arrays. ``labels`` is None for unlabelled (test) data."""

    name: str
    source: str
    texts_a: list[str]
    texts_b: list[str] | None
    labels: np.ndarray | None
    ids: list[str]

    def __len__(self) -> int:
        return len(self.texts_a)

    def head(self, count: int | None) -> "GlueSplit":
        """The first ``count`` rows (all rows when ``count`` is None)."""
        if count is None or count >= len(self):
            return self
        return replace(
            self,
            texts_a=self.texts_a[:count],
            texts_b=None if self.texts_b is None else self.texts_b[:count],
            labels=None if self.labels is None else self.labels[:count],
            ids=self.ids[:count],
        )


@dataclass(frozen=True)
class GlueData:
    train: GlueSplit
    evals: list[GlueSplit]  # the first one decides the best checkpoint
    tests: list[GlueSplit]


@dataclass(frozen=True)
class DataSource:
    """Where the data comes from; the embedded QQP sample when nothing is given."""

    data_dir: Path | None = None
    train_file: Path | None = None
    validation_file: Path | None = None
    test_file: Path | None = None
    from_hub: bool = False
    cache_dir: Path | None = None


# ---------------------------------------------------------------------------------------- reading


def read_glue_tsv(path: Path, task: GlueTask) -> "Any":
    """A GLUE TSV as a string DataFrame (quoting off: questions contain ``"``); CoLA's header-less files too."""
    import pandas

    path = Path(path)
    if not path.is_file():
        raise PaddleportError(path, "file not found")
    try:
        with path.open(encoding="utf-8") as stream:
            first_line = stream.readline().rstrip("\n")
    except UnicodeDecodeError as error:
        raise PaddleportError(path, f"is not UTF-8 text (byte {error.object[error.start]:#04x} "
                                    "cannot be decoded)") from None
    if not first_line.strip():
        raise PaddleportError(path, "is empty (no header and no rows)")
    options: dict[str, Any] = {}
    if _is_headerless(first_line.split("\t"), task):
        options = {"header": None, "names": list(task.headerless_columns)}
    try:
        return pandas.read_csv(path, sep="\t", quoting=csv.QUOTE_NONE, dtype=str, keep_default_na=False,
                               encoding="utf-8", **options)
    except (pandas.errors.ParserError, UnicodeDecodeError) as error:
        raise PaddleportError(path, f"is not a readable TSV file ({str(error).splitlines()[0]})") from None


def _is_headerless(fields: list[str], task: GlueTask) -> bool:
    known = set(task.text_a) | set(task.text_b) | set(task.label) | set(task.id_columns)
    return bool(task.headerless_columns) and not known & set(fields) and len(fields) == len(task.headerless_columns)


def read_with_datasets(path: Path, cache_dir: Path | None) -> "Any":
    """A CSV or JSON (lines) file through ``datasets``, as a DataFrame."""
    import datasets

    path = Path(path)
    if not path.is_file():
        raise PaddleportError(path, "file not found")
    if path.stat().st_size == 0:
        raise PaddleportError(path, "is empty (no rows)")
    builder = {".csv": "csv", ".json": "json", ".jsonl": "json", ".tsv": "csv"}.get(path.suffix.lower())
    if builder is None:
        raise PaddleportError(path, "unsupported file type; use .csv, .tsv, .json or .jsonl")
    options = {"delimiter": "\t", "quoting": csv.QUOTE_NONE} if path.suffix.lower() == ".tsv" else {}
    try:
        dataset = datasets.load_dataset(builder, data_files=str(path), split="train",
                                        cache_dir=None if cache_dir is None else str(cache_dir), **options)
    except Exception as error:  # datasets wraps parser errors in several types
        raise PaddleportError(path, f"cannot be read ({str(error).splitlines()[0]})") from None
    return dataset.to_pandas()


# ---------------------------------------------------------------------------------------- converting


def split_from_frame(frame: "Any", task: GlueTask, name: str, source: str, labelled: bool) -> GlueSplit:
    """Check and convert a DataFrame into a :class:`GlueSplit`."""
    if len(frame) == 0:
        raise PaddleportError(source, "is empty (no data rows)")
    columns = [str(column) for column in frame.columns]
    text_a = _texts(frame[_pick_column(columns, task.text_a, source, task, "first sentence")])
    text_b = None
    if task.text_b:
        text_b = _texts(frame[_pick_column(columns, task.text_b, source, task, "second sentence")])
    labels = None
    if labelled:
        label_column = _pick_column(columns, task.label, source, task, "label")
        labels = encode_labels(frame[label_column].tolist(), task, source)
    id_column = next((column for column in task.id_columns if column in columns), None)
    ids = [str(value) for value in frame[id_column]] if id_column else [str(row) for row in range(len(frame))]
    return GlueSplit(name=name, source=source, texts_a=text_a, texts_b=text_b, labels=labels, ids=ids)


def _pick_column(columns: Sequence[str], candidates: Sequence[str], source: str, task: GlueTask, role: str) -> str:
    for candidate in candidates:
        if candidate in columns:
            return candidate
    wanted = " or ".join(repr(candidate) for candidate in candidates)
    raise PaddleportError(source, f"missing column {wanted} ({task.name} {role}); columns found: {', '.join(columns)}")


def _texts(values: Iterable[Any]) -> list[str]:
    return ["" if _is_missing(value) else str(value) for value in values]


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def encode_labels(values: Sequence[Any], task: GlueTask, source: str) -> np.ndarray:
    """Label ids (int64) or scores (float32 for regression); a value outside the task's labels is an error."""
    if task.is_regression:
        return np.asarray([_score(value, row, source) for row, value in enumerate(values)], dtype=np.float32)
    index = {label: position for position, label in enumerate(task.labels)}
    return np.asarray([_label_id(value, row, index, task, source) for row, value in enumerate(values)], dtype=np.int64)


def _label_id(value: Any, row: int, index: dict[str, int], task: GlueTask, source: str) -> int:
    text = "" if _is_missing(value) else str(value).strip()
    if text in index:
        return index[text]
    number = _as_int(text)
    if number is not None and 0 <= number < len(task.labels):
        return number
    raise PaddleportError(
        source, f"row {row + 1}: label {text!r} is outside the {task.num_labels} labels of {task.name} "
                f"({', '.join(task.labels)})")


def _as_int(text: str) -> int | None:
    try:
        number = float(text)
    except ValueError:
        return None
    return int(number) if number.is_integer() else None


def _score(value: Any, row: int, source: str) -> float:
    try:
        score = float(value)
    except (TypeError, ValueError):
        score = math.nan
    if not math.isfinite(score):
        raise PaddleportError(source, f"row {row + 1}: score {value!r} is not a number")
    return score


# ---------------------------------------------------------------------------------------- sources


def load_glue_data(task: GlueTask, source: DataSource, with_test: bool = False) -> GlueData:
    """Read train, evaluation and (when ``with_test``) test splits from ``source``; checks included."""
    if source.from_hub:
        return _load_from_hub(task, source, with_test)
    if source.train_file or source.validation_file:
        return _load_files(task, source, with_test)
    return _load_tsv_dir(task, _data_dir(task, source), with_test)


def _data_dir(task: GlueTask, source: DataSource) -> Path:
    if source.data_dir is not None:
        if not Path(source.data_dir).is_dir():
            raise PaddleportError(source.data_dir, "data directory not found")
        return Path(source.data_dir)
    if task.name != "qqp":
        raise PaddleportError("--data-dir", f"needed for task {task.name} (only QQP has an embedded sample)")
    from paddleport.data import QQP_DIR

    return QQP_DIR


def _tsv_split(path: Path, task: GlueTask, name: str, labelled: bool) -> GlueSplit:
    return split_from_frame(read_glue_tsv(path, task), task, name, str(path), labelled)


def _load_tsv_dir(task: GlueTask, data_dir: Path, with_test: bool) -> GlueData:
    train = _tsv_split(data_dir / "train.tsv", task, "train", labelled=True)
    evals = [_tsv_split(data_dir / file, task, Path(file).stem, labelled=True) for file in task.dev_files
             if file == task.dev_files[0] or (data_dir / file).is_file()]
    tests = []
    if with_test:
        tests = [_tsv_split(data_dir / file, task, Path(file).stem, labelled=False) for file in task.test_files
                 if file == task.test_files[0] or (data_dir / file).is_file()]
    return GlueData(train=train, evals=evals, tests=tests)


def _load_files(task: GlueTask, source: DataSource, with_test: bool) -> GlueData:
    for option, path in (("--train-file", source.train_file), ("--validation-file", source.validation_file)):
        if path is None:
            raise PaddleportError(option, "needed together with " + ("--validation-file" if option == "--train-file"
                                                                      else "--train-file"))

    def split(path: Path, name: str, labelled: bool) -> GlueSplit:
        return split_from_frame(read_with_datasets(path, source.cache_dir), task, name, str(path), labelled)

    tests = []
    if with_test:
        if source.test_file is None:
            raise PaddleportError("--test-file", "needed with --do-predict when data comes from --train-file")
        tests = [split(source.test_file, "test", labelled=False)]
    return GlueData(train=split(source.train_file, "train", True),
                    evals=[split(source.validation_file, "validation", True)], tests=tests)


def _load_from_hub(task: GlueTask, source: DataSource, with_test: bool) -> GlueData:
    import datasets

    where = f"glue/{task.hub_name}"
    try:
        dataset = datasets.load_dataset("glue", task.hub_name,
                                        cache_dir=None if source.cache_dir is None else str(source.cache_dir))
    except Exception as error:  # no hub and no cache: many exception types
        raise PaddleportError(where, f"cannot be loaded with datasets ({str(error).splitlines()[0]})") from None

    def split(split_name: str, labelled: bool) -> GlueSplit:
        return split_from_frame(dataset[split_name].to_pandas(), task, split_name, f"{where}[{split_name}]", labelled)

    test_splits = [name.replace("validation", "test") for name in task.hub_eval_splits]
    return GlueData(train=split("train", True), evals=[split(name, True) for name in task.hub_eval_splits],
                    tests=[split(name, False) for name in test_splits] if with_test else [])
