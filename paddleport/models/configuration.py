"""Model configurations read from a Hugging Face ``config.json``.

Framework-free on purpose: the converter validates shapes against these without importing paddle.
Keys the architecture does not use are kept verbatim, so a converted directory's ``config.json``
round-trips to Hugging Face unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

from paddleport.errors import PaddleportError

CONFIG_NAME = "config.json"

SUPPORTED_ACTIVATIONS = (
    "gelu", "gelu_new", "gelu_fast", "gelu_pytorch_tanh", "gelu_python", "gelu_accurate",
    "quick_gelu", "relu", "relu6", "silu", "swish", "tanh", "sigmoid", "mish", "linear",
)
PROBLEM_TYPES = ("regression", "single_label_classification", "multi_label_classification")


class PretrainedConfig:
    """Attribute access over the HF config dict, with the architecture's defaults filled in."""

    model_type: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, **values: Any):
        num_labels = values.pop("num_labels", None)
        self.__dict__.update(self.defaults)
        self.__dict__.update(values)
        self.model_type = type(self).model_type
        if num_labels is not None or "id2label" not in values:
            self._set_num_labels(2 if num_labels is None else int(num_labels))
        self.id2label = {int(k): v for k, v in self.id2label.items()}
        self.label2id = values.get("label2id") or {v: k for k, v in self.id2label.items()}

    def _set_num_labels(self, num_labels: int) -> None:
        current = getattr(self, "id2label", None) or {}
        if len(current) != num_labels:
            self.id2label = {i: f"LABEL_{i}" for i in range(num_labels)}
            self.label2id = {v: k for k, v in self.id2label.items()}

    @property
    def num_labels(self) -> int:
        return len(self.id2label)

    @property
    def architecture(self) -> str | None:
        architectures = getattr(self, "architectures", None) or []
        return architectures[0] if architectures else None

    # --- reading and writing -------------------------------------------------------------

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str | Path = CONFIG_NAME, **overrides: Any):
        config = cls(**{**values, **overrides})
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


CONFIG_CLASSES: dict[str, type[PretrainedConfig]] = {
    BertConfig.model_type: BertConfig,
    SqueezeBertConfig.model_type: SqueezeBertConfig,
}


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
        model_type = values.get("model_type")
        if model_type not in CONFIG_CLASSES:
            raise PaddleportError(source, f"model_type {model_type!r} is not supported "
                                          f"(supported: {', '.join(sorted(CONFIG_CLASSES))})")
        return CONFIG_CLASSES[model_type]

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str | Path = CONFIG_NAME, **overrides: Any):
        return cls.config_class_for(values, source).from_dict(values, source=source, **overrides)

    @classmethod
    def from_pretrained(cls, directory: str | Path, **overrides: Any) -> PretrainedConfig:
        path = Path(directory) / CONFIG_NAME
        return cls.from_dict(read_config_dict(path), source=path, **overrides)
