"""PaddleNLP 2.8 checkpoint directories, in and out, through each architecture's ``PaddleNLPMap``.

A PaddleNLP directory holds ``model_state.pdparams`` (PaddleNLP's parameter names, paddle's ``[in, out]`` Linear
layout) and ``config.json`` (written by ``save_pretrained``, with a ``paddlenlp_version`` key) or the older
``model_config.json`` (``init_args`` / ``init_class``). Reading presents its tensors under paddleport's Paddle
names, so the converter's strict plan applies unchanged; writing renames paddleport's plan to PaddleNLP's names.
The ``.pdparams`` file goes through ``paddleport.safe_pickle`` (never ``paddle.load``). Framework-free.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from paddleport.convert.table import ArchitectureTable, PaddleNLPMap, ParamSpec, rename
from paddleport.convert.transforms import Transform
from paddleport.core.configuration import CONFIG_NAME, PretrainedConfig, read_config_dict
from paddleport.core.tensor_io import PADDLE_FORMAT_TAG, PDPARAMS_NAME, TensorSource, read_pdparams
from paddleport.errors import PaddleportError

LEGACY_CONFIG_NAME = "model_config.json"
VERSION_KEY = "paddlenlp_version"  # PaddleNLP's save_pretrained writes it into every config.json
# PaddleNLP's PretrainedConfig.attribute_map (every 2.8 config class): legacy key -> current key.
LEGACY_KEYS = {"num_classes": "num_labels", "dropout": "classifier_dropout"}
# PaddleNLP-only config keys with no meaning in transformers (a fused encoder has other parameter names).
PADDLENLP_ONLY_KEYS = (VERSION_KEY, "fuse", "pool_act", "use_cache")


def paddlenlp_map(table: ArchitectureTable, source: str | Path | None) -> PaddleNLPMap:
    if table.paddlenlp is None:
        raise PaddleportError(source, f"model_type {table.model_type!r} has no PaddleNLP name map "
                                      f"(PaddleNLP format: {', '.join(paddlenlp_model_types())})")
    return table.paddlenlp


def paddlenlp_model_types() -> list[str]:
    from paddleport.registry import ARCHITECTURES

    return [model_type for model_type, entry in ARCHITECTURES.items() if entry.table.paddlenlp is not None]


def paddlenlp_class(table: ArchitectureTable, class_name: str, source: str | Path | None) -> str:
    """The PaddleNLP class of a transformers class."""
    names = paddlenlp_map(table, source).classes
    if class_name not in names:
        raise PaddleportError(source, f"{class_name} has no PaddleNLP counterpart paddleport converts "
                                      f"(PaddleNLP classes: {', '.join(names)})")
    return names[class_name]


def transformers_class(table: ArchitectureTable, paddlenlp_name: str, source: str | Path | None) -> str:
    """The transformers class of a PaddleNLP class."""
    names = {nlp: hf for hf, nlp in paddlenlp_map(table, source).classes.items()}
    if paddlenlp_name not in names:
        raise PaddleportError(source, f"PaddleNLP class {paddlenlp_name!r} is not supported "
                                      f"(supported: {', '.join(names)})")
    return names[paddlenlp_name]


# --- parameter names -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PaddleNLPParam:
    """One parameter of a PaddleNLP class: its name there and the transform from the Hugging Face layout."""

    name: str
    transform: Transform


def paddlenlp_param(table: ArchitectureTable, spec: ParamSpec, prefixed: bool) -> PaddleNLPParam:
    """``spec`` (named as in a class that is ``prefixed`` with the base model or not) under PaddleNLP's name."""
    mapping = paddlenlp_map(table, None)
    in_base = spec.group in ("base", "pooler")
    body = spec.hf_name.removeprefix(table.base_prefix) if prefixed and in_base else spec.hf_name
    for rule in mapping.rules:
        renamed = rename(body, rule.hf, rule.paddle)
        if renamed is not None:
            body = renamed[0]
            transform = rule.transform or spec.transform
            break
    else:
        transform = spec.transform
    return PaddleNLPParam((mapping.base_prefix if prefixed and in_base else "") + body, transform)


def paddlenlp_names(table: ArchitectureTable, config: PretrainedConfig,
                    class_name: str) -> dict[str, tuple[ParamSpec, bool]]:
    """PaddleNLP name -> (paddleport spec, whether its class is prefixed with the base model) for every parameter
    of ``class_name``, then the base model's and pooler's under both a head class's and the bare model's names
    (a PaddleNLP class may hold a pooler its transformers class has not: reported as dropped)."""
    prefixed = table.classes[class_name].prefixed
    names = {paddlenlp_param(table, spec, prefixed).name: (spec, prefixed)
             for spec in table.class_specs(config, class_name)}
    for spec in table.all_specs(config):
        if spec.group in ("base", "pooler"):
            bare = replace(spec, hf_name=spec.hf_name.removeprefix(table.base_prefix),
                           paddle_name=spec.paddle_name.removeprefix(table.base_prefix))
            names.setdefault(paddlenlp_param(table, spec, prefixed=True).name, (spec, True))
            names.setdefault(paddlenlp_param(table, bare, prefixed=False).name, (bare, False))
    return names


