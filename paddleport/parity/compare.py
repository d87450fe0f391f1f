"""Forward and gradient parity between a Hugging Face checkpoint (transformers, torch) and its Paddle port.

Forward: every batch runs through both models in eval mode with ``output_hidden_states``; the embeddings
output, each layer's hidden state, the pooled output and the logits are compared at every position the
attention mask keeps. Padding positions are left out: nothing downstream reads them, and their values are
ill-conditioned (a pad token at a far position, attending to a few real tokens, sits on large LayerNorm
outlier dimensions: on all-MiniLM-L6-v2 they differ by up to 1.1e-4 while the kept positions stay within 5e-6).

Gradients (``grad=True``): one forward + backward pass of the task loss on the first batch with dropout off
(eval mode); Paddle gradients are mapped to the Hugging Face layout through the converter's
``parameter_specs`` (``transform.to_hf``).  A gradient passes when max |Δ| <= atol or
max |Δ| <= ``GRAD_RTOL_OF_MAX`` × (largest |HF gradient| entry of that tensor).

Half precision: float16 / bfloat16 run both models in that dtype and compare the outputs (cast to float32)
with looser default tolerances (``DEFAULT_ATOL``); each dtype needs kernels in both frameworks on the
chosen device, otherwise a one-line error.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from paddleport.errors import PaddleportError
from paddleport.parity import devices
from paddleport.parity.inputs import DEFAULT_LIMIT, EncodedBatches, load_parity_batches
from paddleport.parity.loading import CheckpointPair, check_pair, load_paddle_model, load_torch_model
from paddleport.parity.outputs import compared_outputs, compared_positions
from paddleport.parity.report import GradReport, ParityReport, TensorDiff
from paddleport.registry import architecture_of_class, input_names_of, model_inputs

# Default max |Δ| per dtype.  Half precision carries ~3 (bf16) or ~4 (fp16) significant digits, and the
# two frameworks round at different places, so differences grow with depth; these bound a 12-layer base model.
DEFAULT_ATOL = {"float32": 1e-5, "float16": 5e-2, "bfloat16": 2.5e-1}
GRAD_RTOL_OF_MAX = 1e-5
MLM_LABEL_FRACTION = 0.15
# The head outputs compared after the hidden states (a span head has two).
TASK_OUTPUTS = ("logits", "start_logits", "end_logits")


def compare_models(
    hf_dir: str | Path,
    paddle_dir: str | Path,
    *,
    inputs: str | Path | None = None,
    batch_size: int = 8,
    max_length: int | None = None,
    atol: float | None = None,
    grad: bool = False,
    dtype: str = "float32",
    device: str = "cpu",
    limit: int | None = DEFAULT_LIMIT,
    seed: int = 0,
    hf_adapter: str | Path | None = None,
    paddle_adapter: str | Path | None = None,
) -> ParityReport:
    """Run both models on the same real inputs and report per-tensor differences (see module doc).

    With ``hf_adapter`` / ``paddle_adapter`` (peft LoRA directories), the compared models are the bases with
    their adapters applied: transformers + peft against paddleport's model with its LoRA layers."""
    pair = check_pair(hf_dir, paddle_dir)
    if architecture_of_class(pair.architecture).task_of(pair.architecture) == "multiple_choice":
        raise PaddleportError(hf_dir, f"{pair.architecture} takes [batch, choices, seq] inputs; compare feeds "
                                      "[batch, seq] batches (compare the base model, or test the head in Python)")
    check_precision(dtype, device)
    atol = DEFAULT_ATOL[dtype] if atol is None else float(atol)
    max_length = _checked_max_length(pair, max_length)
    encoded = load_parity_batches(hf_dir, inputs, batch_size=batch_size, max_length=max_length, limit=limit, seed=seed)
    with contextlib.ExitStack() as stack:
        if hf_adapter is None and paddle_adapter is None:
            torch_model, paddle_model = load_torch_model(pair), load_paddle_model(pair)
        else:
            torch_model, paddle_model = _load_adapted_pair(pair, hf_adapter, paddle_adapter, grad, stack)
            pair.architecture = type(paddle_model).__name__
        return _compare_loaded(pair, torch_model, paddle_model, encoded, atol=atol, grad=grad, dtype=dtype,
                               device=device, seed=seed)


