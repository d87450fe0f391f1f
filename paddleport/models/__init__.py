"""Paddle ports of BERT and SqueezeBERT.

The configuration classes import no framework; the model classes import paddle on first use
(``paddleport.models.BertModel``), never torch or transformers.
"""

from __future__ import annotations

import importlib

from paddleport.models.configuration import AutoConfig, BertConfig, PretrainedConfig, SqueezeBertConfig

_LAZY = {
    "paddleport.models.modeling_bert": ("BertModel", "BertForSequenceClassification", "BertForMaskedLM"),
    "paddleport.models.modeling_squeezebert": (
        "SqueezeBertModel", "SqueezeBertForSequenceClassification", "SqueezeBertForMaskedLM"),
    "paddleport.models.auto": ("AutoModel", "AutoModelForSequenceClassification", "AutoModelForMaskedLM",
                               "MODEL_CLASSES"),
}
_MODULE_OF = {name: module for module, names in _LAZY.items() for name in names}

__all__ = ["AutoConfig", "BertConfig", "PretrainedConfig", "SqueezeBertConfig", *_MODULE_OF]


def __getattr__(name: str):
    if name in _MODULE_OF:
        return getattr(importlib.import_module(_MODULE_OF[name]), name)
    raise AttributeError(f"module 'paddleport.models' has no attribute {name!r}")
