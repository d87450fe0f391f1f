"""The small interface behind which torch and Paddle differ; everything else is written once."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

AMP_MODES = ("none", "bf16", "fp16")


@dataclass(frozen=True)
class OptimizerConfig:
    lr: float
    weight_decay: float
    warmup_steps: int
    total_steps: int
    max_grad_norm: float  # <= 0: no clipping
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8


@dataclass(frozen=True)
class BackendOptions:
    device: str = "cpu"  # "cpu" or "gpu"
    amp: str = "none"  # one of AMP_MODES
    num_threads: int | None = None
    gradient_checkpointing: bool = False


def linear_warmup_decay(warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    """LR multiplier: 0 -> 1 over ``warmup_steps``, then linearly down to 0 at ``total_steps`` (as transformers)."""

    def multiplier(step: int) -> float:
        if step < warmup_steps:
            return step / max(1, warmup_steps)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return multiplier


def uses_weight_decay(parameter_name: str) -> bool:
    """AdamW decays every parameter except biases and LayerNorm weights."""
    lowered = parameter_name.lower()
    return not (lowered.endswith("bias") or "layernorm" in lowered or "layer_norm" in lowered)


class Backend(ABC):
    """One framework's model, optimizer, AMP, checkpoint files and device.

    Batches are dicts of numpy arrays (``input_ids``, ``token_type_ids``, ``attention_mask``, ``labels``);
    parameters cross the interface as numpy arrays in Hugging Face names and layout.
    """

    name: str

    def __init__(self, options: BackendOptions):
        self.options = options

    # -- model ---------------------------------------------------------------------------------
    @abstractmethod
    def load_model(self, model_dir: Path, num_labels: int, work_dir: Path) -> None:
        """Load a sequence-classification model from ``model_dir`` (converting it first if in the other
        framework's layout, into ``work_dir``)."""

    @abstractmethod
    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        """Hugging Face name -> shape in Hugging Face layout, of every model parameter."""

    @abstractmethod
    def get_parameters(self) -> dict[str, np.ndarray]:
        """Hugging Face name -> float32 value in Hugging Face layout."""

    @abstractmethod
    def set_parameters(self, values: dict[str, np.ndarray]) -> None:
        """Overwrite the named parameters (Hugging Face layout)."""

    @abstractmethod
    def save_model(self, directory: Path) -> None:
        """The model in the framework's ``from_pretrained`` format."""

    @abstractmethod
    def load_model_weights(self, directory: Path) -> None:
        """Weights written by :meth:`save_model` back into the loaded model."""

    # -- training ------------------------------------------------------------------------------
    @abstractmethod
    def build_optimizer(self, config: OptimizerConfig) -> None:
        """AdamW (no decay on biases/LayerNorm), linear warm-up/decay schedule, loss scaler for fp16."""

    @abstractmethod
    def set_train_mode(self, training: bool) -> None:
        """Dropout on (training) or off."""

    @abstractmethod
    def forward_backward(self, batch: dict[str, np.ndarray], loss_divisor: int) -> float:
        """Forward under AMP, backward of loss / loss_divisor (gradients accumulate); returns the batch's
        mean loss (unscaled, float)."""

    @abstractmethod
    def optimizer_step(self) -> None:
        """Unscale, clip, step the optimizer, the loss scaler and the schedule, clear the gradients."""

    @abstractmethod
    def current_lr(self) -> float: ...

    @abstractmethod
    def predict(self, batch: dict[str, np.ndarray]) -> tuple[float, np.ndarray]:
        """(mean loss or nan when unlabelled, float32 logits) without gradients."""

    # -- state ---------------------------------------------------------------------------------
    @abstractmethod
    def seed(self, seed: int) -> None: ...

    @abstractmethod
    def save_training_state(self, directory: Path) -> None:
        """Optimizer, schedule, loss scaler and RNG state into ``directory`` (which exists)."""

    @abstractmethod
    def load_training_state(self, directory: Path) -> None: ...

    @abstractmethod
    def peak_device_memory_mb(self) -> float | None:
        """Max allocated accelerator memory, None on CPU."""

    @property
    def description(self) -> str:
        return self.name


def make_backend(framework: str, options: BackendOptions) -> Backend:
    """The backend for ``framework`` ("torch" or "paddle"); imports only that framework."""
    if framework == "torch":
        from paddleport.glue_runners.backends.torch_backend import TorchBackend

        return TorchBackend(options)
    if framework == "paddle":
        from paddleport.glue_runners.backends.paddle_backend import PaddleBackend

        return PaddleBackend(options)
    from paddleport.errors import PaddleportError

    raise PaddleportError("--framework", f"unknown framework {framework!r}; choose torch or paddle")