def _load_adapted_pair(pair: CheckpointPair, hf_adapter, paddle_adapter, grad: bool, stack: contextlib.ExitStack):
    """transformers + peft with ``hf_adapter`` on the HF base, paddleport + LoRA with ``paddle_adapter`` on the
    Paddle base (each adapter in either layout)."""
    import tempfile

    from paddleport.peft.adapters import load_adapted_model

    if hf_adapter is None or paddle_adapter is None:
        raise PaddleportError("--hf-adapter" if hf_adapter is None else "--paddle-adapter",
                              "adapters are compared in pairs: give both --hf-adapter and --paddle-adapter")
    if grad:
        raise PaddleportError("--grad", "gradients of adapted models are compared by train-parity --peft lora")
    work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="paddleport-compare-")))
    torch_model, _ = load_adapted_model(Path(hf_adapter), pair.hf_dir, "torch", work / "torch")
    paddle_model, _ = load_adapted_model(Path(paddle_adapter), pair.paddle_dir, "paddle", work / "paddle")
    return torch_model, paddle_model


def _compare_loaded(pair: CheckpointPair, torch_model, paddle_model, encoded: EncodedBatches, *, atol: float,
                    grad: bool, dtype: str, device: str, seed: int) -> ParityReport:
    expected = compared_outputs(pair.config, pair.architecture)
    with exact_float32_matmuls(device):
        tensors = forward_diffs(torch_model, paddle_model, encoded, expected, dtype=dtype, device=device)
        grad_report = None
        if grad:
            grad_report = gradient_diffs(torch_model, paddle_model, pair, encoded.batches[0], atol=atol,
                                         dtype=dtype, device=device, seed=seed)
    verdicts = [diff.check_atol(atol) for diff in tensors]  # every tensor gets its verdict, not only up to the first
    first_failure = next((diff.name for diff, passed in zip(tensors, verdicts) if not passed), None)
    passed = first_failure is None and (grad_report is None or grad_report.passed)
    return ParityReport(
        passed=passed, atol=atol, dtype=dtype, device=device, architecture=pair.architecture,
        hf_dir=str(pair.hf_dir), paddle_dir=str(pair.paddle_dir), tensors=tensors, first_failure=first_failure,
        inputs=encoded.describe(), grad=grad_report,
    )


@contextlib.contextmanager
def exact_float32_matmuls(device: str) -> Iterator[None]:
    """torch's TF32 matmuls off on GPU for the comparison (they would hide float32 differences behind 1e-3
    noise), and back to what they were afterwards."""
    if device != "gpu":
        yield
        return
    import torch

    previous = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = previous


def check_precision(dtype: str, device: str) -> None:
    """A one-line error unless both frameworks have kernels for ``dtype`` on ``device``."""
    if dtype not in devices.DTYPES:
        raise PaddleportError("--dtype", f"unknown dtype {dtype!r} (choose from {', '.join(devices.DTYPES)})")
    devices.require_device(device)
    reason = devices.torch_supports(dtype, device) or devices.paddle_eager_supports(dtype, device)
    if reason:
        raise PaddleportError("--dtype", f"{dtype} cannot be compared on {device}: {reason}")


def _checked_max_length(pair: CheckpointPair, max_length: int | None) -> int:
    if max_length is None:
        return min(128, pair.max_positions)
    if max_length > pair.max_positions:
        raise PaddleportError("--max-length", f"{max_length} exceeds the model's max_position_embeddings "
                                              f"{pair.max_positions}")
    return max_length


# --- forward ---------------------------------------------------------------------------------

