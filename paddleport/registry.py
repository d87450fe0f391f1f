"""The one list of architectures: every other part of paddleport reads it from here.

An architecture is three things: its Paddle model file (``paddleport/models/modeling_<arch>.py``, mirroring
transformers'), its declarative conversion table (``paddleport/convert/<arch>.py``) and one :class:`Architecture`
entry below, which names its config class, its model classes and heads (from the table's class layouts), its base
prefix, the inputs its models take, and which parameters are layer norms, biases, heads or tied.

Framework-free: reading the registry imports neither paddle nor torch (the model classes load on first use).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from paddleport.convert.albert import ALBERT
from paddleport.convert.bert import BERT
from paddleport.convert.distilbert import DISTILBERT
from paddleport.convert.electra import ELECTRA
from paddleport.convert.roberta import ROBERTA, XLM_ROBERTA
from paddleport.convert.squeezebert import SQUEEZEBERT
from paddleport.convert.table import ArchitectureTable, ParamSpec
from paddleport.core.configuration import (
    AlbertConfig, BertConfig, DistilBertConfig, ElectraConfig, PretrainedConfig, RobertaConfig, SqueezeBertConfig, XLMRobertaConfig,
)
from paddleport.errors import PaddleportError

# The model inputs of a BERT-style encoder, in the order exported programs take them.
WITH_TOKEN_TYPES = ("input_ids", "attention_mask", "token_type_ids")
WITHOUT_TOKEN_TYPES = ("input_ids", "attention_mask")

# Class-name endings transformers uses per task ("" = the bare encoder), and the Auto class of each.
TASKS = {
    "base": "Model",
    "sequence_classification": "ForSequenceClassification",
    "token_classification": "ForTokenClassification",
    "question_answering": "ForQuestionAnswering",
    "multiple_choice": "ForMultipleChoice",
    "masked_lm": "ForMaskedLM",
    "pretraining": "ForPreTraining",
}


@dataclass(frozen=True)
class Architecture:
    """One architecture, as every part of paddleport sees it."""

    config_class: type[PretrainedConfig]
    table: ArchitectureTable
    class_prefix: str  # "Bert": class names are prefix + TASKS[task]
    modeling_module: str  # the Paddle model file
    input_names: tuple[str, ...]
    # The parameter (HF name, prefixed class) whose length is the label count of a sequence classifier.
    labels_parameter: str

    @property
    def model_type(self) -> str:
        return self.table.model_type

    @property
    def base_prefix(self) -> str:
        return self.table.base_prefix

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.table.classes)

    @property
    def has_token_types(self) -> bool:
        return "token_type_ids" in self.input_names

    def class_name(self, task: str) -> str | None:
        """The class of ``task`` (a key of TASKS), None where this architecture has none."""
        name = self.class_prefix + TASKS[task]
        return name if name in self.table.classes else None

    def task_of(self, class_name: str) -> str:
        return next(task for task, suffix in TASKS.items() if class_name == self.class_prefix + suffix)

    def model_class(self, class_name: str):
        """The Paddle model class (imports paddle)."""
        if class_name not in self.table.classes:
            raise KeyError(class_name)
        return getattr(importlib.import_module(self.modeling_module), class_name)

    def parameter_kinds(self, config: PretrainedConfig) -> dict[str, str]:
        """HF name (as in a head class) -> 'layernorm', 'bias' or 'weight': how a fresh one is initialised."""
        return {spec.hf_name: spec.transform.kind for spec in self.table.all_specs(config)}


ARCHITECTURES: dict[str, Architecture] = {entry.model_type: entry for entry in (
    Architecture(BertConfig, BERT, "Bert", "paddleport.models.modeling_bert", WITH_TOKEN_TYPES,
                 "classifier.bias"),
    Architecture(SqueezeBertConfig, SQUEEZEBERT, "SqueezeBert", "paddleport.models.modeling_squeezebert",
                 WITH_TOKEN_TYPES, "classifier.bias"),
    Architecture(RobertaConfig, ROBERTA, "Roberta", "paddleport.models.modeling_roberta", WITH_TOKEN_TYPES,
                 "classifier.out_proj.bias"),
    Architecture(XLMRobertaConfig, XLM_ROBERTA, "XLMRoberta", "paddleport.models.modeling_xlm_roberta",
                 WITH_TOKEN_TYPES, "classifier.out_proj.bias"),
    Architecture(DistilBertConfig, DISTILBERT, "DistilBert", "paddleport.models.modeling_distilbert",
                 WITHOUT_TOKEN_TYPES, "classifier.bias"),
    Architecture(ElectraConfig, ELECTRA, "Electra", "paddleport.models.modeling_electra", WITH_TOKEN_TYPES,
                 "classifier.out_proj.bias"),
    Architecture(AlbertConfig, ALBERT, "Albert", "paddleport.models.modeling_albert", WITH_TOKEN_TYPES,
                 "classifier.bias"),
)}

# Every class name paddleport converts and runs, and the architecture it belongs to.
CLASS_ARCHITECTURE: dict[str, Architecture] = {
    name: entry for entry in ARCHITECTURES.values() for name in entry.class_names}
SUPPORTED_CLASSES: tuple[str, ...] = tuple(CLASS_ARCHITECTURE)
MODEL_TYPES: tuple[str, ...] = tuple(ARCHITECTURES)


def supported_text() -> str:
    """The supported architectures, for --help texts and error messages."""
    return ", ".join(SUPPORTED_CLASSES)


def help_epilog() -> str:
    """The line every command's --help ends with."""
    return (f"supported architectures: {', '.join(MODEL_TYPES)}, with every head "
            "(paddleport convert --help lists the classes)")


def architecture(model_type: str | None, source: str | Path | None = None) -> Architecture:
    if model_type not in ARCHITECTURES:
        raise PaddleportError(source, f"model_type {model_type!r} is not supported "
                                      f"(supported: {', '.join(MODEL_TYPES)})")
    return ARCHITECTURES[model_type]


def architecture_of_class(class_name: str | None, source: str | Path | None = None) -> Architecture:
    if class_name not in CLASS_ARCHITECTURE:
        raise PaddleportError(source, f"architecture {class_name!r} is not supported "
                                      f"(supported: {supported_text()})")
    return CLASS_ARCHITECTURE[class_name]


def input_names_of(config: dict[str, Any] | PretrainedConfig) -> tuple[str, ...]:
    """The inputs the models of this config's architecture take."""
    model_type = config.get("model_type") if isinstance(config, dict) else config.model_type
    return architecture(model_type).input_names


def table_for(config: PretrainedConfig) -> ArchitectureTable:
    return architecture(config.model_type).table


def resolve_class(config: PretrainedConfig, requested: str | None, source: str | Path) -> str:
    """The target class: ``--arch`` if given, else the checkpoint's own ``architectures[0]``."""
    table = table_for(config)
    class_name = requested or config.architecture or table.base_class()
    if class_name not in table.classes:
        raise PaddleportError(source, f"architecture {class_name!r} is not supported for model_type "
                                      f"{config.model_type!r} (supported: {supported_text()})")
    return class_name


def parameter_specs(config: dict | PretrainedConfig, architecture: str | None = None) -> list[ParamSpec]:
    """Every parameter of the Paddle model ``architecture``: HF name, Paddle name, typed transform, shapes."""
    from paddleport.core.configuration import AutoConfig

    if isinstance(config, dict):
        config = AutoConfig.from_dict(config)
    class_name = resolve_class(config, architecture, "config.json")
    return table_for(config).class_specs(config, class_name)
