"""``convert_checkpoint``: Hugging Face <-> Paddle, driven by the architecture's table, strict about every tensor."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from paddleport import __version__
from paddleport.registry import resolve_class, table_for
from paddleport.convert.table import ArchitectureTable, ParamSpec
from paddleport.core.tensor_io import (
    FLOAT_DTYPES, PADDLE_FORMAT_TAG, PDPARAMS_NAME, SAFETENSORS_NAME, RawTensor, TensorSource, numpy_dtype,
    numpy_to_paddle, open_checkpoint, write_safetensors_stream,
)
from paddleport.errors import PaddleportError
from paddleport.core.configuration import CONFIG_NAME, AutoConfig, PretrainedConfig, read_config_dict
from paddleport.convert.paddlenlp import (
    PaddleNLPSource, active_copies, is_paddlenlp_checkpoint, paddlenlp_class, paddlenlp_config, paddlenlp_param,
    read_paddlenlp_config, write_paddlenlp_config,
)
from paddleport.fsutil import atomic_directory, check_output_target

DIRECTIONS = ("paddle", "hf", "paddlenlp")
FORMATS = ("safetensors", "pdparams")
DTYPES = ("float32", "float16", "bfloat16")
HF_FORMAT_TAG = "pt"
REPORT_NAME = "conversion.json"
TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
    "vocab.txt", "vocab.json", "merges.txt", "spiece.model", "sentencepiece.bpe.model", "spm.model",
)


@dataclass
class TensorRecord:
    source: str
    target: str
    transform: str
    shape: list[int]
    dtype: str
    source_shape: list[int]
    source_dtype: str


@dataclass
class ConversionReport:
    direction: str
    source: str
    output: str
    model_type: str
    architecture: str
    source_architecture: str | None
    format: str
    dtype: str | None
    tensors: list[TensorRecord] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    newly_initialised: list[str] = field(default_factory=list)
    tied: list[str] = field(default_factory=list)
    skipped_buffers: list[str] = field(default_factory=list)
    # Target parameter -> how many layer applications share it (ALBERT's layer groups), where more than one.
    shared: dict[str, int] = field(default_factory=dict)
    paddleport_version: str = __version__

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        lines = [f"converted {len(self.tensors)} tensors: {self.source} -> {self.output} "
                 f"({self.architecture}, {self.direction}, {self.format})"]
        for label, names in (("dropped (not in the target class)", self.dropped),
                             ("newly initialised (absent from the source)", self.newly_initialised),
                             ("tied (skipped)", self.tied), ("buffers (skipped)", self.skipped_buffers)):
            if names:
                lines.append(f"  {label}: {', '.join(names)}")
        if self.shared:
            lines.append(f"  shared: {len(self.shared)} parameters, each used by "
                         f"{'/'.join(str(n) for n in sorted(set(self.shared.values())))} layers")
        return "\n".join(lines)


@dataclass
class Plan:
    """Which source tensor fills which target parameter, decided before anything is written."""

    pairs: list[tuple[str, ParamSpec]]
    dropped: list[str]
    newly_initialised: list[str]
    tied: dict[str, str]
    skipped_buffers: list[str]


def convert_checkpoint(src: str | Path, out: str | Path, *, to: str = "paddle", arch: str | None = None,
                       dtype: str | None = None, fmt: str = "safetensors", force: bool = False,
                       progress: bool | None = None) -> ConversionReport:
    """Convert the checkpoint directory ``src`` into ``out`` (``to="paddle"`` or ``"hf"``).

    Every source tensor must be consumed, every target parameter filled, every shape must agree
    with ``config.json``; heads that differ between the source and ``arch`` are reported, not hidden.
    ``out`` appears only when complete.
    """
    src, out = Path(src), Path(out)
    _check_options(to, dtype, fmt)
    if not src.is_dir():
        raise PaddleportError(src, "source checkpoint directory does not exist" if not src.exists()
                              else "source must be a checkpoint directory")
    check_output_target(out, reads_from=[src])
    if os.path.lexists(out) and not force:
        raise PaddleportError(out, "output already exists (pass --force to replace it)")
    from_paddlenlp = is_paddlenlp_checkpoint(src)
    if from_paddlenlp:
        if to != "hf":
            raise PaddleportError("--to", f"{src} is a PaddleNLP checkpoint: convert it with --to hf")
        config_path, config_dict, _ = read_paddlenlp_config(src)
    else:
        config_path = src / CONFIG_NAME
        config_dict = read_config_dict(config_path)
    config = AutoConfig.from_dict(config_dict, source=config_path)
    class_name = resolve_class(config, arch, config_path)
    table = table_for(config)
    if to == "paddlenlp":
        fmt = "pdparams"  # what PaddleNLP's from_pretrained reads
        paddlenlp_class(table, class_name, arch and "--arch" or config_path)
        paddlenlp_values = paddlenlp_config(config_dict, config, table, class_name, config_path)
    opened = (PaddleNLPSource(src / PDPARAMS_NAME, table, config, resolve_class(config, None, config_path))
              if from_paddlenlp else open_checkpoint(src))
    with opened as source:
        # before the plan expands every layer
        config.check_against_weights({name: source.shape(name) for name in source.names()}, config_path)
        source_is_paddle = _check_layout(source, to)
        plan = plan_conversion(table, config, class_name, source, "hf" if source_is_paddle else "paddle")
        target = _Target(to, source_is_paddle, table, config, class_name)
        report = ConversionReport(
            direction=to, source=str(src), output=str(out), model_type=config.model_type, architecture=class_name,
            source_architecture=config.architecture, format=fmt, dtype=dtype, dropped=plan.dropped,
            newly_initialised=plan.newly_initialised, tied=sorted(plan.tied),
            skipped_buffers=plan.skipped_buffers, shared=shared_parameters(table, config, plan, target))
        with atomic_directory(out, replace=force, reads_from=[src]) as partial:
            report.tensors = _write_weights(partial, source, plan, target, dtype, fmt, progress)
            if from_paddlenlp:  # conversion.json names the source tensors as the PaddleNLP file does
                for record in report.tensors:
                    record.source = source.paddlenlp_name(record.source)
                report.dropped = sorted(map(source.paddlenlp_name, report.dropped))
                report.tied = sorted(report.tied + source.copies)
                report.skipped_buffers = sorted(map(source.paddlenlp_name, report.skipped_buffers))
            if to == "paddlenlp":
                write_paddlenlp_config(partial / CONFIG_NAME, _with_dtype(paddlenlp_values, dtype))
            else:
                _write_config(partial / CONFIG_NAME, config_dict, class_name, dtype)
            copy_tokenizer_files(src, partial)
            (partial / REPORT_NAME).write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    return report


@dataclass(frozen=True)
class _Target:
    """Where each planned parameter goes: its name and layout in the output (paddleport's Paddle or Hugging Face
    names, or PaddleNLP's), from the source's layout."""

    to: str
    source_is_paddle: bool
    table: ArchitectureTable
    config: PretrainedConfig
    class_name: str

    @property
    def prefixed(self) -> bool:
        return self.table.classes[self.class_name].prefixed

    def name_and_shape(self, spec: ParamSpec) -> tuple[str, tuple[int, ...]]:
        if self.to == "paddlenlp":
            param = paddlenlp_param(self.table, spec, self.prefixed)
            return param.name, param.transform.paddle_shape(spec.hf_shape)
        return (spec.paddle_name, spec.paddle_shape) if self.to == "paddle" else (spec.hf_name, spec.hf_shape)

    def transposes(self, spec: ParamSpec) -> bool:
        if self.to == "paddlenlp":
            transform = paddlenlp_param(self.table, spec, self.prefixed).transform
            return transform.transpose != (spec.transform.transpose and self.source_is_paddle)
        return spec.transform.transpose

    def copies(self, written: set[str]) -> dict[str, str]:
        """PaddleNLP names that repeat a written tensor (a tied decoder, a bias linked under two names) -> it."""
        if self.to != "paddlenlp":
            return {}
        return {copy.name: copy.original for copy in active_copies(self.table, self.config, self.class_name)
                if copy.original in written and copy.name not in written}

    def convert(self, array: np.ndarray, spec: ParamSpec) -> np.ndarray:
        if self.to == "paddlenlp":
            hf_layout = spec.transform.to_hf(array) if self.source_is_paddle else array
            return paddlenlp_param(self.table, spec, self.prefixed).transform.to_paddle(hf_layout)
        return spec.transform.to_paddle(array) if self.to == "paddle" else spec.transform.to_hf(array)


def _with_dtype(values: dict, dtype: str | None) -> dict:
    return dict(values, dtype=dtype) if dtype is not None else values


def _check_options(to: str, dtype: str | None, fmt: str) -> None:
    if to not in DIRECTIONS:
        raise PaddleportError("--to", f"must be one of {', '.join(DIRECTIONS)}, not {to!r}")
    if fmt not in FORMATS:
        raise PaddleportError("--format", f"must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if fmt == "pdparams" and to == "hf":
        raise PaddleportError("--format", "pdparams is a Paddle format: use it with --to paddle or paddlenlp")
    if dtype is not None and dtype not in DTYPES:
        raise PaddleportError("--dtype", f"must be one of {', '.join(DTYPES)}, not {dtype!r}")


def _check_layout(source: TensorSource, to: str) -> bool:
    """A Paddle checkpoint converts only to hf, a Hugging Face one only to paddle; either to paddlenlp.
    Whether the source holds Paddle-layout weights."""
    is_paddle = source.metadata.get("format") == PADDLE_FORMAT_TAG
    if to == "paddle" and is_paddle:
        raise PaddleportError(source.file_of(source.names()[0]) if source.names() else None,
                              "already holds Paddle-layout weights (use --to hf to convert back)")
    if to == "hf" and not is_paddle:
        raise PaddleportError(source.file_of(source.names()[0]) if source.names() else None,
                              "holds Hugging Face weights, not Paddle ones (use --to paddle)")
    return is_paddle


def plan_conversion(table: ArchitectureTable, config: PretrainedConfig, class_name: str,
                    source: TensorSource, to: str) -> Plan:
    """Match every source tensor to a target parameter by name; fail on anything unaccounted for."""
    def source_side(spec: ParamSpec) -> str:
        """A spec's name as the source names it: Hugging Face names to Paddle, Paddle names back."""
        return spec.hf_name if to == "paddle" else spec.paddle_name

    by_name = {source_side(s): s for s in table.class_specs(config, class_name)}
    known = {source_side(s) for s in table.all_specs(config)}
    strip_prefix = not table.classes[class_name].prefixed
    pairs, dropped, tied, buffers, unknown, claimed = [], [], {}, [], [], {}
    for name in source.names():
        canonical = table.canonical_name(name, known)
        class_name_of_source = canonical.removeprefix(table.base_prefix) if strip_prefix else canonical
        if class_name_of_source in by_name:
            if class_name_of_source in claimed:
                raise PaddleportError(source.file_of(name), f"tensors {claimed[class_name_of_source]} and {name} "
                                                            f"both map to {class_name_of_source}")
            claimed[class_name_of_source] = name
            pairs.append((name, by_name[class_name_of_source]))
        elif table.tied_target(canonical, config):
            tied[name] = table.tied_target(canonical, config)
        elif table.is_buffer(name):
            buffers.append(name)
        elif canonical in known:
            dropped.append(name)
        else:
            unknown.append(name)
    if unknown:
        raise PaddleportError(source.file_of(unknown[0]), f"{len(unknown)} tensors match no parameter of "
                              f"{class_name} (with {config.num_hidden_layers} layers): {', '.join(unknown[:8])}")
    filled = set(claimed)
    missing = [name for name, spec in by_name.items() if name not in filled]
    missing_base = [name for name in missing if by_name[name].group == "base"]
    if missing_base:
        raise PaddleportError(source.file_of(source.names()[0]) if source.names() else None,
                              f"{len(missing_base)} parameters of {class_name} are not in the checkpoint: "
                              f"{', '.join(missing_base[:8])}")
    _check_shapes(source, pairs, to)
    _check_tied(source, tied, table, strip_prefix)
    return Plan(pairs, sorted(dropped), sorted(missing), tied, sorted(buffers))


def shared_parameters(table: ArchitectureTable, config: PretrainedConfig, plan: Plan, target: _Target) -> dict[str, int]:
    """Target name -> number of layer applications using it, for parameters shared by more than one layer."""
    shared = {}
    for _, spec in plan.pairs:
        uses = table.uses(config, spec.hf_name)
        if uses > 1:
            shared[target.name_and_shape(spec)[0]] = uses
    return shared


def _check_shapes(source: TensorSource, pairs: list[tuple[str, ParamSpec]], to: str) -> None:
    for name, spec in pairs:
        expected = spec.hf_shape if to == "paddle" else spec.paddle_shape
        if source.shape(name) != expected:
            raise PaddleportError(source.file_of(name), f"tensor {name} has shape {list(source.shape(name))} "
                                                        f"but config.json implies {list(expected)}")


def _check_tied(source: TensorSource, tied: dict[str, str], table: ArchitectureTable, strip_prefix: bool) -> None:
    """A tied copy is skipped only if it really equals the tensor it is tied to."""
    names = set(source.names())
    for name, tied_to in tied.items():
        candidates = [tied_to, tied_to.removeprefix(table.base_prefix)] if not strip_prefix else [tied_to]
        present = next((c for c in candidates if c in names), None)
        if present is not None and not np.array_equal(source.read(name), source.read(present)):
            raise PaddleportError(source.file_of(name), f"tensor {name} differs from {present}, to which "
                                                        "config.json ties it (set tie_word_embeddings false)")


def _target_dtype(source_dtype: str, requested: str | None) -> str:
    return requested if requested and source_dtype in FLOAT_DTYPES else source_dtype


def _convert_tensor(array: np.ndarray, spec: ParamSpec, target: _Target, dtype: str) -> np.ndarray:
    array = target.convert(array, spec)
    with np.errstate(over="ignore"):  # an overflow is reported by _check_cast, with the tensor's name
        return array.astype(numpy_dtype(dtype), copy=False)


def _check_cast(name: str, source_file: Path, original: np.ndarray, cast: np.ndarray) -> None:
    """A narrower float type must hold every value: a weight that overflows to inf is refused, not written."""
    narrowed = cast.dtype != original.dtype and cast.dtype.name in FLOAT_DTYPES
    if narrowed and not np.isfinite(cast.astype(np.float32)).all():
        if np.isfinite(original).all():
            largest = float(np.abs(original.astype(np.float64)).max())
            raise PaddleportError("--dtype", f"tensor {name} of {source_file.name} overflows {cast.dtype.name} "
                                             f"(|value| up to {largest:.4g}); keep a wider dtype")


def _write_weights(directory: Path, source: TensorSource, plan: Plan, target: _Target, dtype: str | None,
                   fmt: str, progress: bool | None) -> list[TensorRecord]:
    records = []
    for name, spec in plan.pairs:
        target_dtype = _target_dtype(source.dtype(name), dtype)
        target_name, shape = target.name_and_shape(spec)
        records.append(TensorRecord(name, target_name, spec.transform.name, list(shape), target_dtype,
                                    list(source.shape(name)), source.dtype(name)))
    spec_of = {record.target: spec for record, (_, spec) in zip(records, plan.pairs)}
    copy_of = target.copies({record.target for record in records})
    records += [replace(next(r for r in records if r.target == original), target=copy, transform=f"copy of {original}")
                for copy, original in copy_of.items()]
    source_of = {record.target: record.source for record in records}
    dtype_of = {record.target: record.dtype for record in records}

    def produce(target_name: str) -> np.ndarray:
        target_name = copy_of.get(target_name, target_name)
        original = source.read(source_of[target_name])
        converted = _convert_tensor(original, spec_of[target_name], target, dtype_of[target_name])
        _check_cast(source_of[target_name], source.file_of(source_of[target_name]), original, converted)
        return converted

    def produce_or_copy(target_name: str) -> np.ndarray | RawTensor:
        """Bytes that stay as they are (no transpose, same dtype) go file to file, never through numpy."""
        name = source_of[target_name]
        unchanged = not target.transposes(spec_of[target_name]) and dtype_of[target_name] == source.dtype(name)
        raw = source.raw(name) if unchanged else None
        return raw if raw is not None else produce(target_name)

    total = sum(source.nbytes(r.source) for r in records)
    with _progress_bar(total, progress) as update:
        if fmt == "pdparams":
            _save_pdparams(directory / PDPARAMS_NAME, [r.target for r in records], produce, update)
        else:
            layout = [(r.target, r.dtype, tuple(r.shape)) for r in records]
            tag = PADDLE_FORMAT_TAG if target.to == "paddle" else HF_FORMAT_TAG
            write_safetensors_stream(directory / SAFETENSORS_NAME, layout, produce_or_copy, {"format": tag},
                                     on_tensor=update)
    return records


@contextmanager
def _progress_bar(total: int, progress: bool | None) -> Iterator[Callable[[int], None]]:
    """A tqdm byte counter; tqdm is imported only when a bar may be shown (its import costs ~0.3 s)."""
    if progress is False:
        yield lambda nbytes: None
        return
    from tqdm import tqdm

    with tqdm(total=total, unit="B", unit_scale=True, desc="convert", disable=None if progress is None else False,
              leave=False) as bar:
        yield bar.update


def _save_pdparams(path: Path, names: list[str], produce, on_tensor) -> None:
    """``paddle.save`` needs the whole dict in memory; this format is for ``paddle.load`` users."""
    import paddle

    state = {}
    for name in names:
        array = produce(name)
        state[name] = numpy_to_paddle(array)
        on_tensor(array.nbytes)
    paddle.save(state, str(path))


def _write_config(path: Path, config_dict: dict, class_name: str, dtype: str | None) -> None:
    config = dict(config_dict, architectures=[class_name])
    if dtype is not None:
        config["dtype"] = dtype
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def copy_tokenizer_files(src: Path, out: Path) -> None:
    """The tokenizer files of ``src``, copied unchanged."""
    for name in TOKENIZER_FILES:
        if (src / name).is_file():
            shutil.copy2(src / name, out / name)
