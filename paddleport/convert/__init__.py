"""Checkpoint conversion between Hugging Face (torch layout) and Paddle, table-driven.

Converting a safetensors checkpoint imports neither torch nor paddle. The names below load on first use, so that
``paddleport.registry`` can import the architectures' tables (``paddleport.convert.<arch>``) without a cycle.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "ConversionReport": "paddleport.convert.converter",
    "convert_checkpoint": "paddleport.convert.converter",
    "ParamSpec": "paddleport.convert.table",
    "parameter_specs": "paddleport.registry",
    "SUPPORTED_CLASSES": "paddleport.registry",
}

__all__ = list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'paddleport.convert' has no attribute {name!r}")
