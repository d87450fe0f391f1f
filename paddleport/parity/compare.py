"""Forward and gradient parity between a Hugging Face checkpoint (transformers, torch) and its Paddle port.

A thin user of the porting engine (``parity.porting.engine``, the one behind ``paddleport diff``): the two models
are built the paddleport way (converter + registry), paired through the rules of the architecture's conversion
table, run and recorded by the engine's hooks, and their gradients taken by the engine; what is left here is what
``compare`` means by parity: which outputs, at which positions, judged by which tolerance.

Forward: every batch runs through both models in eval mode with ``output_hidden_states``; the embeddings
output, each layer's hidden state, the pooled output and the logits are compared at every position the
attention mask keeps. Padding positions are left out: nothing downstream reads them, and their values are
ill-conditioned (a pad token at a far position, attending to a few real tokens, sits on large LayerNorm
outlier dimensions: on all-MiniLM-L6-v2 they differ by up to 1.1e-4 while the kept positions stay within 5e-6).

Gradients (``grad=True``): one forward + backward pass of the task loss on the first batch with dropout off
(eval mode); Paddle gradients are mapped to the Hugging Face layout through the conversion table's rules
(``parameter_specs``' typed transforms, ``transform.to_hf``).  A gradient passes when max |Δ| <= atol or
max |Δ| <= ``GRAD_RTOL_OF_MAX`` × (largest |HF gradient| entry of that tensor).

Half precision: float16 / bfloat16 run both models in that dtype and compare the outputs (cast to float32)
with looser default tolerances (``DEFAULT_ATOL``); each dtype needs kernels in both frameworks on the
chosen device, otherwise a one-line error.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from paddleport.convert.table import Rule
from paddleport.errors import PaddleportError
from paddleport.parity import devices
from paddleport.parity.inputs import DEFAULT_LIMIT, EncodedBatches, load_parity_batches
from paddleport.parity.loading import CheckpointPair, check_pair, load_paddle_model, load_torch_model
from paddleport.parity.outputs import HEAD_OUTPUT_NAMES, class_layout, compared_outputs, compared_positions
from paddleport.parity.report import GradReport, ParityReport, TensorDiff
from paddleport.registry import architecture_of_class, model_inputs

# Default max |Δ| per dtype.  Half precision carries ~3 (bf16) or ~4 (fp16) significant digits, and the
# two frameworks round at different places, so differences grow with depth; these bound a 12-layer base model.
DEFAULT_ATOL = {"float32": 1e-5, "float16": 5e-2, "bfloat16": 2.5e-1}
GRAD_RTOL_OF_MAX = 1e-5
MLM_LABEL_FRACTION = 0.15
# The head outputs compared after the hidden states (a span head has two, ERNIE's pre-training heads two).
TASK_OUTPUTS = HEAD_OUTPUT_NAMES
# peft's PeftModel holds the transformers model as ``base_model.model``; paddleport's LoRA layers keep peft's
# names below it (``query.base_layer``, ``query.lora_A.default``), so one rule matches the two adapted models.
PEFT_RULES = [Rule("base_model.model.{top}", "{top}")]


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

    With ``hf_adapter`` / ``paddle_adapter`` (peft adapter directories: LoRA, prompt tuning, p-tuning), the compared
    models are the bases with their adapters applied: transformers + peft against paddleport's model with its adapter
    layers (per-token outputs then include the virtual tokens a prompt-learning adapter prepends)."""
    pair = check_pair(hf_dir, paddle_dir)
    if architecture_of_class(pair.architecture).task_of(pair.architecture) == "multiple_choice":
        raise PaddleportError(hf_dir, f"{pair.architecture} takes [batch, choices, seq] inputs; compare feeds "
                                      "[batch, seq] batches (compare the base model, or test the head in Python)")
    check_precision(dtype, device)
    atol = DEFAULT_ATOL[dtype] if atol is None else float(atol)
    max_length = _checked_max_length(pair, max_length)
    encoded = load_parity_batches(hf_dir, inputs, batch_size=batch_size, max_length=max_length, limit=limit, seed=seed)
    with contextlib.ExitStack() as stack:
        rules, virtual_tokens = None, 0  # the conversion table's rules; no virtual tokens
        if hf_adapter is None and paddle_adapter is None:
            torch_model, paddle_model = load_torch_model(pair), load_paddle_model(pair)
        else:
            from paddleport.peft import methods

            torch_model, paddle_model, plan = _load_adapted_pair(pair, hf_adapter, paddle_adapter, grad, stack)
            pair.architecture = type(methods.framework_module(plan, "paddle").inner_model(paddle_model)).__name__
            rules, virtual_tokens = peft_rules(plan), methods.virtual_tokens(plan.settings)
        return _compare_loaded(pair, torch_model, paddle_model, encoded, atol=atol, grad=grad, dtype=dtype,
                               device=device, seed=seed, rules=rules, virtual_tokens=virtual_tokens)


