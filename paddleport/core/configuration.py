"""Model configurations read from a Hugging Face ``config.json``.

Framework-free on purpose: the converter validates shapes against these without importing paddle.
Keys the architecture does not use are kept verbatim, so a converted directory's ``config.json``
round-trips to Hugging Face unchanged.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from paddleport.errors import PaddleportError

CONFIG_NAME = "config.json"

SUPPORTED_ACTIVATIONS = (
    "gelu", "gelu_new", "gelu_fast", "gelu_pytorch_tanh", "gelu_python", "gelu_accurate",
    "quick_gelu", "relu", "relu6", "silu", "swish", "tanh", "sigmoid", "mish", "linear",
)
PROBLEM_TYPES = ("regression", "single_label_classification", "multi_label_classification")


@dataclass(frozen=True)
class Field:
    """What one config value may be: its JSON type and range, checked before anything is built from it."""

    kind: type  # int (JSON integers; true/false are not numbers here) or float (integers accepted too)
    minimum: float | None = None
    maximum: float | None = None
    nullable: bool = False

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is not acceptable, or None."""
        if value is None:
            return None if self.nullable else "must be set (null given)"
        kinds = (int, float) if self.kind is float else (self.kind,)
        if isinstance(value, bool) or not isinstance(value, kinds):
            return f"must be {'an integer' if self.kind is int else 'a number'}, not {json.dumps(value)}"
        if isinstance(value, float) and not math.isfinite(value):
            return f"must be finite, not {value}"
        if self.minimum is not None and value < self.minimum:
            return f"must be at least {self.minimum}, not {value}"
        if self.maximum is not None and value > self.maximum:
            return f"must be at most {self.maximum}, not {value}"
        return None


COUNT = Field(int, minimum=1)
PROBABILITY = Field(float, minimum=0.0, maximum=1.0)


def id2label_problem(value: Any) -> str | None:
    """``id2label`` is {"0": name, "1": name, ...}: keys the integers 0..n-1, names strings."""
    if value is None:
        return None
    if not isinstance(value, dict):
        return f"must be an object mapping label ids to names, not {json.dumps(value)[:60]}"
    try:
        ids = sorted(int(key) for key in value)
    except (TypeError, ValueError):
        return f"keys must be label ids 0..{len(value) - 1}, not {sorted(map(str, value))[:4]}"
    if ids != list(range(len(value))):
        return f"keys must be the label ids 0..{len(value) - 1}, not {ids[:4]}"
    if not all(isinstance(name, str) for name in value.values()):
        return "label names must be strings"
    return None


