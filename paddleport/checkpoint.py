"""The pre-flight check every command runs on a checkpoint directory before it builds a model from it.

One place for what a directory must satisfy (numpy + safetensors only; torch for a ``.bin``): ``config.json``
parses and its values have the declared types and ranges (``core.configuration``), the weights are readable
(headers only where the format allows; ``.bin`` with ``weights_only``, ``.pdparams`` through the restricted
unpickler), shards stay inside the directory, and the config's layer count and embedding sizes match the
weights. A failure is a one-line ``PaddleportError`` before anything large is allocated or any other library
opens the files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from paddleport.core.configuration import CONFIG_NAME, read_config_dict
from paddleport.core.tensor_io import stored_shapes
from paddleport.errors import PaddleportError
from paddleport.registry import ARCHITECTURES


@dataclass
class CheckedCheckpoint:
    directory: Path
    config: dict[str, Any]  # config.json as written (unknown keys kept)
    shapes: dict[str, tuple[int, ...]]  # every stored tensor's shape


def check_checkpoint(directory: str | Path, option: str | None = None) -> CheckedCheckpoint:
    """``directory`` checked as the module docstring says; ``option`` names the flag that gave it, if any."""
    directory = Path(directory)
    if not directory.is_dir():
        raise PaddleportError(option or directory, f"model directory {directory} does not exist"
                              if option else "model directory does not exist")
    config_path = directory / CONFIG_NAME
    values = read_config_dict(config_path)
    shapes = stored_shapes(directory)
    entry = ARCHITECTURES.get(values.get("model_type"))
    if entry is not None:  # an unsupported model_type is refused by each command with its own message
        config = entry.config_class.from_dict(values, source=config_path)
        config.check_against_weights(shapes, config_path)
    return CheckedCheckpoint(directory, values, shapes)