def _load_adapted_pair(pair: CheckpointPair, hf_adapter, paddle_adapter, grad: bool, stack: contextlib.ExitStack):
    """transformers + peft with ``hf_adapter`` on the HF base, paddleport's adapter layers with ``paddle_adapter`` on
    the Paddle base (each adapter in either layout); and the Paddle adapter's plan."""
    import tempfile

    from paddleport.peft.adapters import load_adapted_model

    if hf_adapter is None or paddle_adapter is None:
        raise PaddleportError("--hf-adapter" if hf_adapter is None else "--paddle-adapter",
                              "adapters are compared in pairs: give both --hf-adapter and --paddle-adapter")
    if grad:
        raise PaddleportError("--grad", "gradients of adapted models are compared by train-parity --peft")
    work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="paddleport-compare-")))
    torch_model, torch_plan = load_adapted_model(Path(hf_adapter), pair.hf_dir, "torch", work / "torch")
    paddle_model, plan = load_adapted_model(Path(paddle_adapter), pair.paddle_dir, "paddle", work / "paddle")
    if torch_plan.settings != plan.settings:
        raise PaddleportError("--paddle-adapter", f"is another adapter than --hf-adapter ({plan.settings} vs "
                                                  f"{torch_plan.settings})")
    return torch_model, paddle_model, plan


def peft_rules(plan) -> list:
    """The engine's rules pairing peft's adapted model with paddleport's: a LoRA PeftModel holds the transformers
    model as ``base_model.model`` (paddleport's LoRA layers keep peft's names below it); a prompt-learning one holds
    it as ``base_model``, as paddleport's wrapper does (same names: no rule)."""
    from paddleport.peft.lora import LoraPlan

    return PEFT_RULES if isinstance(plan, LoraPlan) else []


def _compare_loaded(pair: CheckpointPair, torch_model, paddle_model, encoded: EncodedBatches, *, atol: float,
                    grad: bool, dtype: str, device: str, seed: int, rules: list | None = None,
                    virtual_tokens: int = 0) -> ParityReport:
    """The two loaded models through the porting engine, matched by the conversion table's rules
    (``rules`` for models outside it: adapted ones)."""
    from paddleport.parity.porting.engine import ModelPair

    expected = compared_outputs(pair.config, pair.architecture)
    with exact_float32_matmuls(device):
        _prepare(torch_model, paddle_model, dtype, device)
        models = ModelPair(torch_model, paddle_model, table_rules(pair) if rules is None else rules)
        tensors = forward_diffs(models, encoded, expected, pair.input_names, virtual_tokens)
        grad_report = None
        if grad:
            grad_report = gradient_diffs(models, pair, encoded.batches[0], atol=atol, seed=seed)
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


def table_rules(pair: CheckpointPair) -> list:
    """The engine's rules for a pair paddleport built: every parameter of the conversion table, HF name -> Paddle
    name with its typed transform."""
    from paddleport.convert import parameter_specs

    return [Rule(spec.hf_name, spec.paddle_name, spec.transform)
            for spec in parameter_specs(pair.config, pair.architecture)]


def _prepare(torch_model, paddle_model, dtype: str, device: str) -> None:
    """Both models in eval mode, in ``dtype``, on ``device``."""
    import torch

    torch_model.to(device=devices.torch_device(device), dtype=getattr(torch, dtype)).eval()
    devices.set_paddle_device(device)
    if dtype != "float32":
        paddle_model.to(dtype=dtype)
    paddle_model.eval()


# --- forward ---------------------------------------------------------------------------------

def forward_diffs(models, encoded: EncodedBatches, expected: dict[str, str],
                  input_names: tuple[str, ...], virtual_tokens: int = 0) -> list[TensorDiff]:
    """Per-tensor differences over every batch, in forward order: the engine records both models' outputs and
    the pooler's (the only modules watched), each output compared at the positions its meaning keeps.

    ``expected`` (``outputs.compared_outputs``) names every tensor to compare and whether it is per token or per
    sequence; an output missing from either framework, or one not expected, is an error, never a silent skip.
    ``virtual_tokens``: the models prepend that many attended tokens (a prompt-learning adapter), which the
    per-token outputs hold in front of the text's.
    """
    from paddleport.parity.porting.engine import record_paddle, record_torch

    pooler = pooler_name(list(models.torch_modules))
    watched = ["", pooler] if pooler is not None else [""]
    diffs = {name: TensorDiff(name) for name in expected}
    for index, batch in enumerate(encoded.batches):
        inputs = {**model_inputs(batch, input_names), "output_hidden_states": True}
        reference = named_outputs(record_torch(models, inputs, only=watched), pooler)
        ours = named_outputs(list(record_paddle(models, inputs, only=watched).values()), pooler)
        for framework, named in (("transformers", reference), ("Paddle", ours)):
            if list(named) != list(expected):
                raise PaddleportError(None, f"the {framework} model produced {', '.join(named)}; expected "
                                            f"{', '.join(expected)}")
        for name, level in expected.items():
            mask = batch["attention_mask"]
            if virtual_tokens:
                mask = np.concatenate([np.ones((mask.shape[0], virtual_tokens), mask.dtype), mask], axis=1)
            diffs[name].update(ours[name], reference[name], compared_positions(level, mask), batch=index)
    return list(diffs.values())