class PretrainedConfig:
    """Attribute access over the HF config dict, with the architecture's defaults filled in."""

    model_type: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {}
    # Every value a model is built from: checked (type and range) before the config object exists.
    fields: ClassVar[dict[str, Field]] = dict(
        vocab_size=COUNT, hidden_size=COUNT, num_hidden_layers=COUNT, num_attention_heads=COUNT,
        intermediate_size=COUNT, max_position_embeddings=COUNT, type_vocab_size=COUNT,
        hidden_dropout_prob=PROBABILITY, attention_probs_dropout_prob=PROBABILITY,
        classifier_dropout=Field(float, minimum=0.0, maximum=1.0, nullable=True),
        initializer_range=Field(float, minimum=0.0), layer_norm_eps=Field(float, minimum=0.0),
        pad_token_id=Field(int, minimum=0, nullable=True), num_labels=Field(int, minimum=1, nullable=True),
    )

    @classmethod
    def check_values(cls, values: dict[str, Any], source: str | Path) -> None:
        """Type and range of every declared field present in ``values``, then ``id2label``."""
        for name, spec in cls.fields.items():
            if name in values:
                problem = spec.problem(values[name])
                if problem:
                    raise PaddleportError(source, f"{name} {problem}")
        problem = id2label_problem(values.get("id2label"))
        if problem:
            raise PaddleportError(source, f"id2label {problem}")

    # Common names -> this architecture's own config.json keys (transformers' ``attribute_map``).
    attribute_map: ClassVar[dict[str, str]] = {}

    def __init__(self, **values: Any):
        num_labels = values.pop("num_labels", None)
        values = {self.attribute_map.get(key, key): value for key, value in values.items()}
        self.__dict__.update(self.defaults)
        self.__dict__.update(values)
        self.model_type = type(self).model_type
        if num_labels is not None or "id2label" not in values:
            self._set_num_labels(2 if num_labels is None else int(num_labels))
        self.id2label = {int(k): v for k, v in self.id2label.items()}
        self.label2id = values.get("label2id") or {v: k for k, v in self.id2label.items()}

    # Name components that hold the numbered layers (``encoder.layer.3.``, ``encoder.layers.3.``).
    layer_containers: ClassVar[tuple[str, ...]] = ("layer", "layers")
    # Stored tensors (name suffix) whose dimensions are config values: checked before a model is sized by them.
    tensor_dims: ClassVar[dict[str, tuple[str, ...]]] = {
        "embeddings.word_embeddings.weight": ("vocab_size", "hidden_size"),
        "embeddings.position_embeddings.weight": ("max_position_embeddings", "hidden_size"),
        "embeddings.token_type_embeddings.weight": ("type_vocab_size", "hidden_size"),
    }

    def check_against_weights(self, shapes: dict[str, tuple[int, ...]], source: str | Path) -> None:
        """The sizes a model would be built with match the stored tensors: an absurd ``num_hidden_layers``,
        ``vocab_size`` or ``hidden_size`` fails here, before a model of that size is allocated."""
        held = set()
        for name in shapes:
            parts = name.split(".")
            held.update(int(index) for container, index in zip(parts, parts[1:])
                        if container in self.layer_containers and index.isdigit())
        if held and held != set(range(self.num_hidden_layers)):
            raise PaddleportError(source, f"num_hidden_layers is {self.num_hidden_layers} but the weights hold "
                                          f"{len(held)} layers (numbered {min(held)}..{max(held)})")
        for name, shape in shapes.items():
            fields = next((dims for suffix, dims in self.tensor_dims.items() if name.endswith(suffix)), None)
            expected = tuple(getattr(self, field) for field in fields or ())
            if fields and len(shape) == len(fields) and tuple(shape) != expected:
                stated = ", ".join(f"{field} {value}" for field, value in zip(fields, expected))
                raise PaddleportError(source, f"{stated} disagree with {name} of shape {list(shape)} in the weights")

    def __getattr__(self, name: str) -> Any:
        """Only called for names not set: an ``attribute_map`` alias reads the key it stands for."""
        mapped = type(self).attribute_map.get(name)
        if mapped is None:
            raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")
        return getattr(self, mapped)

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(type(self).attribute_map.get(name, name), value)

    def _set_num_labels(self, num_labels: int) -> None:
        current = getattr(self, "id2label", None) or {}
        if len(current) != num_labels:
            self.id2label = {i: f"LABEL_{i}" for i in range(num_labels)}
            self.label2id = {v: k for k, v in self.id2label.items()}

    @property
    def num_labels(self) -> int:
        return len(self.id2label)

    @property
    def layer_outputs(self) -> int:
        """How many hidden states the encoder layers add after the embeddings' (one per layer application)."""
        return self.num_hidden_layers

    @property
    def max_input_length(self) -> int:
        """The longest input the position embeddings cover."""
        return self.max_position_embeddings

    @property
    def architecture(self) -> str | None:
        architectures = getattr(self, "architectures", None) or []
        return architectures[0] if architectures else None

    # --- reading and writing -------------------------------------------------------------

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str | Path = CONFIG_NAME, **overrides: Any):
        values = {**values, **overrides}
        cls.check_values(values, source)
        config = cls(**values)
        config.validate(source)
        return config

    @classmethod
    def from_pretrained(cls, directory: str | Path, **overrides: Any):
        path = Path(directory) / CONFIG_NAME
        return cls.from_dict(read_config_dict(path), source=path, **overrides)

    def to_dict(self) -> dict[str, Any]:
        values = {k: v for k, v in self.__dict__.items() if not k.startswith("_")}
        values["id2label"] = {str(k): v for k, v in self.id2label.items()}
        return values

    def save_pretrained(self, directory: str | Path) -> Path:
        path = Path(directory) / CONFIG_NAME
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")
        return path

    # --- validation ---------------------------------------------------------------------

    def validate(self, source: str | Path) -> None:
        """Reject options the Paddle models do not implement, instead of silently ignoring them."""
        if self.hidden_act not in SUPPORTED_ACTIVATIONS:
            raise PaddleportError(source, f"hidden_act {self.hidden_act!r} is not supported "
                                          f"(supported: {', '.join(SUPPORTED_ACTIVATIONS)})")
        if self.hidden_size % self.num_attention_heads:
            raise PaddleportError(source, f"hidden_size {self.hidden_size} is not a multiple of "
                                          f"num_attention_heads {self.num_attention_heads}")
        problem_type = getattr(self, "problem_type", None)
        if problem_type is not None and problem_type not in PROBLEM_TYPES:
            raise PaddleportError(source, f"problem_type {problem_type!r} is not one of {', '.join(PROBLEM_TYPES)}")
        for flag in ("is_decoder", "add_cross_attention"):
            if getattr(self, flag, False):
                raise PaddleportError(source, f"{flag}=true is not supported: paddleport ports encoders only")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({json.dumps(self.to_dict(), sort_keys=True)})"


