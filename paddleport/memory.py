"""``paddleport estimate-memory``: training memory of a BERT-family encoder from its config alone.

Parameters and their count come from the conversion table (``parameter_specs``; no model is built, so a 3B
config is as cheap as a tiny one). Activations follow what autograd keeps for a backward pass through one
encoder layer (``layer_activation_terms``): a Linear keeps its input only when its weight trains; the attention
matmuls keep Q, K, V and the (dropped) probabilities; softmax keeps its output, GELU its input, LayerNorm its
input, dropout a 1-byte mask (native masks). LoRA adds, per wrapped module, its dropout's output and mask and A's output.
Gradient checkpointing keeps each layer's input plus one layer's activations while it is recomputed.

``measure_training_step`` runs one real training step (the run-glue backend: forward, backward, optimizer
step) on ``batch_size x max_length`` tokens and reports the process's peak resident memory above what it held
before the model was built (CPU), or the framework's peak allocated memory (GPU).
"""

from __future__ import annotations

import json
import math
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path

from paddleport.errors import PaddleportError
from paddleport.peft.lora import LoraSettings
from paddleport.peft.methods import plan_for_checkpoint

AMP_MODES = ("none", "bf16", "fp16")
FRAMEWORKS = ("torch", "paddle")
OPTIMIZERS = ("adamw", "sgd")
OPTIMIZER_STATES = {"adamw": 2, "sgd": 0}  # fp32 values kept per trained element (AdamW: exp_avg, exp_avg_sq)
MASK_BYTES = 1  # a dropout mask (bool / uint8)
MIB = 2**20


@dataclass(frozen=True)
class MemoryRequest:
    model: Path  # a model directory or a config.json
    batch_size: int
    max_length: int
    amp: str = "none"
    optimizer: str = "adamw"
    gradient_checkpointing: bool = False
    lora: LoraSettings | None = None  # a PEFT method's settings (LoraSettings, BottleneckSettings) or None
    num_labels: int = 2
    framework: str = "torch"  # whose autograd the activation terms follow (torch, or Paddle with paddleport's model)

    def check(self) -> None:
        for option, value in (("--batch-size", self.batch_size), ("--max-length", self.max_length)):
            if value <= 0:
                raise PaddleportError(option, f"must be positive, got {value}")
        if self.amp not in AMP_MODES:
            raise PaddleportError("--amp", f"must be one of {', '.join(AMP_MODES)}, not {self.amp!r}")
        if self.framework not in FRAMEWORKS:
            raise PaddleportError("--framework", f"must be torch or paddle, not {self.framework!r}")
        if self.optimizer not in OPTIMIZERS:
            raise PaddleportError("--optimizer", f"must be one of {', '.join(OPTIMIZERS)}, not {self.optimizer!r}")


@dataclass
class MemoryEstimate:
    model_type: str
    parameters: int  # elements of the model (with LoRA: base + adapter)
    trainable: int  # elements the optimizer updates
    bytes: dict[str, int] = field(default_factory=dict)  # parameters, gradients, optimizer, activations, overhead
    activation_terms: dict[str, int] = field(default_factory=dict)  # bytes per part, for the whole batch
    request: dict = field(default_factory=dict)
    measured: dict | None = None  # filled by measure_training_step

    @property
    def total(self) -> int:
        return sum(self.bytes.values())

    def as_json(self) -> dict:
        return asdict(self) | {"total": self.total}

    def table(self) -> str:
        rows = [("parameters", f"{self.parameters:,} elements ({self.trainable:,} trained)")]
        rows += [(name, f"{value / MIB:,.1f} MiB") for name, value in self.bytes.items()]
        rows.append(("total (estimate)", f"{self.total / MIB:,.1f} MiB ({self.total / 2**30:,.2f} GiB)"))
        if self.measured:
            measured = self.measured
            rows.append((f"measured peak ({measured['framework']}, {measured['what']})",
                         f"{measured['peak_bytes'] / MIB:,.1f} MiB (estimate / measured "
                         f"{measured['estimate_bytes'] / max(measured['peak_bytes'], 1):.3f})"))
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def read_model_config(path: Path) -> dict:
    path = Path(path)
    config_path = path / "config.json" if path.is_dir() else path
    if not config_path.is_file():
        raise PaddleportError(path, "has no config.json" if path.is_dir() else "config file not found")
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as error:
        raise PaddleportError(config_path, f"is not valid JSON ({error})") from None
    return _with_common_names(config, config_path)


