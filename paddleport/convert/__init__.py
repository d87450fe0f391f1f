"""Checkpoint conversion between Hugging Face (torch layout) and Paddle, table-driven.

Converting a safetensors checkpoint imports neither torch nor paddle.
"""

from paddleport.convert.converter import ConversionReport, convert_checkpoint
from paddleport.convert.registry import SUPPORTED_CLASSES, TABLES, parameter_specs
from paddleport.convert.table import ParamSpec

__all__ = ["ConversionReport", "ParamSpec", "SUPPORTED_CLASSES", "TABLES", "convert_checkpoint", "parameter_specs"]