class PaddleNLPSource(TensorSource):
    """A PaddleNLP ``model_state.pdparams`` seen as a paddleport Paddle checkpoint: each tensor under paddleport's
    Paddle name and layout. A name the map does not know keeps its own name, so that the converter refuses it."""

    def __init__(self, path: Path, table: ArchitectureTable, config: PretrainedConfig, class_name: str):
        super().__init__()
        arrays = read_pdparams(path)
        known = paddlenlp_names(table, config, class_name)
        self._arrays, self._paddlenlp_name = {}, {}
        self.copies: list[str] = []  # PaddleNLP names skipped as copies of another tensor
        for copy in active_copies(table, config, class_name):
            if copy.name in arrays and copy.name not in known:
                array = arrays.pop(copy.name)
                if copy.original not in arrays:  # the copy is the only holder: it is the original
                    arrays[copy.original] = array
                elif not np.array_equal(array, arrays[copy.original]):
                    raise PaddleportError(path, f"tensor {copy.name} differs from {copy.original}, which PaddleNLP "
                                                "ties it to")
                else:
                    self.copies.append(copy.name)
        for name, array in arrays.items():
            spec, prefixed = known.get(name, (None, False))
            if spec is None:
                self._arrays[name] = array
                continue
            transform = paddlenlp_param(table, spec, prefixed).transform
            if transform != spec.transform:  # PaddleNLP's layout differs from paddleport's Paddle layout
                array = spec.transform.to_paddle(transform.to_hf(array))
            self._arrays[spec.paddle_name] = array
            self._paddlenlp_name[spec.paddle_name] = name
        self._entries = {name: (path, array.shape, array.dtype.name) for name, array in self._arrays.items()}
        self.metadata = {"format": PADDLE_FORMAT_TAG}

    def paddlenlp_name(self, name: str) -> str:
        return self._paddlenlp_name.get(name, name)

    def read(self, name: str) -> np.ndarray:
        return self._arrays[name]


def active_copies(table: ArchitectureTable, config: PretrainedConfig, class_name: str) -> list:
    """The copies ``class_name`` holds under ``config``."""
    head = table.classes[class_name].head
    return [copy for copy in paddlenlp_map(table, None).copies if head in copy.heads and copy.when(config)]


# --- configuration -------------------------------------------------------------------------------------------

def is_paddlenlp_checkpoint(directory: Path) -> bool:
    """PaddleNLP's own files: ``model_state.pdparams`` beside a ``model_config.json`` or a ``config.json`` that
    PaddleNLP wrote (it carries ``paddlenlp_version``), or one without that key whose tensors carry names only
    PaddleNLP uses (an older or hand-written config)."""
    directory = Path(directory)
    if not (directory / PDPARAMS_NAME).is_file():
        return False
    if (directory / LEGACY_CONFIG_NAME).is_file() and not (directory / CONFIG_NAME).is_file():
        return True
    if not (directory / CONFIG_NAME).is_file():
        return False
    values = read_config_dict(directory / CONFIG_NAME)
    return VERSION_KEY in values or _has_paddlenlp_names(directory, values)


def _has_paddlenlp_names(directory: Path, values: dict[str, Any]) -> bool:
    """Whether the ``.pdparams`` holds a name PaddleNLP's map gives and paddleport's own Paddle names do not."""
    from paddleport.core.configuration import AutoConfig
    from paddleport.registry import ARCHITECTURES

    entry = ARCHITECTURES.get(values.get("model_type"))
    if entry is None or entry.table.paddlenlp is None:
        return False
    config = AutoConfig.from_dict(values, source=directory / CONFIG_NAME)
    class_name = config.architecture if config.architecture in entry.table.classes else entry.table.base_class()
    paddleport_names = {spec.paddle_name for spec in entry.table.all_specs(config)}
    paddleport_names |= {name.removeprefix(entry.table.base_prefix) for name in paddleport_names}
    only_paddlenlp = set(paddlenlp_names(entry.table, config, class_name)) - paddleport_names
    return not only_paddlenlp.isdisjoint(read_pdparams(directory / PDPARAMS_NAME))


