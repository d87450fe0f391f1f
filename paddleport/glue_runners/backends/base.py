"""The small interface behind which torch and Paddle differ; everything else is written once."""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ContextManager

import numpy as np

from paddleport.dropout_masks import DropoutMaskStream
from paddleport.errors import PaddleportError
from paddleport.glue_runners.distributed import LaunchInfo
from paddleport.peft.methods import PeftPlan, PeftSettings, plan_peft
from paddleport.glue_runners.training_state import derived_seed

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
    gradient_checkpointing: bool = False
    launch: LaunchInfo = field(default_factory=LaunchInfo)  # a torchrun / paddle.distributed.launch process
    sharding: str = "none"  # one of distributed.SHARDING_MODES (checked before the backend is made)
    dropout_masks: str = "native"  # one of dropout_masks.MODES: "native", or "shared" with the other framework
    peft: PeftSettings | None = None  # train an adapter (paddleport.peft.methods) instead of the whole model


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

    Under a distributed launch the backend initialises its framework's process group when it is made, wraps
    the model for data parallelism / sharding in :meth:`build_optimizer`, and offers the few collectives the
    trainer needs (each a no-op, without the framework, in a single process). Methods marked *collective*
    must be called by every rank in the same order; files are written by rank 0 only.
    """

    name: str
    peft: PeftPlan | None = None  # set by load_model when training an adapter

    def __init__(self, options: BackendOptions):
        self.options = options
        self.launch = options.launch
        # shared masks: the same in both frameworks (paddleport.dropout_masks); None: the framework's own RNG
        self.mask_stream = DropoutMaskStream(rank=self.rank) if options.dropout_masks == "shared" else None

    # -- processes -----------------------------------------------------------------------------
    @property
    def rank(self) -> int:
        return self.launch.rank

    @property
    def world_size(self) -> int:
        return self.launch.world_size

    @property
    def is_main(self) -> bool:
        return self.launch.is_main

    @property
    def _collectives(self) -> bool:
        return self.launch.is_distributed and self.launch.world_size > 1

    def barrier(self) -> None:
        """*Collective*: wait for every rank."""
        if self._collectives:
            self._barrier()

    def all_reduce_sum(self, values: np.ndarray) -> np.ndarray:
        """*Collective*: the element-wise float64 sum of ``values`` over the ranks."""
        values = np.asarray(values, dtype=np.float64)
        return self._all_reduce_sum(values) if self._collectives else values

    def all_gather_object(self, value: Any) -> list:
        """*Collective*: every rank's (picklable) ``value``, in rank order."""
        return self._all_gather_object(value) if self._collectives else [value]

    def _barrier(self) -> None:
        raise NotImplementedError

    def _all_reduce_sum(self, values: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _all_gather_object(self, value: Any) -> list:
        raise NotImplementedError

    def gradient_sync(self, enabled: bool) -> ContextManager:
        """Around one micro-batch's :meth:`forward_backward`: with ``enabled`` False (an accumulation micro-step)
        the data-parallel engine skips the gradient all-reduce (``no_sync``)."""
        return contextlib.nullcontext()

    def prepare_to_save(self, with_training_state: bool) -> None:
        """*Collective*: gather what a sharded model/optimizer keeps in pieces, so that rank 0 can then call
        :meth:`save_model` (and :meth:`save_training_state`)."""

    def shutdown(self) -> None:
        """Leave the process group (end of a distributed run)."""

    # -- model ---------------------------------------------------------------------------------
    def peft_plan(self, model_dir: Path, num_labels: int, class_name: str) -> PeftPlan | None:
        """The adapter's plan for the loaded model (None without ``options.peft``); both frameworks use the same
        one."""
        if self.options.peft is None:
            return None
        import json

        config = json.loads((Path(model_dir) / "config.json").read_text())
        config = {key: value for key, value in config.items() if key not in ("id2label", "label2id")}
        return plan_peft(config | {"num_labels": num_labels}, class_name, self.options.peft)

    def trainable_parameter_count(self) -> int:
        """Elements the optimizer updates: every parameter, or an adapter's."""
        shapes = self.parameter_shapes()
        names = set(shapes) if self.peft is None else {param.name for param in self.peft.trainable}
        return int(sum(np.prod(shapes[name], dtype=np.int64) for name in names))

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

    def forward_backward(self, batch: dict[str, np.ndarray], loss_weight: float) -> float:
        """Forward under AMP, backward of loss * loss_weight (gradients accumulate); returns the batch's
        mean loss (unscaled, float)."""
        if self.mask_stream is not None:
            self.mask_stream.next_forward()
        return self._forward_backward(batch, loss_weight)

    @abstractmethod
    def _forward_backward(self, batch: dict[str, np.ndarray], loss_weight: float) -> float: ...

    @abstractmethod
    def optimizer_step(self) -> None:
        """Unscale, clip, step the optimizer, the loss scaler and the schedule, clear the gradients."""

    def train_step(self, batch: dict[str, np.ndarray]) -> float:
        """One step without accumulation, the batch's loss: what the porting engine steps a training side with
        (``parity.porting.training.run_side``; train-parity)."""
        loss = self.forward_backward(batch, 1.0)
        self.optimizer_step()
        return loss

    @abstractmethod
    def current_lr(self) -> float: ...

    @abstractmethod
    def predict(self, batch: dict[str, np.ndarray]) -> tuple[float, np.ndarray]:
        """(mean loss or nan when unlabelled, float32 logits) without gradients."""

    # -- state ---------------------------------------------------------------------------------
    def seed(self, seed: int) -> None:
        """Seed the framework's generators and the shared dropout-mask schedule."""
        if self.mask_stream is not None:
            self.mask_stream.seed = seed
        self._seed_framework(seed)

    @abstractmethod
    def _seed_framework(self, seed: int) -> None: ...

    def rng_state(self) -> dict:
        """This process's random state as JSON-able values: the framework's generators and the dropout-mask
        stream (each rank has its own; checkpoints keep one file per rank)."""
        return {"framework": self._framework_rng_state(),
                "dropout_masks": None if self.mask_stream is None else self.mask_stream.state_dict()}

    def load_rng_state(self, state: dict, source: Path) -> None:
        """Restore what :meth:`rng_state` returned (read from ``source``, named in errors)."""
        if not isinstance(state, dict) or "framework" not in state:
            raise PaddleportError(source, "is not an RNG state (no 'framework' entry)")
        self._load_framework_rng_state(state["framework"], source)
        self._load_mask_stream_state(state.get("dropout_masks"), source)

    def rederive_rng(self, seed: int, global_step: int, reference: dict | None, source: Path) -> None:
        """State for a rank the checkpoint has none for (resumed with more processes than were saved): the
        framework generators from ``derived_seed(seed, global_step)``; the mask stream exactly as a run with
        this many processes would have it (its keys are (seed, rank, forward index) and every rank runs the
        same number of forwards, so rank 0's saved forward index applies to every rank)."""
        self._seed_framework(derived_seed(seed, global_step))
        masks = (reference or {}).get("dropout_masks")
        if masks is not None:
            self._load_mask_stream_state({**masks, "seed": seed}, source)

    def _load_mask_stream_state(self, state: dict | None, source: Path) -> None:
        if self.mask_stream is None or state is None:
            return
        try:
            self.mask_stream.load_state_dict(state)
        except (KeyError, TypeError, ValueError) as error:
            raise PaddleportError(source, f"has a malformed dropout-mask state ({error!r})") from None

    @abstractmethod
    def _framework_rng_state(self) -> dict: ...

    @abstractmethod
    def _load_framework_rng_state(self, state: dict, source: Path) -> None: ...

    @abstractmethod
    def save_training_state(self, directory: Path) -> None:
        """Optimizer, schedule and loss-scaler state into ``directory`` (which exists), as safetensors + JSON
        (:mod:`paddleport.glue_runners.training_state`); RNG state is saved per rank by the trainer."""

    @abstractmethod
    def load_training_state(self, directory: Path) -> None:
        """What :meth:`save_training_state` wrote; a checkpoint of an older paddleport (pickled state) is read
        without running code from it and also restores rank 0's RNG state, which it holds."""

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
