"""Framework-free facts about a model directory, and the shared initialisation of fresh parameters.

A headless checkpoint (e.g. MiniLM's ``BertModel``) gets a new classifier; for both frameworks to start
from the same point, the fresh parameters are drawn once here (seeded numpy, Hugging Face layout) and each
backend loads them into its model.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from paddleport.checkpoint import check_checkpoint
from paddleport.core.configuration import AutoConfig, max_input_length
from paddleport.core.tensor_io import is_paddle_checkpoint
from paddleport.errors import PaddleportError
from paddleport.peft.methods import initial_values
from paddleport.registry import Architecture, architecture


@dataclass(frozen=True)
class ModelDirInfo:
    path: Path
    config: dict
    parameter_shapes: dict[str, tuple[int, ...]]  # as stored (layout of the directory's framework)
    is_paddle: bool  # written by paddleport convert / a Paddle save_pretrained

    @property
    def initializer_range(self) -> float:
        return float(self.config.get("initializer_range", 0.02))

    def has_parameter(self, name: str) -> bool:
        """Whether a model parameter ``name`` is stored, with or without its base-model prefix (``bert.``)."""
        return name in self.parameter_shapes or name.split(".", 1)[-1] in self.parameter_shapes

    @property
    def max_positions(self) -> int:
        """The longest input the model takes (RoBERTa's positions start after the padding index)."""
        return max_input_length(self.config, self.path / "config.json")

    def fit_max_length(self, requested: int | None, default: int, option: str = "--max-length",
                       reserved: int = 0) -> int:
        """Tokens per sequence: ``default`` clamped to the model's positions, or what the user asked if it fits;
        ``reserved`` positions are taken by virtual tokens (prompt tuning, p-tuning) in front of the text."""
        available = self.max_positions - reserved
        if available <= 0:
            raise PaddleportError("--num-virtual-tokens", f"{reserved} virtual tokens leave none of the model's "
                                                          f"{self.max_positions} positions for the text")
        if requested is None:
            return min(default, available)
        if requested > available:
            virtual = f" less {reserved} virtual tokens" if reserved else ""
            raise PaddleportError(option, f"{requested} exceeds the model's max_position_embeddings "
                                          f"{self.max_positions}{virtual} ({self.path / 'config.json'})")
        return requested

    @property
    def architecture(self) -> Architecture:
        return architecture(self.config.get("model_type"), self.path / "config.json")

    def head_size(self) -> int | None:
        """Label count of a stored sequence-classification head, None for a checkpoint without one."""
        shape = self.parameter_shapes.get(self.architecture.labels_parameter)
        return int(shape[0]) if shape else None


def inspect_model_dir(model_dir: Path, option: str = "--model") -> ModelDirInfo:
    """config.json and the parameter names/shapes of ``model_dir``, after the pre-flight check."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise PaddleportError(option, f"model directory {model_dir} not found")
    if not (model_dir / "config.json").is_file():
        raise PaddleportError(model_dir, "has no config.json")
    checked = check_checkpoint(model_dir, option)
    return ModelDirInfo(model_dir, checked.config, checked.shapes, is_paddle_checkpoint(model_dir))


def check_head(info: ModelDirInfo, num_labels: int, task_name: str) -> None:
    """A trained classifier of another size than the task's label count is an error (not silently replaced)."""
    size = info.head_size()
    if size is not None and size != num_labels:
        raise PaddleportError(info.path, f"has a trained classifier for {size} labels but task {task_name} "
                                         f"needs {num_labels}; use a checkpoint without that head")


def fresh_parameters(model_shapes: dict[str, tuple[int, ...]], info: ModelDirInfo, seed: int) -> dict[str, np.ndarray]:
    """Initial values (Hugging Face layout) of the model parameters the checkpoint does not hold.

    As transformers initialises them: biases 0, LayerNorm weights 1 (which parameter is which, the
    architecture's conversion table says), other weights ~ N(0, initializer_range); adapter parameters as torch +
    peft initialise them (``paddleport.peft.methods.initial_values``); each parameter draws from its own generator
    seeded by (seed, name), so values do not depend on order.
    """
    kinds = info.architecture.parameter_kinds(AutoConfig.from_dict(info.config, source=info.path / "config.json"))
    missing = {name: shape for name, shape in model_shapes.items() if not info.has_parameter(name)}
    values = initial_values(missing, seed)
    for name in sorted(missing):
        shape = missing[name]
        if name in values:
            continue
        kind = kinds.get(name, kinds.get(info.architecture.base_prefix + name))
        if kind is None:
            raise PaddleportError(info.path, f"parameter {name} is not in the {info.architecture.model_type} table")
        if kind == "bias":
            values[name] = np.zeros(shape, dtype=np.float32)
        elif kind == "layernorm":
            values[name] = np.ones(shape, dtype=np.float32)
        else:
            rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
            values[name] = rng.normal(0.0, info.initializer_range, size=shape).astype(np.float32)
    return values