class BertConfig(PretrainedConfig):
    model_type = "bert"
    defaults = dict(
        vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
        intermediate_size=3072, hidden_act="gelu", hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1, max_position_embeddings=512, type_vocab_size=2,
        initializer_range=0.02, layer_norm_eps=1e-12, pad_token_id=0,
        position_embedding_type="absolute", classifier_dropout=None, problem_type=None,
        tie_word_embeddings=True,
    )

    def validate(self, source: str | Path) -> None:
        super().validate(source)
        if self.position_embedding_type != "absolute":
            raise PaddleportError(source, f"position_embedding_type {self.position_embedding_type!r} is not "
                                          "supported (only 'absolute')")


class RobertaConfig(BertConfig):
    """BERT's options; positions count from ``pad_token_id + 1`` (so published configs hold 514 of them)."""

    model_type = "roberta"
    defaults = dict(BertConfig.defaults, vocab_size=50265, pad_token_id=1, bos_token_id=0, eos_token_id=2)

    @property
    def max_input_length(self) -> int:
        """Positions ``pad_token_id + 1`` onwards: roberta-base's 514 cover 512 tokens."""
        return self.max_position_embeddings - self.pad_token_id - 1


class XLMRobertaConfig(RobertaConfig):
    model_type = "xlm-roberta"
    defaults = dict(RobertaConfig.defaults, vocab_size=30522)


class DistilBertConfig(PretrainedConfig):
    """DistilBERT's own key names (``dim``, ``n_layers``...), readable under the common ones."""

    model_type = "distilbert"
    attribute_map = {
        "hidden_size": "dim", "num_attention_heads": "n_heads", "num_hidden_layers": "n_layers",
        "intermediate_size": "hidden_dim", "hidden_act": "activation", "hidden_dropout_prob": "dropout",
        "attention_probs_dropout_prob": "attention_dropout",
    }
    defaults = dict(
        vocab_size=30522, max_position_embeddings=512, sinusoidal_pos_embds=False, n_layers=6, n_heads=12,
        dim=768, hidden_dim=3072, dropout=0.1, attention_dropout=0.1, activation="gelu", initializer_range=0.02,
        qa_dropout=0.1, seq_classif_dropout=0.2, pad_token_id=0, problem_type=None, tie_word_embeddings=True,
    )
    fields = {**PretrainedConfig.fields, **dict.fromkeys(("dim", "n_layers", "n_heads", "hidden_dim"), COUNT),
              **dict.fromkeys(("dropout", "attention_dropout", "qa_dropout", "seq_classif_dropout"), PROBABILITY)}


