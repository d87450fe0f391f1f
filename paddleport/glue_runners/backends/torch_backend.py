"""PyTorch backend: transformers model, torch AdamW + LambdaLR, torch.autocast / GradScaler.

Under ``torchrun``: a gloo (CPU) or NCCL (GPU) process group, ``DistributedDataParallel``; with ``--sharding``
``ZeroRedundancyOptimizer`` (zero1) or FSDP2 ``fully_shard`` per repeated block (zero2: parameters stay
gathered after forward, fsdp: resharded). Checkpoints hold full (gathered) model and optimizer state.
"""

from __future__ import annotations

import base64
import contextlib
from pathlib import Path
from typing import Any, ContextManager

import numpy as np
import torch
import torch.nn.functional as F

from paddleport.errors import PaddleportError
from paddleport.registry import input_names_of, model_inputs
from paddleport.runtime import quiet_transformers
from paddleport.glue_runners.backends.base import (Backend, BackendOptions, OptimizerConfig, linear_warmup_decay,
                                                   uses_weight_decay)
from paddleport.glue_runners.checkpoint_info import inspect_model_dir
from paddleport.glue_runners.training_state import has_training_state, read_training_state, write_training_state

LEGACY_STATE_FILE = "training_state.pt"  # before safetensors + JSON; still resumed
FSDP_MODES = ("zero2", "fsdp")
# How the optimizer state is stored: the optimizer's own state_dict (indexed by parameter position), or
# torch.distributed.checkpoint's full state dict keyed by parameter name (FSDP).
INDEXED, BY_NAME = "indexed", "by_name"


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, options: BackendOptions):
        super().__init__(options)
        if options.device == "gpu" and not torch.cuda.is_available():
            raise PaddleportError("--device", "gpu requested but torch finds no CUDA device")
        self.device = self._pick_device()
        if self.launch.is_distributed:
            self._init_process_group()
        self.model: torch.nn.Module | None = None
        self.train_module: torch.nn.Module | None = None  # the model as wrapped for (data-)parallel training
        self._gathered_model_state: dict | None = None  # full state of a sharded model, set by prepare_to_save
        self._gathered_optimizer_state: dict | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler: torch.optim.lr_scheduler.LambdaLR | None = None
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=options.amp == "fp16")
        self.max_grad_norm = 0.0
        self.regression = False
        self.base_model_dir: str | None = None

    # -- processes -----------------------------------------------------------------------------
    def _pick_device(self) -> torch.device:
        if self.options.device != "gpu":
            return torch.device("cpu")
        if self.launch.is_distributed:
            torch.cuda.set_device(self.launch.local_rank)
            return torch.device("cuda", self.launch.local_rank)
        return torch.device("cuda")

    def _init_process_group(self) -> None:
        import torch.distributed as dist

        if not dist.is_initialized():
            if self.device.type == "cuda":
                dist.init_process_group("nccl", device_id=self.device)
            else:
                dist.init_process_group("gloo")

    def _barrier(self) -> None:
        torch.distributed.barrier()

    def _all_reduce_sum(self, values: np.ndarray) -> np.ndarray:
        tensor = torch.from_numpy(values.copy()).to(self.device)
        torch.distributed.all_reduce(tensor)
        return tensor.cpu().numpy()

    def _all_gather_object(self, value: Any) -> list:
        gathered: list = [None] * self.world_size
        torch.distributed.all_gather_object(gathered, value)
        return gathered

    def shutdown(self) -> None:
        if self.launch.is_distributed and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()

    @property
    def _fsdp(self) -> bool:
        return self.options.sharding in FSDP_MODES

    def _wrap_for_parallel(self) -> None:
        """FSDP2 on every block of a ModuleList and on the root (zero2/fsdp), else DDP under a launch."""
        if self._fsdp:
            from torch.distributed.fsdp import fully_shard

            reshard = self.options.sharding == "fsdp"
            blocks = [block for module in self.model.modules() if isinstance(module, torch.nn.ModuleList)
                      for block in module]
            for block in blocks:
                fully_shard(block, reshard_after_forward=reshard)
            fully_shard(self.model, reshard_after_forward=reshard)
            self.train_module = self.model
        elif self.launch.is_distributed:
            from torch.nn.parallel import DistributedDataParallel

            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self.train_module = DistributedDataParallel(self.model, device_ids=device_ids)
        else:
            self.train_module = self.model

    def gradient_sync(self, enabled: bool) -> ContextManager:
        if self._fsdp:
            self.model.set_requires_gradient_sync(enabled)
        elif not enabled and self.train_module is not self.model:
            return self.train_module.no_sync()
        return contextlib.nullcontext()

    def prepare_to_save(self, with_training_state: bool) -> None:
        if self._fsdp:
            from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                                 get_optimizer_state_dict)

            options = StateDictOptions(full_state_dict=True, cpu_offload=True)
            self._gathered_model_state = get_model_state_dict(self.model, options=options)
            if with_training_state:
                self._gathered_optimizer_state = get_optimizer_state_dict(self.model, self.optimizer,
                                                                          options=options)
        elif self.options.sharding == "zero1" and with_training_state:
            self.optimizer.consolidate_state_dict(to=0)

    # -- model ---------------------------------------------------------------------------------
    def load_model(self, model_dir: Path, num_labels: int, work_dir: Path) -> None:
        import transformers

        self.base_model_dir = str(model_dir)
        if inspect_model_dir(model_dir).is_paddle:
            from paddleport.convert import convert_checkpoint

            converted = Path(work_dir) / "torch_init"
            convert_checkpoint(model_dir, converted, to="hf", force=True)
            model_dir = converted
        with quiet_transformers():
            model = transformers.AutoModelForSequenceClassification.from_pretrained(
                str(model_dir), num_labels=num_labels).to(self.device)
        self.regression = num_labels == 1
        self.peft = self.peft_plan(model_dir, num_labels, type(model).__name__)
        if self.options.gradient_checkpointing:
            enable = getattr(model, "activation_checkpointing_enable", None) or \
                model.gradient_checkpointing_enable  # the transformers 5 name, else the older one
            enable()
            if self.peft is not None:
                model.enable_input_require_grads()  # frozen embeddings: checkpointed blocks still need grads
        if self.mask_stream is not None:
            from paddleport.glue_runners.backends.torch_dropout import share_dropout_masks

            # before the adapter: peft's copies of a module_to_save (RoBERTa's classifier dropout) keep the sites of
            # the Hugging Face names, as Paddle's unwrapped module has them
            share_dropout_masks(model, self.mask_stream)
        if self.peft is not None:
            from paddleport.peft.methods import framework_module

            self.model = framework_module(self.peft, "torch").apply(model, self.peft)
        else:
            self.model = model
        self.input_names = input_names_of(model.config)  # DistilBERT: no token types; ERNIE 3.0: task types
        if self.mask_stream is not None and self.peft is not None:
            share_dropout_masks(model, self.mask_stream)  # the adapter's own dropouts (LoRA's), by module name

    def _named_parameters(self):
        """Hugging Face names (canonical adapter names when adapted) and parameters."""
        if self.peft is not None:
            from paddleport.peft.methods import framework_module

            return framework_module(self.peft, "torch").canonical_parameters(self.model)
        return self.model.named_parameters()

    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        return {name: tuple(param.shape) for name, param in self._named_parameters()}

    def get_parameters(self) -> dict[str, np.ndarray]:
        return {name: param.detach().float().cpu().numpy() for name, param in self._named_parameters()}

    def set_parameters(self, values: dict[str, np.ndarray]) -> None:
        params = dict(self._named_parameters())
        with torch.no_grad():
            for name, value in values.items():
                params[name].copy_(torch.from_numpy(np.ascontiguousarray(value)))

    def save_model(self, directory: Path) -> None:
        if self.peft is not None:  # a peft adapter directory (adapter_config.json + adapter_model.safetensors)
            from paddleport.peft.methods import framework_module

            framework_module(self.peft, "torch").save_adapter(self.model, self.peft, directory, self.base_model_dir)
        elif self._fsdp:
            state, self._gathered_model_state = self._gathered_model_state, None
            if state is None:
                raise RuntimeError("prepare_to_save() must gather a sharded model before save_model()")
            self.model.save_pretrained(str(directory), state_dict=state)
        else:
            self.model.save_pretrained(str(directory))

    def load_model_weights(self, directory: Path) -> None:
        if self.peft is not None:
            from paddleport.peft.methods import framework_module

            return framework_module(self.peft, "torch").load_adapter_weights(self.model, self.peft, directory)
        from safetensors.torch import load_file

        state = load_file(str(Path(directory) / "model.safetensors"), device=str(self.device))
        missing = set(dict(self.model.named_parameters())) - set(state)
        if missing:
            raise PaddleportError(directory, f"lacks parameters {', '.join(sorted(missing)[:5])}")
        if self._fsdp and self.train_module is not None:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

            state = {name: value.cpu() for name, value in state.items()}
            set_model_state_dict(self.model, state, options=StateDictOptions(full_state_dict=True, strict=False))
        else:
            self.model.load_state_dict(state, strict=False)

    # -- training ------------------------------------------------------------------------------
    def build_optimizer(self, config: OptimizerConfig) -> None:
        self._wrap_for_parallel()
        named = [(name, param) for name, param in self.model.named_parameters() if param.requires_grad]
        groups = [
            {"params": [p for n, p in named if uses_weight_decay(n)], "weight_decay": config.weight_decay},
            {"params": [p for n, p in named if not uses_weight_decay(n)], "weight_decay": 0.0},
        ]
        # The fused kernel (CPU and CUDA) is several times faster than the default for-each one on CPU.
        settings = dict(lr=config.lr, betas=config.betas, eps=config.eps, fused=True)
        if self.options.sharding == "zero1":
            from torch.distributed.optim import ZeroRedundancyOptimizer

            self.optimizer = ZeroRedundancyOptimizer(groups, optimizer_class=torch.optim.AdamW, **settings)
        else:
            self.optimizer = torch.optim.AdamW(groups, **settings)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, linear_warmup_decay(config.warmup_steps, config.total_steps))
        self.max_grad_norm = config.max_grad_norm

    def set_train_mode(self, training: bool) -> None:
        (self.model if self.train_module is None else self.train_module).train(training)

    def _autocast(self):
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.options.amp)
        return torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None)

    def _tensors(self, batch: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        batch = {**batch, **model_inputs(batch, self.input_names)}  # ERNIE's task types when the data has none
        return {name: torch.from_numpy(value).to(self.device) for name, value in batch.items()}

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.regression:
            return F.mse_loss(logits.float().squeeze(-1), labels.float())
        return F.cross_entropy(logits.float(), labels)

    def _logits(self, tensors: dict[str, torch.Tensor], module: torch.nn.Module | None = None) -> torch.Tensor:
        with self._autocast():
            module = self.model if module is None else module
            return module(**{name: tensors[name] for name in self.input_names}).logits

    def _forward_backward(self, batch: dict[str, np.ndarray], loss_weight: float) -> float:
        tensors = self._tensors(batch)
        loss = self._loss(self._logits(tensors, self.train_module), tensors["labels"])
        self.scaler.scale(loss * loss_weight).backward()
        return float(loss.detach())

    def optimizer_step(self) -> None:
        self.scaler.unscale_(self.optimizer)
        if self.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.max_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)

    def current_lr(self) -> float:
        return float(self.scheduler.get_last_lr()[0])

    def predict(self, batch: dict[str, np.ndarray]) -> tuple[float, np.ndarray]:
        tensors = self._tensors(batch)
        with torch.no_grad():
            logits = self._logits(tensors).float()
            loss = float(self._loss(logits, tensors["labels"])) if "labels" in tensors else float("nan")
        return loss, logits.cpu().numpy()

    # -- state ---------------------------------------------------------------------------------
    def _seed_framework(self, seed: int) -> None:
        torch.manual_seed(seed)

    def _optimizer_state(self) -> tuple[str, dict]:
        if self._fsdp:
            state, self._gathered_optimizer_state = self._gathered_optimizer_state, None
            if state is None:
                raise RuntimeError("prepare_to_save(with_training_state=True) must run before saving")
            return BY_NAME, state
        return INDEXED, self.optimizer.state_dict()  # zero1: consolidated on rank 0 by prepare_to_save

    def _load_optimizer_state(self, layout: str, state: dict) -> None:
        expected = BY_NAME if self._fsdp else INDEXED
        if layout != expected:
            written_by = "zero2/fsdp" if layout == BY_NAME else "none/zero1"
            raise PaddleportError("--sharding", f"the checkpoint's optimizer state was written with --sharding "
                                                f"{written_by}; resume with one of those")
        if layout == BY_NAME:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

            set_optimizer_state_dict(self.model, self.optimizer, state, options=StateDictOptions(full_state_dict=True))
        else:
            self.optimizer.load_state_dict(state)

    def save_training_state(self, directory: Path) -> None:
        layout, optimizer_state = self._optimizer_state()
        state = {"optimizer": optimizer_state, "optimizer_layout": layout, "scheduler": self.scheduler.state_dict(),
                 "scaler": self.scaler.state_dict()}
        write_training_state(directory, state, torch.is_tensor, _save_tensors)

    def load_training_state(self, directory: Path) -> None:
        from safetensors.torch import load_file

        if has_training_state(directory):
            state = read_training_state(directory, load_file)
        else:
            state = self._read_legacy_state(Path(directory) / LEGACY_STATE_FILE)
        try:
            self._load_optimizer_state(state.get("optimizer_layout", INDEXED), state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            if state["scaler"]:
                self.scaler.load_state_dict(state["scaler"])
        except (KeyError, TypeError, ValueError, RuntimeError) as error:
            raise PaddleportError(directory, f"holds training state that does not fit this run ({error!r})") from None

    def _read_legacy_state(self, path: Path) -> dict:
        """``training_state.pt`` of paddleport before safetensors + JSON: read with ``weights_only=True`` (no code
        runs); it also holds rank 0's RNG state, restored here."""
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise PaddleportError(path.parent, "holds no training state (training_state.json missing)") from None
        except Exception as error:  # UnpicklingError for anything but tensors and containers
            message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise PaddleportError(path, f"refused or unreadable ({message})") from None
        if not isinstance(state, dict):
            raise PaddleportError(path, "does not hold a dictionary of training state")
        legacy_rng = {"cpu": _encode_bytes(state["rng"]) if "rng" in state else None,
                      "cuda": _encode_bytes(state["cuda_rng"]) if "cuda_rng" in state else None}
        self.load_rng_state({"framework": legacy_rng, "dropout_masks": state.get("dropout_masks")}, path)
        return state

    def _framework_rng_state(self) -> dict:
        return {"cpu": _encode_bytes(torch.get_rng_state()),
                "cuda": _encode_bytes(torch.cuda.get_rng_state()) if self.device.type == "cuda" else None}

    def _load_framework_rng_state(self, state: dict, source: Path) -> None:
        try:
            if state.get("cpu") is not None:
                torch.set_rng_state(_decode_bytes(state["cpu"]))
            if state.get("cuda") is not None and self.device.type == "cuda":
                torch.cuda.set_rng_state(_decode_bytes(state["cuda"]))
        except (AttributeError, TypeError, ValueError, RuntimeError) as error:
            raise PaddleportError(source, f"has a malformed torch RNG state ({error!r})") from None

    def peak_device_memory_mb(self) -> float | None:
        if self.device.type != "cuda":
            return None
        return torch.cuda.max_memory_allocated(self.device) / 2**20


def _save_tensors(tensors: dict[str, torch.Tensor], path: str) -> None:
    from safetensors.torch import save_file

    # clone: safetensors refuses tensors that share memory
    save_file({name: tensor.detach().cpu().contiguous().clone() for name, tensor in tensors.items()}, path)


def _encode_bytes(generator_state: torch.Tensor) -> str:
    """A torch generator state (uint8 tensor) as base64 text for JSON."""
    return base64.b64encode(generator_state.cpu().numpy().tobytes()).decode("ascii")


def _decode_bytes(text: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(text, validate=True)), dtype=torch.uint8)
