"""The one list of architectures: every other part of paddleport reads it from here.

An architecture is three things: its Paddle model file (``paddleport/models/modeling_<arch>.py``, mirroring
transformers'), its declarative conversion table (``paddleport/convert/<arch>.py``) and one :class:`Architecture`
entry below, which names its config class, its model classes and heads (from the table's class layouts), its base
prefix, the inputs its models take, and which parameters are layer norms, biases, heads or tied.

Framework-free: reading the registry imports neither paddle nor torch (the model classes load on first use).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from paddleport.convert.albert import ALBERT
from paddleport.convert.bert import BERT
from paddleport.convert.deberta_v2 import DEBERTA_V2
from paddleport.convert.distilbert import DISTILBERT
from paddleport.convert.electra import ELECTRA
from paddleport.convert.ernie import ERNIE
from paddleport.convert.roberta import ROBERTA, XLM_ROBERTA
from paddleport.convert.squeezebert import SQUEEZEBERT
from paddleport.convert.table import ArchitectureTable, ParamSpec
from paddleport.core.configuration import (
    AlbertConfig, BertConfig, DebertaV2Config, DistilBertConfig, ElectraConfig, ErnieConfig, PretrainedConfig,
    RobertaConfig, SqueezeBertConfig, XLMRobertaConfig,
)
from paddleport.errors import PaddleportError

# The model inputs of a BERT-style encoder, in the order exported programs take them.
WITH_TOKEN_TYPES = ("input_ids", "attention_mask", "token_type_ids")
WITHOUT_TOKEN_TYPES = ("input_ids", "attention_mask")
# ERNIE 2.0/3.0: a task type per token, when the config's use_task_id says the model has task-type embeddings.
WITH_TASK_TYPES = (*WITH_TOKEN_TYPES, "task_type_ids")

# Class-name endings transformers uses per task ("" = the bare encoder), and the Auto class of each.
TASKS = {
    "base": "Model",
    "sequence_classification": "ForSequenceClassification",
    "token_classification": "ForTokenClassification",
    "question_answering": "ForQuestionAnswering",
    "multiple_choice": "ForMultipleChoice",
    "masked_lm": "ForMaskedLM",
    "pretraining": "ForPreTraining",
    "next_sentence_prediction": "ForNextSentencePrediction",
}


@dataclass(frozen=True)
class AdapterSite:
    """One place of a bottleneck adapter (paddleport.peft.bottleneck): the module holding ``adapters.<name>``, the
    module whose forward computes the site (relative to the layer, "" being the layer itself; full names in a
    plan), and the name of the forward that replaces it (``FORWARDS`` in ``peft.torch_bottleneck`` /
    ``peft.paddle_bottleneck``). A holder the model lacks is added there (AdapterHub's ``BottleneckLayer``)."""

    holder: str
    patched: str
    forward: str


@dataclass(frozen=True)
class AdapterLayout:
    """Where an architecture's layers take bottleneck adapters (AdapterHub's integration of it, or paddleport's
    own): ``layer`` matches one parameter name per encoder layer, its group ``layer`` the layer's module name."""

    layer: str
    mh_adapter: AdapterSite  # the attention sub-block's adapter
    output_adapter: AdapterSite  # the feed-forward sub-block's adapter


# AdapterHub's BERT-style integrations (and DeBERTa-v2's): the adapters in the SelfOutput / Output blocks
BERT_STYLE_ADAPTERS = AdapterLayout(r"(?P<layer>(?:.+\.)?encoder\.layer\.\d+)\.output\.dense\.weight",
                                    AdapterSite("attention.output", "attention.output", "output_block"),
                                    AdapterSite("output", "output", "output_block"))


@dataclass(frozen=True)
class Architecture:
    """One architecture, as every part of paddleport sees it."""

    config_class: type[PretrainedConfig]
    table: ArchitectureTable
    class_prefix: str  # "Bert": class names are prefix + TASKS[task]
    modeling_module: str  # the Paddle model file
    # Every input the models may take, in the order exported programs take them; ``inputs_for(config)`` says
    # which of them a given config's models take.
    input_names: tuple[str, ...]
    # The parameter (HF name, prefixed class) whose length is the label count of a sequence classifier.
    labels_parameter: str
    # Inputs that only some configs' models take: name -> whether this config's do (ERNIE's task types).
    input_conditions: dict[str, Callable[[PretrainedConfig], bool]] = field(default_factory=dict)
    # Why prompt tuning / p-tuning cannot adapt it (None: they can). peft prepends the virtual tokens as input
    # embeddings, so the Paddle model must take ``inputs_embeds`` as transformers' does; a new entry opts in.
    no_prompt_learning: str | None = "its Paddle model takes no inputs_embeds (paddleport has not added them)"
    # Where bottleneck adapters go in its layers (None: they cannot adapt it); a new entry opts in.
    bottleneck_layout: AdapterLayout | None = None

    @property
    def no_bottleneck_adapters(self) -> str | None:
        """Why bottleneck adapters cannot adapt it (None: they can)."""
        return None if self.bottleneck_layout else "paddleport has no adapter layout for it (bottleneck_layout)"

    @property
    def model_type(self) -> str:
        return self.table.model_type

    @property
    def base_prefix(self) -> str:
        return self.table.base_prefix

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.table.classes)

    def inputs_for(self, config: PretrainedConfig) -> tuple[str, ...]:
        """The inputs the models of ``config`` take, in the order exported programs take them."""
        return tuple(name for name in self.input_names if self.input_conditions.get(name, _always)(config))

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