def forward_diffs(torch_model, paddle_model, encoded: EncodedBatches, expected: dict[str, str], *,
                  dtype: str = "float32", device: str = "cpu") -> list[TensorDiff]:
    """Per-tensor differences over every batch, in forward order.

    ``expected`` (``outputs.compared_outputs``) names every tensor to compare and whether it is per token or per
    sequence; an output missing from either framework, or one not expected, is an error, never a silent skip.
    """
    torch_run = TorchRunner(torch_model, dtype, device)
    paddle_run = PaddleRunner(paddle_model, dtype, device)
    diffs = {name: TensorDiff(name) for name in expected}
    for index, batch in enumerate(encoded.batches):
        reference, ours = torch_run.outputs(batch), paddle_run.outputs(batch)
        for framework, named in (("transformers", reference), ("Paddle", ours)):
            if list(named) != list(expected):
                raise PaddleportError(None, f"the {framework} model produced {', '.join(named)}; expected "
                                            f"{', '.join(expected)}")
        for name, level in expected.items():
            diffs[name].update(ours[name], reference[name], compared_positions(level, batch["attention_mask"]),
                               batch=index)
    return list(diffs.values())


def named_outputs(output, pooled) -> dict[str, np.ndarray]:
    """embeddings, layer.0 … layer.N-1, pooler_output, logits: the tensors compared, in forward order.

    ``output`` is either framework's model output; ``pooled`` the pooler's output (or None) and every
    tensor has already been converted to a float32 numpy array by the caller's ``to_numpy``.
    """
    hidden_states = output["hidden_states"]
    named = {"embeddings": hidden_states[0]}
    named.update({f"layer.{index}": state for index, state in enumerate(hidden_states[1:])})
    if pooled is not None:
        named["pooler_output"] = pooled
    for name in TASK_OUTPUTS:
        if output.get(name) is not None:
            named[name] = output[name]
    return named


def pooler_name(named_modules: list[str]) -> str | None:
    """The pooler sub-module shared by both frameworks (its name equals the HF parameter prefix)."""
    return next((name for name in named_modules if name == "pooler" or name.endswith(".pooler")), None)