class ElectraConfig(BertConfig):
    """BERT's options plus ``embedding_size`` (projected to ``hidden_size`` when they differ) and the
    multiple-choice head's sequence summary."""

    model_type = "electra"
    defaults = dict(
        BertConfig.defaults, embedding_size=128, hidden_size=256, num_attention_heads=4, intermediate_size=1024,
        summary_type="first", summary_use_proj=True, summary_activation="gelu", summary_proj_to_labels=False,
        summary_first_dropout=0.0, summary_last_dropout=0.1,
    )
    fields = {**BertConfig.fields, "embedding_size": COUNT, "summary_first_dropout": PROBABILITY,
              "summary_last_dropout": PROBABILITY}
    tensor_dims = {name: (rows, "embedding_size") for name, (rows, _) in BertConfig.tensor_dims.items()}
    SUMMARY_TYPES = ("first", "last", "mean")

    def validate(self, source: str | Path) -> None:
        super().validate(source)
        if self.summary_type not in self.SUMMARY_TYPES:
            raise PaddleportError(source, f"summary_type {self.summary_type!r} is not supported "
                                          f"(supported: {', '.join(self.SUMMARY_TYPES)})")
        if self.summary_activation and self.summary_activation not in SUPPORTED_ACTIVATIONS:
            raise PaddleportError(source, f"summary_activation {self.summary_activation!r} is not supported")

    @property
    def summary_size(self) -> int:
        """Width of the multiple-choice summary projection's output."""
        return self.num_labels if self.summary_proj_to_labels and self.num_labels > 0 else self.hidden_size


class AlbertConfig(BertConfig):
    """BERT's options plus factorised embeddings (``embedding_size``) and shared layer groups: ``num_hidden_layers``
    applications of ``num_hidden_groups`` groups of ``inner_group_num`` layers each."""

    model_type = "albert"
    defaults = dict(
        BertConfig.defaults, vocab_size=30000, embedding_size=128, hidden_size=4096, num_attention_heads=64,
        intermediate_size=16384, num_hidden_groups=1, inner_group_num=1, hidden_act="gelu_new",
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, classifier_dropout_prob=0.1, bos_token_id=2,
        eos_token_id=3,
    )
    fields = {**BertConfig.fields, **dict.fromkeys(("embedding_size", "num_hidden_groups", "inner_group_num"), COUNT),
              "classifier_dropout_prob": PROBABILITY}
    tensor_dims = {name: (rows, "embedding_size") for name, (rows, _) in BertConfig.tensor_dims.items()}

    def validate(self, source: str | Path) -> None:
        super().validate(source)
        if not 1 <= self.num_hidden_groups <= self.num_hidden_layers:
            raise PaddleportError(source, f"num_hidden_groups {self.num_hidden_groups} must be between 1 and "
                                          f"num_hidden_layers {self.num_hidden_layers}")
        if self.inner_group_num < 1:
            raise PaddleportError(source, f"inner_group_num {self.inner_group_num} must be at least 1")

    @property
    def layer_outputs(self) -> int:
        """Each of the ``num_hidden_layers`` applications runs ``inner_group_num`` layers, each adding a state."""
        return self.num_hidden_layers * self.inner_group_num

    def group_of_layer(self, layer: int) -> int:
        """The shared group the ``layer``-th application runs (transformers' AlbertTransformer)."""
        return int(layer / (self.num_hidden_layers / self.num_hidden_groups))


class ErnieConfig(BertConfig):
    """BERT's options plus ERNIE 2.0/3.0's task-type embeddings: ``use_task_id`` adds a
    ``task_type_vocab_size`` x ``hidden_size`` embedding of the ``task_type_ids`` input to the embeddings' sum."""

    model_type = "ernie"
    defaults = dict(BertConfig.defaults, task_type_vocab_size=3, use_task_id=False)
    fields = {**BertConfig.fields, "task_type_vocab_size": COUNT}
    tensor_dims = {**BertConfig.tensor_dims,
                   "embeddings.task_type_embeddings.weight": ("task_type_vocab_size", "hidden_size")}

    def validate(self, source: str | Path) -> None:
        super().validate(source)
        if not isinstance(self.use_task_id, bool):
            raise PaddleportError(source, f"use_task_id must be true or false, not {json.dumps(self.use_task_id)}")