def _with_common_names(config: dict, source: Path) -> dict:
    """config.json with the sizes the estimate reads also under their common names where the architecture has its
    own (DistilBERT's ``dim``, ``n_layers``, ``n_heads``, ``hidden_dim``: its config class's ``attribute_map``)."""
    from paddleport.registry import architecture

    if not isinstance(config, dict):
        raise PaddleportError(source, "is not a JSON object")
    own_names = architecture(config.get("model_type"), source).config_class.attribute_map
    return {common: config[own] for common, own in own_names.items() if own in config} | config


def _parameter_counts(config: dict, request: MemoryRequest) -> tuple[int, int, int, object]:
    """(all elements, trained elements, Linear-weight elements, LoRA plan or None), from the tables."""
    from paddleport.convert import parameter_specs
    from paddleport.convert.transforms import LINEAR_WEIGHT
    from paddleport.peft.methods import sequence_classification_class

    settings = request.lora or LoraSettings(target_modules=(), modules_to_save=())
    if request.lora is not None:
        plan = plan_for_checkpoint(config, request.num_labels, settings)
        shapes = {param.name: (param.hf_shape, param.trainable, param.transform) for param in plan.params}
    else:
        plan = None
        clean = {key: value for key, value in config.items() if key not in ("id2label", "label2id")}
        specs = parameter_specs(clean | {"num_labels": request.num_labels}, sequence_classification_class(config))
        shapes = {spec.hf_name: (spec.hf_shape, True, spec.transform) for spec in specs}
    total = sum(math.prod(shape) for shape, _, _ in shapes.values())
    trained = sum(math.prod(shape) for shape, trains, _ in shapes.values() if trains)
    linear = sum(math.prod(shape) for shape, _, transform in shapes.values() if transform is LINEAR_WEIGHT)
    return total, trained, linear, plan


def layer_activation_terms(config: dict, tokens: int, length: int, element: int, plan,
                           framework: str = "torch") -> dict[str, int]:
    """Bytes autograd keeps for one encoder layer over ``tokens`` = batch x length tokens (measured with
    ``saved_tensors_hooks`` on MiniLM in both frameworks).

    torch: a Linear keeps its input only when its weight trains (with LoRA the frozen base Linears keep none);
    its math attention keeps the probabilities three times (softmax output, dropped, the batched matmul's
    contiguous copy) and every dropout a 1-byte mask. Paddle (paddleport's model): ``matmul`` keeps both
    operands whether or not the weight trains, the attention keeps the probabilities twice, and paddleport's
    dropout keeps no mask. A PEFT ``plan`` adds its own paths.
    """
    hidden, heads = config["hidden_size"], config["num_attention_heads"]
    intermediate = config["intermediate_size"]
    attention_dropout = config.get("attention_probs_dropout_prob", 0.1) > 0
    hidden_dropout = config.get("hidden_dropout_prob", 0.1) > 0
    torch_side = framework == "torch"
    scores = tokens * heads * length  # b * h * L^2
    terms = {
        "q, k, v (attention matmuls)": 3 * tokens * hidden * element,
        "softmax output": scores * element,
        "dropped attention probabilities": scores * element if attention_dropout else 0,
        # the probabilities as the batched matmul's contiguous [b*h, L, L] operand (torch's math attention path)
        "probabilities, batched-matmul copy": scores * element if torch_side else 0,
        "attention dropout mask": scores * MASK_BYTES if attention_dropout and torch_side else 0,
        "layer-norm inputs (2)": 2 * tokens * hidden * element,
        "GELU input": tokens * intermediate * element,
        "hidden dropout masks (2)": 2 * tokens * hidden * MASK_BYTES if hidden_dropout and torch_side else 0,
    }
    # The inputs of the four Linear layers (x once for q, k, v), kept for the weight gradients.
    base_trains = plan is None
    terms["Linear inputs (x, context, LN output, GELU output)"] = (
        (3 * hidden + intermediate) * tokens * element if base_trains or not torch_side else 0)
    if plan is not None and hasattr(plan, "wrapped"):  # LoRA
        settings = plan.settings
        lora_a_shapes = {param.name: param.hf_shape for param in plan.params}
        lora = 0
        for module in plan.wrapped:
            if ".layer.0." not in module and ".layers.0." not in module:
                continue  # one layer's modules
            size = lora_a_shapes[f"{module}.lora_A.weight"][1]  # A [r, in] or [r, in, 1]: the module's input width
            lora += tokens * settings.r * element  # A's output, kept by B
            if settings.lora_dropout > 0:  # the dropout's output, kept by A (and torch's mask)
                lora += tokens * size * (element + (MASK_BYTES if torch_side else 0))
        terms["LoRA paths (dropout output + mask, A output)"] = lora
    elif plan is not None:  # bottleneck adapters
        per_adapter = tokens * hidden * element + 2 * tokens * plan.bottleneck * element  # down's input, act in/out
        if plan.settings.original_ln_before:  # Pfeiffer: the extra LayerNorm's input
            per_adapter += tokens * hidden * element
        terms["adapter paths (input, bottleneck activations)"] = plan.adapters_per_layer * per_adapter
    return terms