def _flatten_legacy(values: dict[str, Any]) -> dict[str, Any]:
    """``{"init_args": [{...}], "init_class": "X", ...}`` (nested for head classes) as one flat dict; the outer
    ``init_class`` is the class, outer keys win (PaddleNLP's ``flatten_model_config``)."""
    flat = {key: value for key, value in values.items() if key not in ("init_args", "init_class")}
    if "init_class" in values:
        flat["architectures"] = [values["init_class"]]
    for argument in values.get("init_args") or []:
        if isinstance(argument, dict):
            for key, value in _flatten_legacy(argument).items():
                flat.setdefault(key, value)
    return flat


def read_paddlenlp_config(directory: Path) -> tuple[Path, dict[str, Any], str]:
    """(config file, the config as a transformers ``config.json`` dict, the PaddleNLP class it names)."""
    from paddleport.registry import ARCHITECTURES

    path = directory / CONFIG_NAME
    if not path.is_file():
        path = directory / LEGACY_CONFIG_NAME
    values = _flatten_legacy(read_config_dict(path))
    values = {LEGACY_KEYS.get(key, key): value for key, value in values.items()}
    architectures = values.get("architectures") or []
    if not architectures or not isinstance(architectures[0], str):
        raise PaddleportError(path, "names no PaddleNLP class (architectures / init_class)")
    nlp_class = architectures[0]
    model_type = values.get("model_type")
    if model_type is None:  # model_config.json has no model_type: the class says it
        model_type = next((name for name, entry in ARCHITECTURES.items() if entry.table.paddlenlp is not None
                           and nlp_class in entry.table.paddlenlp.classes.values()), None)
    if model_type not in ARCHITECTURES:
        raise PaddleportError(path, f"PaddleNLP model {model_type or nlp_class!r} is not supported "
                                    f"(PaddleNLP format: {', '.join(paddlenlp_model_types())})")
    table = ARCHITECTURES[model_type].table
    mapping = paddlenlp_map(table, path)
    if values.get("fuse"):
        raise PaddleportError(path, "fuse=true (PaddleNLP's fused encoder layers) is not supported")
    values = {**mapping.defaults, **values}
    hf_values = {mapping.config_keys.get(key, key): value for key, value in values.items()
                 if key not in PADDLENLP_ONLY_KEYS}
    hf_values["model_type"] = model_type
    hf_values["architectures"] = [transformers_class(table, nlp_class, path)]
    if "num_labels" in hf_values and "id2label" not in hf_values:
        hf_values["id2label"] = {str(i): f"LABEL_{i}" for i in range(int(hf_values.pop("num_labels")))}
    # what PaddleNLP's model computes with, whatever its config says
    config = ARCHITECTURES[model_type].config_class.from_dict(hf_values, source=path)
    hf_values.update(fixed_values(mapping, config))
    return path, hf_values, nlp_class


def fixed_values(mapping: PaddleNLPMap, config: PretrainedConfig) -> dict[str, Any]:
    """The config values PaddleNLP's model computes with whatever its config says, where they apply."""
    return {key: value for key, value in mapping.fixed.items()
            if mapping.fixed_when.get(key, lambda c: True)(config)}


def paddlenlp_config(config_dict: dict[str, Any], config: PretrainedConfig, table: ArchitectureTable,
                     class_name: str, source: str | Path = CONFIG_NAME) -> dict[str, Any]:
    """The ``config.json`` PaddleNLP's ``from_pretrained`` reads: every key its config class has, explicit (its
    defaults differ from transformers': BERT's 16 token types, RoBERTa's pad id 0 and eps 1e-12), under its names.
    A value PaddleNLP's model would not compute with (``PaddleNLPMap.fixed``) is refused."""
    mapping = paddlenlp_map(table, source)
    for key, value in fixed_values(mapping, config).items():
        if getattr(config, key) != value:
            raise PaddleportError(source, f"{key} is {getattr(config, key)}, but PaddleNLP 2.8's "
                                          f"{table.model_type} always computes with {value}: its outputs would differ "
                                          "(not converted)")
    renamed = {hf: nlp for nlp, hf in mapping.config_keys.items()}
    values = {renamed.get(key, key): value for key, value in config_dict.items()}
    for key in mapping.defaults:
        value = getattr(config, mapping.config_keys.get(key, key), None)
        if value is not None:
            values[key] = value
    values["num_labels"] = config.num_labels
    values["id2label"] = {str(k): v for k, v in config.id2label.items()}
    values["label2id"] = {v: int(k) for k, v in config.id2label.items()}
    values["architectures"] = [paddlenlp_class(table, class_name, CONFIG_NAME)]
    values["model_type"] = table.model_type
    values.setdefault(VERSION_KEY, None)  # as PaddleNLP's save_pretrained writes it: marks the format
    return values


def write_paddlenlp_config(path: Path, values: dict[str, Any]) -> None:
    path.write_text(json.dumps(values, indent=2, sort_keys=True) + "\n")
