"""Paddle backend: paddleport.models, paddle AdamW + LambdaDecay, paddle.amp auto_cast / GradScaler.

Model, optimizer and optimizer steps are created under this backend's own unique-name generator, so
internal parameter/accumulator names (the keys of the optimizer state) are the same in every run, also
when several runs share one process (tests), and ``--resume`` can load them.

Under ``python -m paddle.distributed.launch``: ``init_parallel_env`` (gloo on CPU, NCCL on GPU) and
``paddle.DataParallel``; with ``--sharding zero1/zero2`` (GPU only) ``group_sharded_parallel`` level 'os'/'os_g',
whose optimizer-state shards are gathered into one full state for checkpoints.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, ContextManager

import numpy as np

from paddleport.errors import PaddleportError
from paddleport.glue_runners.backends.base import (Backend, BackendOptions, OptimizerConfig, linear_warmup_decay,
                                                   uses_weight_decay)
from paddleport.glue_runners.checkpoint_info import inspect_model_dir
from paddleport.glue_runners.distributed import PADDLE_SHARDING_LEVELS
from paddleport.glue_runners.training_state import has_training_state, read_training_state, write_training_state
from paddleport.registry import model_inputs

# Training state of paddleport before safetensors + JSON (pickles); still resumed, through the restricted reader.
LEGACY_OPTIMIZER_FILE = "optimizer.pdopt"
LEGACY_EXTRA_STATE_FILE = "training_state.pkl"


def _import_paddle(device: str):
    """paddle, with paddleport's CPU kernels built before the first step on CPU (process-wide settings such as
    threads are the entry point's: paddleport.runtime)."""
    import paddle

    if device == "cpu":
        from paddleport.models.kernels import cpu_kernels

        cpu_kernels()
    return paddle


def _logits_only(paddle, model):
    """The model as a layer that returns the logits tensor: paddle.DataParallel finds the tensors to reduce for
    in what forward returns (tensors, lists, dicts), not in an output object."""

    class LogitsOnly(paddle.nn.Layer):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, **inputs):
            return self.inner(**inputs).logits

    return LogitsOnly(model)


def _to_numpy(state):
    """A (nested) optimizer state dict with numpy arrays in place of tensors, for pickling between ranks."""
    if isinstance(state, dict):
        return {name: _to_numpy(value) for name, value in state.items()}
    return state.numpy() if hasattr(state, "numpy") else state


def _save_arrays(arrays: dict[str, np.ndarray], path: str) -> None:
    from safetensors.numpy import save_file

    save_file({name: np.ascontiguousarray(array) for name, array in arrays.items()}, path)


def _generator_state_json(state, source: Path | None = None) -> list:
    """A ``paddle.get_rng_state()`` entry (pybind ``GeneratorState``) as JSON: its pickle state
    ``(device, seed, offset, engine state as character codes)``, the engine state kept as text."""
    try:
        device, seed, offset, engine = state.__getstate__()
        return [int(device), int(seed), int(offset), bytes(engine).decode("ascii")]
    except (AttributeError, TypeError, ValueError) as error:
        raise PaddleportError(source, f"has a malformed Paddle RNG state ({error!r})") from None


def _generator_state(paddle, entry: list):
    device, seed, offset, engine = entry
    if not isinstance(engine, str):
        raise TypeError("the engine state must be text")
    state_class = paddle.base.libpaddle.GeneratorState
    state = state_class.__new__(state_class)
    state.__setstate__((int(device), int(seed), int(offset), list(engine.encode("ascii"))))
    return state


def _merge_shards(shards: list[dict]) -> dict:
    """The union of the ranks' optimizer-state shards (disjoint accumulators; shared entries are equal)."""
    merged: dict = {}
    for shard in shards:
        for name, value in shard.items():
            if isinstance(value, dict) and isinstance(merged.get(name), dict):
                merged[name] = {**merged[name], **value}
            else:
                merged.setdefault(name, value)
    return merged