class _Runner:
    """One framework's model in eval mode; ``outputs`` returns the compared tensors as float32 numpy.

    Subclasses supply ``_pooler_hook(callback) -> handle``, ``_forward(batch)`` and ``_to_numpy``.
    """

    pooler: str | None

    def outputs(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        captured: list = []
        hook = self._pooler_hook(captured.append) if self.pooler is not None else None
        try:
            output = self._forward(batch)
        finally:
            if hook is not None:
                hook.remove()
        pooled = getattr(output, "pooler_output", None)
        pooled = pooled if pooled is not None else (captured[0] if captured else None)
        return _as_numpy(named_outputs(_fields(output), pooled), self._to_numpy)


class TorchRunner(_Runner):
    """transformers model in eval mode on ``device`` and ``dtype``."""

    def __init__(self, model, dtype: str, device: str):
        import torch

        self.torch = torch
        self.device = devices.torch_device(device)
        self.model = model.to(device=self.device, dtype=getattr(torch, dtype)).eval()
        self.input_names = input_names_of(model.config)
        self.pooler = pooler_name([name for name, module in model.named_modules() if module is not None])

    def tensors(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        return {key: self.torch.from_numpy(value).to(self.device)
                for key, value in model_inputs(batch, self.input_names).items()}

    def _pooler_hook(self, callback):
        return self.model.get_submodule(self.pooler).register_forward_hook(lambda m, i, o: callback(o))

    def _forward(self, batch: dict[str, np.ndarray]):
        with self.torch.no_grad():
            return self.model(**self.tensors(batch), output_hidden_states=True, return_dict=True)

    @staticmethod
    def _to_numpy(tensor) -> np.ndarray:
        return tensor.detach().float().cpu().numpy()


class PaddleRunner(_Runner):
    """Our Paddle model in eval mode on ``device`` and ``dtype``."""

    def __init__(self, model, dtype: str, device: str):
        import paddle

        devices.set_paddle_device(device)
        self.paddle = paddle
        if dtype != "float32":
            model.to(dtype=dtype)
        self.model = model
        self.model.eval()
        self.pooler = pooler_name([name for name, layer in model.named_sublayers() if layer is not None])

    def tensors(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        return {key: self.paddle.to_tensor(value) for key, value in model_inputs(batch, self.model.input_names).items()}

    def _pooler_hook(self, callback):
        layer = dict(self.model.named_sublayers())[self.pooler]
        return layer.register_forward_post_hook(lambda lay, i, o: callback(o))

    def _forward(self, batch: dict[str, np.ndarray]):
        with self.paddle.no_grad():
            return self.model(**self.tensors(batch), output_hidden_states=True)

    def _to_numpy(self, tensor) -> np.ndarray:
        return tensor.astype("float32").numpy()


def _fields(output) -> dict[str, Any]:
    return {"hidden_states": output.hidden_states, "loss": getattr(output, "loss", None),
            **{name: getattr(output, name, None) for name in TASK_OUTPUTS}}


def _as_numpy(named: dict[str, Any], to_numpy: Callable[[Any], np.ndarray]) -> dict[str, np.ndarray]:
    return {name: to_numpy(value) for name, value in named.items()}


# --- gradients -------------------------------------------------------------------------------

def gradient_diffs(torch_model, paddle_model, pair: CheckpointPair, batch: dict[str, np.ndarray], *,
                   atol: float, dtype: str = "float32", device: str = "cpu", seed: int = 0) -> GradReport:
    """One forward + backward pass of the task loss in both frameworks; compare every parameter's gradient."""
    from paddleport.convert import parameter_specs

    labels = task_labels(pair, batch, seed)
    base_weights = _base_loss_weights(pair, batch, seed) if labels is None else None
    torch_loss, torch_grads = _torch_gradients(torch_model, batch, labels, base_weights, dtype, device)
    paddle_loss, paddle_grads = _paddle_gradients(paddle_model, batch, labels, base_weights, dtype, device)
    loss = TensorDiff("loss")
    loss.update(np.asarray(paddle_loss), np.asarray(torch_loss))  # a NaN loss fails (metrics.difference)
    loss.check_atol_or_scaled(atol, GRAD_RTOL_OF_MAX)
    specs = parameter_specs(pair.config, pair.architecture)
    uncompared = sorted(set(paddle_grads) - {spec.paddle_name for spec in specs})
    if uncompared:  # every parameter of the Paddle model has its gradient compared
        raise PaddleportError(None, f"Paddle parameters outside the conversion table: {', '.join(uncompared[:5])}")
    diffs = []
    for spec in specs:
        if spec.hf_name not in torch_grads or spec.paddle_name not in paddle_grads:
            missing = spec.hf_name if spec.hf_name not in torch_grads else spec.paddle_name
            raise PaddleportError(None, f"no gradient for parameter {missing}")
        diff = TensorDiff(spec.hf_name)
        diff.update(np.asarray(spec.transform.to_hf(paddle_grads[spec.paddle_name])), torch_grads[spec.hf_name])
        diff.check_atol_or_scaled(atol, GRAD_RTOL_OF_MAX)
        diffs.append(diff)
    first_failure = next((diff.name for diff in [loss, *diffs] if not diff.passed), None)
    return GradReport(passed=first_failure is None, atol=atol, rtol_of_max=GRAD_RTOL_OF_MAX, loss=loss,
                      tensors=diffs, first_failure=first_failure)


def task_labels(pair: CheckpointPair, batch: dict[str, np.ndarray], seed: int) -> dict[str, np.ndarray] | None:
    """The head's loss targets, keyed by argument name: the data's labels for a sequence classifier, seeded
    token targets for a masked LM, per-token classes or answer spans; None for a base model."""
    task = architecture_of_class(pair.architecture).task_of(pair.architecture)
    rng = np.random.default_rng(seed)
    if task == "sequence_classification":
        return {"labels": batch["labels"] % pair.num_labels}
    if task == "masked_lm":
        return {"labels": masked_lm_labels(batch, seed)}
    if task == "token_classification":
        kept = batch["attention_mask"].astype(bool)
        classes = rng.integers(0, pair.num_labels, size=kept.shape)
        return {"labels": np.where(kept, classes, -100).astype(np.int64)}
    if task == "pretraining":  # ELECTRA's discriminator: a seeded 0/1 "replaced" target per token
        return {"labels": rng.integers(0, 2, size=batch["input_ids"].shape).astype(np.int64)}
    if task == "question_answering":
        lengths = batch["attention_mask"].sum(axis=1)
        start = (rng.random(lengths.shape) * lengths).astype(np.int64)
        end = np.minimum(start + 2, lengths - 1).astype(np.int64)
        return {"start_positions": start, "end_positions": end}
    return None


def masked_lm_labels(batch: dict[str, np.ndarray], seed: int) -> np.ndarray:
    """The input token as target at ~15% of the kept positions (at least one a row), -100 elsewhere."""
    rng = np.random.default_rng(seed)
    kept = batch["attention_mask"].astype(bool)
    chosen = kept & (rng.random(kept.shape) < MLM_LABEL_FRACTION)
    chosen[:, 0] |= ~chosen.any(axis=1)
    return np.where(chosen, batch["input_ids"], -100).astype(np.int64)


def _base_loss_weights(pair: CheckpointPair, batch: dict[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
    """A base model has no task head: its loss is mean(last_hidden_state * W1) + mean(pooler_output * W2)."""
    rng = np.random.default_rng(seed)
    batch_size, length = batch["input_ids"].shape
    hidden = int(pair.config["hidden_size"])
    return {"last_hidden_state": rng.standard_normal((batch_size, length, hidden)).astype(np.float32),
            "pooler_output": rng.standard_normal((batch_size, hidden)).astype(np.float32)}


def _projection_loss(output, weights: dict[str, np.ndarray], to_float32_tensor: Callable[[Any], Any]):
    """Sum over the outputs present of mean(output * weight); ``to_float32_tensor`` casts both operands."""
    terms = [(getattr(output, name, None), weight) for name, weight in weights.items()]
    return sum((to_float32_tensor(value) * to_float32_tensor(weight)).mean() for value, weight in terms
               if value is not None)


def _torch_gradients(model, batch, labels, base_weights, dtype: str, device: str):
    import torch

    runner = TorchRunner(model, dtype, device)
    model.zero_grad(set_to_none=True)
    kwargs = runner.tensors(batch)
    if labels is not None:
        kwargs.update({name: torch.from_numpy(value).to(runner.device) for name, value in labels.items()})
    output = model(**kwargs, return_dict=True)
    loss = output.loss if labels is not None else _projection_loss(
        output, base_weights, lambda value: (torch.from_numpy(value).to(runner.device) if isinstance(value, np.ndarray) else value).float())
    loss.backward()
    # A parameter the loss does not reach (the pooler of a masked LM) has no gradient: count it as zeros.
    grads = {name: (param.grad if param.grad is not None else torch.zeros_like(param)).detach().float().cpu().numpy()
             for name, param in model.named_parameters(remove_duplicate=False)}
    return float(loss.detach().float().cpu()), grads


def _paddle_gradients(model, batch, labels, base_weights, dtype: str, device: str):
    import paddle

    runner = PaddleRunner(model, dtype, device)
    model.clear_gradients()
    kwargs = runner.tensors(batch)
    if labels is not None:
        kwargs.update({name: paddle.to_tensor(value) for name, value in labels.items()})
    output = model(**kwargs)
    loss = output.loss if labels is not None else _projection_loss(
        output, base_weights,
        lambda value: (paddle.to_tensor(value) if isinstance(value, np.ndarray) else value).astype("float32"))
    loss.backward()
    grads = {name: (param.grad if param.grad is not None else paddle.zeros_like(param)).astype("float32").numpy()
             for name, param in model.named_parameters()}
    return float(loss.astype("float32").numpy()), grads