def _layer_trained_elements(plan, config: dict, total_trained: int) -> int:
    """Trained elements of one encoder layer (whose gradients exist while its activations are still alive)."""
    layers = config["num_hidden_layers"]
    if plan is None:
        hidden, intermediate = config["hidden_size"], config["intermediate_size"]
        return 4 * hidden * hidden + 2 * hidden * intermediate + 9 * hidden + intermediate
    return sum(math.prod(param.hf_shape) for param in plan.trainable
               if ".layer.0." in param.name or ".layers.0." in param.name) or total_trained // max(layers, 1)


def estimate_memory(request: MemoryRequest) -> MemoryEstimate:
    """Parameters, gradients, optimizer state, activations and overhead of one training step (see module doc)."""
    request.check()
    config = read_model_config(request.model)
    layers, hidden = config["num_hidden_layers"], config["hidden_size"]
    total, trained, linear, plan = _parameter_counts(config, request)
    tokens, length = request.batch_size * request.max_length, request.max_length
    element = 4 if request.amp == "none" else 2  # activations of matmuls under autocast are half precision
    per_layer = layer_activation_terms(config, tokens, length, element, plan, request.framework)
    layer_bytes = sum(per_layer.values())
    embeddings = tokens * hidden * (element + MASK_BYTES)  # embedding LayerNorm input, dropout mask
    if request.gradient_checkpointing:
        kept = {"layer inputs (checkpointed)": layers * tokens * hidden * element,
                "one layer recomputed": layer_bytes}
    else:
        kept = {f"{name} x {layers} layers": value * layers for name, value in per_layer.items()}
    activation_terms = {"embeddings (LayerNorm input, dropout mask)": embeddings, **kept}
    activations = sum(activation_terms.values())
    amp_weight_copies = 2 * linear if request.amp != "none" else 0  # autocast's half-precision Linear weights
    overhead = layer_bytes  # backward holds one layer's activation gradients while its saved tensors live
    # Both backends free the gradients after each optimizer step (torch zero_grad(set_to_none=True), Paddle
    # clear_grad(set_to_zero=False)), and backward creates them layer by layer as it frees that layer's
    # activations: the peak is at the start of backward (activations + one layer's gradients) unless the
    # gradients alone, at its end, are larger.
    all_gradients = 4 * trained
    at_peak = max(4 * _layer_trained_elements(plan, config, trained),
                  all_gradients - activations - overhead)
    memory = {
        "parameters": 4 * total + amp_weight_copies,
        "gradients at the peak": min(at_peak, all_gradients),
        "optimizer state": 4 * OPTIMIZER_STATES[request.optimizer] * trained,
        "activations": activations,
        "framework overhead": overhead,
    }
    request_json = {key: str(value) if isinstance(value, Path) else value
                    for key, value in asdict(request).items() if key != "lora"}
    request_json["peft"] = ("none" if request.lora is None else
                            "lora" if isinstance(request.lora, LoraSettings) else "adapter")
    return MemoryEstimate(config.get("model_type", "?"), total, trained, memory,
                          {name: int(value) for name, value in activation_terms.items()}, request_json)


