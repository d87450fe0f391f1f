"""Paddle ports of the encoder architectures in ``paddleport.registry``.

The configuration classes import no framework; the model classes import paddle on first use
(``paddleport.models.BertModel``), never torch or transformers.
"""

from __future__ import annotations

import importlib

from paddleport.core.configuration import AutoConfig, PretrainedConfig
from paddleport.registry import ARCHITECTURES, CLASS_ARCHITECTURE

AUTO_NAMES = ("AutoModel", "AutoModelForSequenceClassification", "AutoModelForTokenClassification",
              "AutoModelForQuestionAnswering", "AutoModelForMultipleChoice", "AutoModelForMaskedLM",
              "AutoModelForPreTraining", "AutoModelForNextSentencePrediction", "MODEL_CLASSES")
CONFIG_CLASSES = {entry.config_class.__name__: entry.config_class for entry in ARCHITECTURES.values()}

__all__ = ["AutoConfig", "PretrainedConfig", *CONFIG_CLASSES, *CLASS_ARCHITECTURE, *AUTO_NAMES]


def __getattr__(name: str):
    if name in CONFIG_CLASSES:
        return CONFIG_CLASSES[name]
    if name in CLASS_ARCHITECTURE:
        return CLASS_ARCHITECTURE[name].model_class(name)
    if name in AUTO_NAMES:
        return getattr(importlib.import_module("paddleport.models.auto"), name)
    raise AttributeError(f"module 'paddleport.models' has no attribute {name!r}")
