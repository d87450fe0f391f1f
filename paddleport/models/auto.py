"""Auto classes: pick the Paddle model class from ``config.json``'s ``model_type``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from paddleport.models import modeling_bert, modeling_squeezebert
from paddleport.models.configuration import AutoConfig, PretrainedConfig
from paddleport.models.modeling_utils import PretrainedModel


class _AutoModelBase:
    """``task_suffix`` is the class-name ending transformers uses for the task ('' for the bare model)."""

    task_suffix: ClassVar[str]
    model_prefixes: ClassVar[dict[str, tuple[Any, str]]] = {
        "bert": (modeling_bert, "Bert"),
        "squeezebert": (modeling_squeezebert, "SqueezeBert"),
    }

    @classmethod
    def model_class_for(cls, config: PretrainedConfig) -> type[PretrainedModel]:
        module, prefix = cls.model_prefixes[config.model_type]
        return getattr(module, f"{prefix}{cls.task_suffix}")

    @classmethod
    def from_config(cls, config: PretrainedConfig) -> PretrainedModel:
        return cls.model_class_for(config).from_config(config)

    @classmethod
    def from_pretrained(cls, directory: str | Path, **config_overrides: Any) -> PretrainedModel:
        config = AutoConfig.from_pretrained(directory, **config_overrides)
        return cls.model_class_for(config).from_pretrained(directory, **config_overrides)


class AutoModel(_AutoModelBase):
    task_suffix = "Model"


class AutoModelForSequenceClassification(_AutoModelBase):
    task_suffix = "ForSequenceClassification"


class AutoModelForMaskedLM(_AutoModelBase):
    task_suffix = "ForMaskedLM"


MODEL_CLASSES: dict[str, type[PretrainedModel]] = {
    cls.__name__: cls
    for module in (modeling_bert, modeling_squeezebert)
    for cls in vars(module).values()
    if isinstance(cls, type) and issubclass(cls, PretrainedModel) and cls.__module__ == module.__name__
    and not cls.__name__.endswith("PreTrainedModel")
}