class SqueezeBertConfig(PretrainedConfig):
    model_type = "squeezebert"
    defaults = dict(
        vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
        intermediate_size=3072, hidden_act="gelu", hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1, max_position_embeddings=512, type_vocab_size=2,
        initializer_range=0.02, layer_norm_eps=1e-12, pad_token_id=0, embedding_size=768,
        q_groups=4, k_groups=4, v_groups=4, post_attention_groups=1, intermediate_groups=4,
        output_groups=4, problem_type=None, tie_word_embeddings=True,
    )
    fields = {**PretrainedConfig.fields, **dict.fromkeys(
        ("embedding_size", "q_groups", "k_groups", "v_groups", "post_attention_groups", "intermediate_groups",
         "output_groups"), COUNT)}

    def validate(self, source: str | Path) -> None:
        super().validate(source)
        if self.embedding_size != self.hidden_size:
            raise PaddleportError(source, f"embedding_size {self.embedding_size} != hidden_size "
                                          f"{self.hidden_size} is not supported (as in transformers)")
        channels = {"q_groups": self.hidden_size, "k_groups": self.hidden_size, "v_groups": self.hidden_size,
                    "post_attention_groups": self.hidden_size, "intermediate_groups": self.hidden_size,
                    "output_groups": self.intermediate_size}
        for name, in_channels in channels.items():
            groups = getattr(self, name)
            if groups < 1 or in_channels % groups:
                raise PaddleportError(source, f"{name}={groups} does not divide its {in_channels} input channels")


class DebertaV2Config(PretrainedConfig):
    """DeBERTa-v2/v3 (``model_type`` "deberta-v2"): disentangled attention over relative positions (``pos_att_type``
    c2p and/or p2c, log buckets when ``position_buckets`` > 0, ``share_att_key``, ``norm_rel_ebd``), the first
    layer's ``ConvLayer`` (``conv_kernel_size`` > 0), optional absolute positions (``position_biased_input``) and
    token types (``type_vocab_size`` 0: none), ``embedding_size`` projected to ``hidden_size`` (``embed_proj``).

    Options transformers reads with ``getattr`` defaults are defaulted here alike; ``embedding_size`` and
    ``pooler_hidden_size`` default to ``hidden_size`` without being written into the config."""

    model_type = "deberta-v2"
    defaults = dict(
        vocab_size=128100, hidden_size=1536, num_hidden_layers=24, num_attention_heads=24, intermediate_size=6144,
        hidden_act="gelu", hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1, max_position_embeddings=512,
        type_vocab_size=0, initializer_range=0.02, layer_norm_eps=1e-7, relative_attention=False,
        max_relative_positions=-1, pad_token_id=0, position_biased_input=True, pos_att_type=None, pooler_dropout=0.0,
        pooler_hidden_act="gelu", legacy=True, tie_word_embeddings=True, problem_type=None, share_att_key=False,
        position_buckets=-1, norm_rel_ebd="none", conv_kernel_size=0, conv_groups=1, conv_act="tanh",
        cls_dropout=None,
    )
    fields = {**PretrainedConfig.fields, "type_vocab_size": Field(int, minimum=0), "embedding_size": COUNT,
              "pooler_hidden_size": COUNT, "position_buckets": Field(int), "max_relative_positions": Field(int),
              "conv_kernel_size": Field(int, minimum=0), "conv_groups": COUNT, "pooler_dropout": PROBABILITY,
              "cls_dropout": Field(float, minimum=0.0, maximum=1.0, nullable=True)}
    tensor_dims = {name: (rows, "embedding_size") for name, (rows, _) in PretrainedConfig.tensor_dims.items()}
    ATTENTION_TYPES = ("c2p", "p2c")
    REL_EMBEDDING_NORMS = ("none", "layer_norm")
    # transformers reads these with getattr(config, name, config.hidden_size)
    HIDDEN_SIZED = ("embedding_size", "pooler_hidden_size")

    def __getattr__(self, name: str) -> Any:
        if name in self.HIDDEN_SIZED:
            return self.hidden_size
        return super().__getattr__(name)

    @property
    def position_attention_types(self) -> list[str]:
        """``pos_att_type`` as a list (config.json may hold "p2c|c2p" or ["p2c", "c2p"])."""
        kinds = self.pos_att_type or []
        if isinstance(kinds, str):
            kinds = kinds.lower().split("|")
        return [kind.strip() for kind in kinds]

    @property
    def rel_embedding_norms(self) -> list[str]:
        return [norm.strip() for norm in str(self.norm_rel_ebd).lower().split("|")]

    @property
    def relative_span(self) -> int:
        """Relative distances the attention embeds on each side: ``position_buckets`` when bucketed, else
        ``max_relative_positions`` (``max_position_embeddings`` when below 1)."""
        if self.position_buckets > 0:
            return self.position_buckets
        return self.max_relative_positions if self.max_relative_positions >= 1 else self.max_position_embeddings

    def validate(self, source: str | Path) -> None:
        super().validate(source)
        unknown = [kind for kind in self.position_attention_types if kind not in self.ATTENTION_TYPES]
        if unknown:
            raise PaddleportError(source, f"pos_att_type {unknown[0]!r} is not supported by DeBERTa-v2 "
                                          f"(supported: {', '.join(self.ATTENTION_TYPES)})")
        unknown = [norm for norm in self.rel_embedding_norms if norm not in self.REL_EMBEDDING_NORMS]
        if unknown:
            raise PaddleportError(source, f"norm_rel_ebd {unknown[0]!r} is not supported "
                                          f"(supported: {', '.join(self.REL_EMBEDDING_NORMS)})")
        for name in ("conv_act", "pooler_hidden_act"):
            if getattr(self, name) not in SUPPORTED_ACTIVATIONS:
                raise PaddleportError(source, f"{name} {getattr(self, name)!r} is not supported "
                                              f"(supported: {', '.join(SUPPORTED_ACTIVATIONS)})")
        if self.conv_kernel_size > 0 and (self.conv_kernel_size % 2 == 0 or self.hidden_size % self.conv_groups):
            raise PaddleportError(source, f"conv_kernel_size {self.conv_kernel_size} must be odd and conv_groups "
                                          f"{self.conv_groups} must divide hidden_size {self.hidden_size} "
                                          "(the ConvLayer keeps the sequence length)")
        if self.pooler_hidden_size != self.hidden_size:
            raise PaddleportError(source, f"pooler_hidden_size {self.pooler_hidden_size} != hidden_size "
                                          f"{self.hidden_size} is not supported (transformers' ContextPooler feeds "
                                          "a hidden_size classifier)")
        head_size = getattr(self, "attention_head_size", None)
        if head_size is not None and head_size * self.num_attention_heads != self.hidden_size:
            raise PaddleportError(source, f"attention_head_size {head_size} x num_attention_heads "
                                          f"{self.num_attention_heads} != hidden_size {self.hidden_size} is not "
                                          "supported")


