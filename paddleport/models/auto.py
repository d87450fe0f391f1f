"""Auto classes, named as in transformers: pick the Paddle model class from ``config.json``'s ``model_type``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from paddleport.core.configuration import AutoConfig, PretrainedConfig
from paddleport.errors import PaddleportError
from paddleport.models.modeling_utils import PretrainedModel
from paddleport.registry import ARCHITECTURES, CLASS_ARCHITECTURE, architecture


class _AutoModelBase:
    """``task`` is a key of ``paddleport.registry.TASKS``."""

    task: ClassVar[str]

    @classmethod
    def model_class_for(cls, config: PretrainedConfig) -> type[PretrainedModel]:
        entry = architecture(config.model_type)
        class_name = entry.class_name(cls.task)
        if class_name is None:
            with_task = [e.class_name(cls.task) for e in ARCHITECTURES.values() if e.class_name(cls.task)]
            raise PaddleportError(None, f"{cls.__name__}: model_type {config.model_type!r} has no such class "
                                        f"(supported: {', '.join(with_task)})")
        return entry.model_class(class_name)

    @classmethod
    def from_config(cls, config: PretrainedConfig) -> PretrainedModel:
        return cls.model_class_for(config).from_config(config)

    @classmethod
    def from_pretrained(cls, directory: str | Path, **config_overrides: Any) -> PretrainedModel:
        config = AutoConfig.from_pretrained(directory, **config_overrides)
        return cls.model_class_for(config).from_pretrained(directory, **config_overrides)


class AutoModel(_AutoModelBase):
    task = "base"


class AutoModelForSequenceClassification(_AutoModelBase):
    task = "sequence_classification"


class AutoModelForTokenClassification(_AutoModelBase):
    task = "token_classification"


class AutoModelForQuestionAnswering(_AutoModelBase):
    task = "question_answering"


class AutoModelForMultipleChoice(_AutoModelBase):
    task = "multiple_choice"


class AutoModelForMaskedLM(_AutoModelBase):
    task = "masked_lm"


class AutoModelForPreTraining(_AutoModelBase):
    task = "pretraining"


class AutoModelForNextSentencePrediction(_AutoModelBase):
    task = "next_sentence_prediction"


MODEL_CLASSES: dict[str, type[PretrainedModel]] = {
    name: entry.model_class(name) for name, entry in CLASS_ARCHITECTURE.items()}