def _always(config: PretrainedConfig) -> bool:
    return True


ARCHITECTURES: dict[str, Architecture] = {entry.model_type: entry for entry in (
    Architecture(BertConfig, BERT, "Bert", "paddleport.models.modeling_bert", WITH_TOKEN_TYPES,
                 "classifier.bias", no_prompt_learning=None, bottleneck_layout=BERT_STYLE_ADAPTERS),
    Architecture(SqueezeBertConfig, SQUEEZEBERT, "SqueezeBert", "paddleport.models.modeling_squeezebert",
                 WITH_TOKEN_TYPES, "classifier.bias", no_prompt_learning=None,
                 # paddleport's own layout (AdapterHub has no SqueezeBERT): BERT's places, in the conv blocks
                 bottleneck_layout=AdapterLayout(
                     r"(?P<layer>(?:.+\.)?encoder\.layers\.\d+)\.output\.layernorm\.weight",
                     AdapterSite("post_attention", "post_attention", "channel_output_block"),
                     AdapterSite("output", "output", "channel_output_block"))),
    Architecture(RobertaConfig, ROBERTA, "Roberta", "paddleport.models.modeling_roberta", WITH_TOKEN_TYPES,
                 "classifier.out_proj.bias", no_prompt_learning=None, bottleneck_layout=BERT_STYLE_ADAPTERS),
    Architecture(XLMRobertaConfig, XLM_ROBERTA, "XLMRoberta", "paddleport.models.modeling_xlm_roberta",
                 WITH_TOKEN_TYPES, "classifier.out_proj.bias", no_prompt_learning=None,
                 bottleneck_layout=BERT_STYLE_ADAPTERS),
    Architecture(DistilBertConfig, DISTILBERT, "DistilBert", "paddleport.models.modeling_distilbert",
                 WITHOUT_TOKEN_TYPES, "classifier.bias", no_prompt_learning=None,
                 # AdapterHub's TransformerBlock integration: before sa_layer_norm and output_layer_norm
                 bottleneck_layout=AdapterLayout(
                     r"(?P<layer>(?:.+\.)?transformer\.layer\.\d+)\.output_layer_norm\.weight",
                     AdapterSite("attention_adapters", "", "distilbert_block"),
                     AdapterSite("output_adapters", "", "distilbert_block"))),
    Architecture(ElectraConfig, ELECTRA, "Electra", "paddleport.models.modeling_electra", WITH_TOKEN_TYPES,
                 "classifier.out_proj.bias", no_prompt_learning=None, bottleneck_layout=BERT_STYLE_ADAPTERS),
    Architecture(AlbertConfig, ALBERT, "Albert", "paddleport.models.modeling_albert", WITH_TOKEN_TYPES,
                 "classifier.bias", no_prompt_learning=None,
                 # AdapterHub's integration: one adapter set per shared layer, applied wherever it is
                 bottleneck_layout=AdapterLayout(
                     r"(?P<layer>(?:.+\.)?albert_layer_groups\.\d+\.albert_layers\.\d+)\.full_layer_layer_norm"
                     r"\.weight",
                     AdapterSite("attention.attention_adapters", "attention", "albert_attention"),
                     AdapterSite("output_adapters", "", "albert_layer"))),
    Architecture(ErnieConfig, ERNIE, "Ernie", "paddleport.models.modeling_ernie", WITH_TASK_TYPES,
                 "classifier.bias", input_conditions={"task_type_ids": lambda config: config.use_task_id},
                 # under prompt learning the task types are left out (all zero) or refused: prompt.ZERO_ONLY_INPUTS
                 no_prompt_learning=None, bottleneck_layout=BERT_STYLE_ADAPTERS),
    # DeBERTa-v3 (type_vocab_size 0) has no token types: transformers accepts and ignores token_type_ids, an
    # exported program would have an input nothing reads
    Architecture(DebertaV2Config, DEBERTA_V2, "DebertaV2", "paddleport.models.modeling_deberta_v2",
                 WITH_TOKEN_TYPES, "classifier.bias",
                 input_conditions={"token_type_ids": lambda config: config.type_vocab_size > 0},
                 no_prompt_learning=None, bottleneck_layout=BERT_STYLE_ADAPTERS),
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
    """The inputs the models of this config take (``config.json``'s dict or a config object)."""
    if isinstance(config, dict):
        config = architecture(config.get("model_type")).config_class(**config)
    return architecture(config.model_type).inputs_for(config)


def model_inputs(batch: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    """The arrays of ``batch`` (numpy, by input name) a model taking ``names`` is fed. A tokenizer gives no task
    types: a batch without ``task_type_ids`` feeds zeros, the task type transformers' ERNIE uses when none is passed
    (PaddleNLP's fills in its config's ``task_id``, 0 by default)."""
    import numpy as np

    inputs = {name: batch[name] for name in names if name in batch}
    if "task_type_ids" in names and "task_type_ids" not in batch:
        inputs["task_type_ids"] = np.zeros_like(batch["input_ids"])
    return {name: inputs[name] for name in names}


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