def named_outputs(calls: list, pooler: str | None) -> dict[str, np.ndarray]:
    """embeddings, layer.0 … layer.N-1, pooler_output, logits: the tensors compared, in forward order, from the
    engine's recorded calls of the whole model (name "") and of its pooler (used where the model's output holds
    no pooled output: the task heads)."""
    model = next(call for call in calls if call.name == "").named_outputs()
    hidden_states = [model[key] for key in model if key.startswith("hidden_states[")]
    named = {"embeddings": hidden_states[0]}
    named.update({f"layer.{index}": state for index, state in enumerate(hidden_states[1:])})
    pooled = model.get("pooler_output")
    if pooled is None and pooler is not None:
        pooled = next((call.outputs[0] for call in calls if call.name == pooler and call.call == 0), None)
    if pooled is not None:
        named["pooler_output"] = pooled
    named.update({name: model[name] for name in TASK_OUTPUTS if name in model})
    return {name: value.astype(np.float32) for name, value in named.items()}


def pooler_name(named_modules: list[str]) -> str | None:
    """The pooler sub-module (its name equals the HF parameter prefix, the same in both frameworks)."""
    return next((name for name in named_modules if name == "pooler" or name.endswith(".pooler")), None)


# --- gradients -------------------------------------------------------------------------------

def gradient_diffs(models, pair: CheckpointPair, batch: dict[str, np.ndarray], *, atol: float, seed: int = 0
                   ) -> GradReport:
    """One forward + backward pass of the task loss in both frameworks through the engine; every parameter's
    gradient compared (a parameter the loss does not reach, e.g. a masked LM's pooler, counts as zeros)."""
    from paddleport.parity.porting.engine import gradients

    uncompared = [name for name in models.weights.unmapped_paddle
                  if name in dict(models.paddle_layer.named_parameters())]
    if uncompared:  # every parameter of the Paddle model has its gradient compared
        raise PaddleportError(None, f"Paddle parameters outside the conversion table: {', '.join(uncompared[:5])}")
    labels = task_labels(pair, batch, seed)
    inputs = model_inputs(batch, pair.input_names) | (labels or {})
    base_weights = _base_loss_weights(pair, batch, seed) if labels is None else None
    measured = gradients(models.torch_module, models.paddle_layer, inputs, models.weights,
                         _loss_fns(base_weights))
    loss = TensorDiff("loss")
    loss.update(measured.paddle_loss, measured.torch_loss)  # a NaN loss fails (metrics.difference)
    loss.check_atol_or_scaled(atol, GRAD_RTOL_OF_MAX)
    diffs = []
    for name, _, shape, reference, ours in measured.parameters:
        diff = TensorDiff(name)
        diff.update(np.zeros(shape, np.float32) if ours is None else ours,
                    np.zeros(shape, np.float32) if reference is None else reference)
        diff.check_atol_or_scaled(atol, GRAD_RTOL_OF_MAX)
        diffs.append(diff)
    first_failure = next((diff.name for diff in [loss, *diffs] if not diff.passed), None)
    return GradReport(passed=first_failure is None, atol=atol, rtol_of_max=GRAD_RTOL_OF_MAX, loss=loss,
                      tensors=diffs, first_failure=first_failure)


def _loss_fns(base_weights: dict[str, np.ndarray] | None):
    """The task loss (the model's own, from the labels in the batch), or for a base model
    mean(last_hidden_state * W1) + mean(pooler_output * W2), in float32 in each framework."""
    import paddle
    import torch

    def torch_loss(output):
        if base_weights is None:
            return output.loss
        return sum((getattr(output, name).float() * torch.from_numpy(weight).to(getattr(output, name).device)).mean()
                   for name, weight in base_weights.items() if getattr(output, name, None) is not None)

    def paddle_loss(output):
        if base_weights is None:
            return output.loss
        return sum((getattr(output, name).astype("float32") * paddle.to_tensor(weight)).mean()
                   for name, weight in base_weights.items() if getattr(output, name, None) is not None)

    return torch_loss, paddle_loss


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
    if class_layout(pair.config, pair.architecture).head == "masked_lm_and_next_sentence":  # ERNIE's pre-training
        return {"labels": masked_lm_labels(batch, seed),
                "next_sentence_label": rng.integers(0, 2, size=len(batch["input_ids"])).astype(np.int64)}
    if task == "pretraining":  # ELECTRA's discriminator: a seeded 0/1 "replaced" target per token
        return {"labels": rng.integers(0, 2, size=batch["input_ids"].shape).astype(np.int64)}
    if task == "next_sentence_prediction":  # is-next (0) or random (1), per sequence
        return {"labels": rng.integers(0, 2, size=len(batch["input_ids"])).astype(np.int64)}
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