class PaddleBackend(Backend):
    name = "paddle"

    def __init__(self, options: BackendOptions):
        super().__init__(options)
        self.paddle = paddle = _import_paddle(options.device)
        if options.device == "gpu":
            if not (paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0):
                raise PaddleportError("--device", "gpu requested but this paddle has no CUDA device "
                                                  "(install paddlepaddle-gpu)")
            # under the launcher, the GPU it selected for this process (FLAGS_selected_gpus)
            paddle.set_device(f"gpu:{paddle.distributed.ParallelEnv().device_id}" if self.launch.is_distributed
                              else "gpu")
        else:
            paddle.set_device("cpu")
        if self.launch.is_distributed:
            paddle.distributed.init_parallel_env()
        self.names = paddle.base.unique_name.UniqueNameGenerator()
        self.model = None
        self.train_module = None  # the model as wrapped for data-parallel / sharded training
        self._gathered_optimizer_state: dict | None = None  # full state of a sharded optimizer (prepare_to_save)
        self.optimizer = None
        self.scheduler = None
        self.scaler = paddle.amp.GradScaler(init_loss_scaling=2.0**16) if options.amp == "fp16" else None
        self.specs: dict = {}  # Paddle parameter name -> ParamSpec (HF name, transform)
        self.regression = False
        self.base_model_dir: str | None = None

    def _names_guard(self):
        return self.paddle.base.unique_name.guard(self.names)

    # -- processes -----------------------------------------------------------------------------
    def _barrier(self) -> None:
        self.paddle.distributed.barrier()

    def _all_reduce_sum(self, values: np.ndarray) -> np.ndarray:
        tensor = self.paddle.to_tensor(values.copy())
        self.paddle.distributed.all_reduce(tensor)
        return tensor.numpy()

    def _all_gather_object(self, value: Any) -> list:
        gathered: list = []
        self.paddle.distributed.all_gather_object(gathered, value)
        return gathered

    @property
    def _sharded(self) -> bool:
        return self.options.sharding in PADDLE_SHARDING_LEVELS

    def _wrap_for_parallel(self) -> None:
        """group_sharded_parallel (wraps model, optimizer and scaler) or DataParallel under a launch."""
        paddle = self.paddle
        logits_model = _logits_only(paddle, self.model)
        if self._sharded:
            from paddle.distributed.sharding import group_sharded_parallel

            level = PADDLE_SHARDING_LEVELS[self.options.sharding]
            self.train_module, self.optimizer, scaler = group_sharded_parallel(
                logits_model, self.optimizer, level, scaler=self.scaler)
            self.scaler = scaler
        elif self.launch.is_distributed:
            self.train_module = paddle.DataParallel(logits_model)
        else:
            self.train_module = logits_model

    def gradient_sync(self, enabled: bool) -> ContextManager:
        # group_sharded stage 1/2 reduces gradients in every backward (it has no no_sync): correct, more traffic.
        if not enabled and isinstance(self.train_module, self.paddle.DataParallel):
            return self.train_module.no_sync()
        return contextlib.nullcontext()

    # -- model ---------------------------------------------------------------------------------
    def load_model(self, model_dir: Path, num_labels: int, work_dir: Path) -> None:
        from paddleport.convert import convert_checkpoint, parameter_specs
        from paddleport.models import AutoModelForSequenceClassification

        self.base_model_dir = str(model_dir)
        if not inspect_model_dir(model_dir).is_paddle:
            converted = Path(work_dir) / "paddle_init"
            convert_checkpoint(model_dir, converted, to="paddle", force=True)
            model_dir = converted
        with self._names_guard():
            self.model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=num_labels)
            self.peft = self.peft_plan(model_dir, num_labels, type(self.model).__name__)
            if self.peft is not None:
                from paddleport.peft.methods import framework_module

                self.model = framework_module(self.peft, "paddle").apply(self.model, self.peft)
        if self.peft is not None:
            self.specs = self.peft.by_paddle_name()
        else:
            self.specs = {spec.paddle_name: spec
                          for spec in parameter_specs(self.model.config, type(self.model).__name__)}
        self.regression = num_labels == 1
        if self.mask_stream is not None:
            from paddleport.models.layers import share_dropout_masks

            share_dropout_masks(self._inner_model(), self.mask_stream)  # keyed by Hugging Face module names
        if self.options.gradient_checkpointing:
            self._inner_model().gradient_checkpointing_enable()

    def _inner_model(self):
        """The paddleport model (an adapter may wrap it; its sub-layers keep the Hugging Face names)."""
        if self.peft is None:
            return self.model
        from paddleport.peft.methods import framework_module

        return framework_module(self.peft, "paddle").inner_model(self.model)

    def _named_parameters(self):
        for name, param in self.model.named_parameters():
            if name not in self.specs:
                raise PaddleportError(None, f"Paddle parameter {name} has no conversion rule")
            yield self.specs[name], param

    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        return {spec.hf_name: tuple(spec.hf_shape) for spec, _ in self._named_parameters()}

    def get_parameters(self) -> dict[str, np.ndarray]:
        return {spec.hf_name: spec.transform.to_hf(param.astype("float32").numpy())
                for spec, param in self._named_parameters()}

    def set_parameters(self, values: dict[str, np.ndarray]) -> None:
        for spec, param in self._named_parameters():
            if spec.hf_name in values:
                value = spec.transform.to_paddle(np.asarray(values[spec.hf_name]))
                param.set_value(self.paddle.to_tensor(value).astype(param.dtype))

    def save_model(self, directory: Path) -> None:
        if self.peft is not None:  # peft's adapter layout, Paddle-layout tensors
            from paddleport.peft.methods import framework_module

            framework_module(self.peft, "paddle").save_adapter(self.model, self.peft, directory, self.base_model_dir)
        else:
            self.model.save_pretrained(directory)

    def load_model_weights(self, directory: Path) -> None:
        if self.peft is not None:
            from paddleport.peft.methods import framework_module

            return framework_module(self.peft, "paddle").load_adapter_weights(self.model, self.peft, directory)
        from paddleport.models.modeling_utils import read_paddle_state_dict

        self.model.load_weights(read_paddle_state_dict(Path(directory)))

    # -- training ------------------------------------------------------------------------------
    def build_optimizer(self, config: OptimizerConfig) -> None:
        from paddleport.parity.porting.training import paddle_adamw

        decayed = {param.name for name, param in self.model.named_parameters() if uses_weight_decay(name)}
        self.scheduler = self.paddle.optimizer.lr.LambdaDecay(
            config.lr, linear_warmup_decay(config.warmup_steps, config.total_steps))
        trainable = [param for param in self.model.parameters() if not param.stop_gradient]  # LoRA: the adapter
        with self._names_guard():
            self.optimizer = paddle_adamw(trainable, self.scheduler, config.betas, config.eps, config.weight_decay,
                                          decayed, config.max_grad_norm)
        self._wrap_for_parallel()

    def set_train_mode(self, training: bool) -> None:
        module = self.model if self.train_module is None else self.train_module
        module.train() if training else module.eval()

    def _autocast(self):
        dtype = {"bf16": "bfloat16", "fp16": "float16"}.get(self.options.amp)
        return self.paddle.amp.auto_cast(enable=dtype is not None, dtype=dtype or "float16", level="O1")

    def _tensors(self, batch: dict[str, np.ndarray]) -> dict:
        batch = {**batch, **model_inputs(batch, self.model.input_names)}  # ERNIE's task types when the data has none
        return {name: self.paddle.to_tensor(value) for name, value in batch.items()}

    def _loss(self, logits, labels):
        functional = self.paddle.nn.functional
        if self.regression:
            return functional.mse_loss(logits.astype("float32").squeeze(-1), labels.astype("float32"))
        return functional.cross_entropy(logits.astype("float32"), labels)

    def _model_inputs(self, tensors: dict) -> dict:
        """The inputs the architecture takes (DistilBERT: no token types)."""
        return {name: tensors[name] for name in self._inner_model().input_names}

    def _logits(self, tensors: dict):
        with self._autocast():
            return self.model(**self._model_inputs(tensors)).logits

    def _forward_backward(self, batch: dict[str, np.ndarray], loss_weight: float) -> float:
        tensors = self._tensors(batch)
        with self._autocast():
            logits = self.train_module(**self._model_inputs(tensors))
        loss = self._loss(logits, tensors["labels"])
        scaled = loss * loss_weight
        (self.scaler.scale(scaled) if self.scaler else scaled).backward()
        return float(loss)

    def optimizer_step(self) -> None:
        with self._names_guard():
            if self.scaler:
                self.scaler.step(self.optimizer)  # unscales, skips the step on inf/nan gradients
                self.scaler.update()
            else:
                self.optimizer.step()
        if self._sharded:
            self.optimizer.clear_grad()  # group_sharded's replacement takes no arguments
        else:
            self.optimizer.clear_grad(set_to_zero=False)
        self.scheduler.step()

    def current_lr(self) -> float:
        return float(self.optimizer.get_lr())

    def predict(self, batch: dict[str, np.ndarray]) -> tuple[float, np.ndarray]:
        tensors = self._tensors(batch)
        with self.paddle.no_grad():
            logits = self._logits(tensors).astype("float32")
            loss = float(self._loss(logits, tensors["labels"])) if "labels" in tensors else float("nan")
        return loss, logits.numpy()

    # -- state ---------------------------------------------------------------------------------
    def _seed_framework(self, seed: int) -> None:
        self.paddle.seed(seed)

    def prepare_to_save(self, with_training_state: bool) -> None:
        if self._sharded and with_training_state:  # each rank holds the accumulators of its own parameters
            shards = self.all_gather_object(_to_numpy(self.optimizer.state_dict()))
            self._gathered_optimizer_state = _merge_shards(shards)

    def _optimizer_state(self) -> dict:
        if self._sharded:
            state, self._gathered_optimizer_state = self._gathered_optimizer_state, None
            return state
        return self.optimizer.state_dict()

    def save_training_state(self, directory: Path) -> None:
        state = {"optimizer": _to_numpy(self._optimizer_state()), "scheduler": self.scheduler.state_dict(),
                 "scaler": self.scaler.state_dict() if self.scaler else None}
        write_training_state(directory, state, lambda value: isinstance(value, np.ndarray), _save_arrays)

    def load_training_state(self, directory: Path) -> None:
        from safetensors.numpy import load_file

        if has_training_state(directory):
            state = read_training_state(directory, load_file)
        else:
            state = self._read_legacy_state(Path(directory))
        try:
            with self._names_guard():
                self.optimizer.set_state_dict(state["optimizer"])
            self.scheduler.set_state_dict(state["scheduler"])
            if self.scaler and state["scaler"]:
                self.scaler.load_state_dict(state["scaler"])
        except (KeyError, TypeError, ValueError, RuntimeError) as error:
            raise PaddleportError(directory, f"holds training state that does not fit this run ({error!r})") from None

    def _read_legacy_state(self, directory: Path) -> dict:
        """``optimizer.pdopt`` + ``training_state.pkl`` of paddleport before safetensors + JSON, read by the
        restricted unpickler (no code runs; anything but state is refused); the pickle also holds rank 0's
        RNG state, restored here."""
        from paddleport.safe_pickle import load_state

        optimizer_path, extra_path = directory / LEGACY_OPTIMIZER_FILE, directory / LEGACY_EXTRA_STATE_FILE
        if not optimizer_path.is_file():
            raise PaddleportError(directory, "holds no training state (training_state.json missing)")
        optimizer, extra = load_state(optimizer_path), load_state(extra_path)
        if not isinstance(optimizer, dict) or not isinstance(extra, dict):
            raise PaddleportError(directory, "holds legacy training state that is not a dictionary")
        generator_states = {"cpu": extra.get("rng"), "cuda": extra.get("cuda_rng")}
        legacy_rng = {device: None if states is None else [_generator_state_json(state, extra_path)
                                                           for state in states]
                      for device, states in generator_states.items()}
        self.load_rng_state({"framework": legacy_rng, "dropout_masks": extra.get("dropout_masks")}, extra_path)
        return {"optimizer": optimizer, "scheduler": extra.get("scheduler"), "scaler": extra.get("scaler")}

    def _framework_rng_state(self) -> dict:
        paddle = self.paddle
        cuda = paddle.get_device().startswith("gpu")
        return {"cpu": [_generator_state_json(state) for state in paddle.get_rng_state()],
                "cuda": [_generator_state_json(state) for state in paddle.get_cuda_rng_state()] if cuda else None}

    def _load_framework_rng_state(self, state: dict, source: Path) -> None:
        paddle = self.paddle
        try:
            if state.get("cpu") is not None:
                paddle.set_rng_state([_generator_state(paddle, item) for item in state["cpu"]])
            if state.get("cuda") is not None and paddle.get_device().startswith("gpu"):
                paddle.set_cuda_rng_state([_generator_state(paddle, item) for item in state["cuda"]])
        except (AttributeError, TypeError, ValueError, RuntimeError) as error:
            raise PaddleportError(source, f"has a malformed Paddle RNG state ({error!r})") from None

    def peak_device_memory_mb(self) -> float | None:
        if not self.paddle.get_device().startswith("gpu"):
            return None
        return self.paddle.device.cuda.max_memory_allocated() / 2**20