# ------------------------------------------------------------------------------------------- measuring


def _rss() -> int:
    """The process's anonymous resident memory (Linux ``RssAnon``: heap and mappings it allocated), which leaves
    out file-backed pages: the first training step pages in ~90 MiB of torch's library code, which stays
    resident and is no memory the training holds. Elsewhere the whole resident set."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import psutil

    return psutil.Process().memory_info().rss


class _PeakSampler:
    """Samples this process's resident memory every millisecond in a thread (the peak of a step)."""

    def __init__(self) -> None:
        self.peak = _rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.001):
            self.peak = max(self.peak, _rss())

    def __enter__(self) -> "_PeakSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())


def measure_training_step(request: MemoryRequest, framework: str, estimate: MemoryEstimate, steps: int = 2) -> dict:
    """Peak memory of ``steps`` real training steps (run-glue's backend, seeded random tokens, every position
    kept) above the process's memory before the model was built. The parameters are counted in both."""
    import numpy as np

    from paddleport.glue_runners.backends.base import BackendOptions, OptimizerConfig, make_backend
    from paddleport.glue_runners.checkpoint_info import inspect_model_dir

    if request.optimizer != "adamw":
        raise PaddleportError("--optimizer", "--measure runs run-glue's backend, which trains with adamw")
    model_dir = Path(request.model)
    if not model_dir.is_dir():
        raise PaddleportError("--model", "--measure needs a model directory (weights), not a config file")
    info = inspect_model_dir(model_dir)
    options = BackendOptions(amp=request.amp, gradient_checkpointing=request.gradient_checkpointing,
                             peft=request.lora)
    backend = make_backend(framework, options)
    rng = np.random.default_rng(0)
    vocab = int(info.config["vocab_size"])
    shape = (request.batch_size, request.max_length)
    batch = {"input_ids": rng.integers(1000, vocab, size=shape, dtype=np.int64),
             "token_type_ids": np.zeros(shape, dtype=np.int64), "attention_mask": np.ones(shape, dtype=np.int64),
             "labels": rng.integers(0, request.num_labels, size=request.batch_size, dtype=np.int64)}
    import tempfile

    from paddleport.runtime import freed_memory_returned

    # freed blocks go back to the OS at once, so the resident set follows the bytes held, not the allocator's
    # high-water mark (glibc keeps freed heap blocks; which of them a later tensor can reuse varies)
    with tempfile.TemporaryDirectory(prefix="paddleport-memory-") as work, freed_memory_returned() as returned:
        backend.load_model(model_dir, request.num_labels, Path(work))
        backend.build_optimizer(OptimizerConfig(lr=1e-5, weight_decay=0.01, warmup_steps=0, total_steps=steps,
                                                max_grad_norm=1.0))
        backend.set_train_mode(True)
        loaded = _rss()
        with _PeakSampler() as sampler:
            for _ in range(steps):
                backend.forward_backward(batch, 1.0)
                backend.optimizer_step()
    device_peak = backend.peak_device_memory_mb()
    weights = estimate.bytes["parameters"]
    if device_peak is not None:
        peak, what = int(device_peak * MIB), "max allocated"
    else:  # the step's growth above the loaded model (its weights resident), plus the weights themselves:
        # the process's own baseline (libraries, imported code, the checkpoint's mapped pages) is left out
        peak = sampler.peak - loaded + weights
        what = "anonymous RSS growth over the steps + weights" + ("" if returned else " (malloc keeps freed blocks)")
    return {"framework": framework, "what": what, "peak_bytes": int(peak), "loaded_rss_bytes": int(loaded),
            "step_growth_bytes": int(sampler.peak - loaded), "estimate_bytes": estimate.total, "steps": steps}