def read_config_dict(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise PaddleportError(path, "config.json is missing")
    try:
        values = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise PaddleportError(path, f"config.json is not valid JSON ({error})") from None
    if not isinstance(values, dict):
        raise PaddleportError(path, "config.json does not hold a JSON object")
    return values


class AutoConfig:
    """Picks the configuration class from ``model_type``."""

    @staticmethod
    def config_class_for(values: dict[str, Any], source: str | Path) -> type[PretrainedConfig]:
        from paddleport.registry import architecture  # the registry imports this module

        return architecture(values.get("model_type"), source).config_class

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str | Path = CONFIG_NAME, **overrides: Any):
        return cls.config_class_for(values, source).from_dict(values, source=source, **overrides)

    @classmethod
    def from_pretrained(cls, directory: str | Path, **overrides: Any) -> PretrainedConfig:
        path = Path(directory) / CONFIG_NAME
        return cls.from_dict(read_config_dict(path), source=path, **overrides)


def max_input_length(values: dict[str, Any], source: str | Path = CONFIG_NAME) -> int:
    """The longest input the model of a ``config.json`` takes (RoBERTa's positions start after the padding
    index: roberta-base's 514 positions take 512 tokens). A dict without a model type (a unit's bare
    ``{"max_position_embeddings": n}``) has all its positions; an unsupported type is refused elsewhere."""
    if "model_type" not in values:
        return int(values.get("max_position_embeddings", 512))
    return AutoConfig.from_dict(values, source=source).max_input_length
