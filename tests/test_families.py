"""Every architecture x head in the registry, on tiny seeded transformers checkpoints (2 layers, hidden 32):

- forward: head outputs and every hidden state equal transformers' at the kept positions (max |Δ| <= 1e-5);
- gradients of the head's transformers loss, every parameter (<= 1e-5, or 1e-5 of the largest entry);
- HF -> Paddle -> HF is bit for bit.
"""

from __future__ import annotations

import numpy as np
import pytest

from paddleport import models
from paddleport.convert import convert_checkpoint, parameter_specs
from paddleport.registry import CLASS_ARCHITECTURE, SUPPORTED_CLASSES
from tests.fixtures import make_tiny_hf_model, model_batch, qqp_batch

ATOL = 1e-5
HEAD_OUTPUTS = ("logits", "start_logits", "end_logits", "prediction_logits", "seq_relationship_logits",
                "last_hidden_state", "pooler_output")


def task_of(architecture: str) -> str:
    return CLASS_ARCHITECTURE[architecture].task_of(architecture)


@pytest.fixture(scope="module")
def batch():
    return qqp_batch(pairs=5, max_length=40)


def inputs_for(architecture: str, config, batch: dict) -> dict:
    """The model's inputs; a multiple-choice head gets the rows as [batch, 2 choices, seq] (and no task types:
    transformers' ErnieForMultipleChoice passes them on without flattening, which fails)."""
    inputs = model_batch(config, batch)
    if task_of(architecture) == "multiple_choice":
        inputs.pop("task_type_ids", None)
        rows = len(inputs["input_ids"]) // 2 * 2
        inputs = {name: value[:rows].reshape(rows // 2, 2, -1) for name, value in inputs.items()}
    return inputs


def labels_for(architecture: str, inputs: dict, num_labels: int) -> dict:
    """Seeded targets for the head's loss (None for a base model), keyed by transformers' argument names."""
    rng = np.random.default_rng(0)
    kept = inputs["attention_mask"].astype(bool)
    task = task_of(architecture)
    if task == "sequence_classification":
        return {"labels": rng.integers(0, num_labels, size=len(kept))}
    if task == "multiple_choice":
        return {"labels": rng.integers(0, kept.shape[1], size=len(kept))}
    if task == "next_sentence_prediction":
        return {"labels": rng.integers(0, 2, size=len(kept))}
    if task == "token_classification":
        return {"labels": np.where(kept, rng.integers(0, num_labels, size=kept.shape), -100)}
    if task in ("masked_lm", "pretraining"):
        chosen = kept & (rng.random(kept.shape) < 0.3)
        chosen[:, 0] = True
        masked = {"labels": np.where(chosen, inputs["input_ids"], -100)}
        if CLASS_ARCHITECTURE[architecture].table.classes[architecture].head == "masked_lm_and_next_sentence":
            return {**masked, "next_sentence_label": rng.integers(0, 2, size=len(kept))}  # ErnieForPreTraining
        if task == "pretraining":  # ElectraForPreTraining: 0/1 "replaced" targets at every kept token
            return {"labels": rng.integers(0, 2, size=kept.shape)}
        return masked
    if task == "question_answering":
        lengths = kept.sum(axis=1)
        start = (rng.random(len(kept)) * lengths).astype(np.int64)
        return {"start_positions": start, "end_positions": np.minimum(start + 2, lengths - 1)}
    return {}


def kept_max_diff(expected: np.ndarray, actual: np.ndarray, kept: np.ndarray) -> float:
    if expected.shape[:2] == kept.shape:
        expected, actual = expected[kept], actual[kept]
    return float(np.abs(expected - actual).max())


# Every class with its tiny config; ERNIE's run with task types (ERNIE 3.0), and two without (ERNIE 1.0).
CASES = [pytest.param((name, {}), id=name) for name in SUPPORTED_CLASSES] + [
    pytest.param((name, {"use_task_id": False}), id=f"{name}-without-task-types")
    for name in ("ErnieModel", "ErnieForSequenceClassification")]


@pytest.fixture(params=CASES)
def converted(request, tmp_path):
    """(architecture, transformers model, Paddle model, HF dir, Paddle dir)."""
    architecture, overrides = request.param
    num_labels = 2 if task_of(architecture) == "question_answering" else 3  # start and end
    hf_model = make_tiny_hf_model(architecture, seed=3, num_labels=num_labels, **overrides)
    hf_model.save_pretrained(tmp_path / "hf")
    report = convert_checkpoint(tmp_path / "hf", tmp_path / "paddle")
    assert not report.newly_initialised and not report.dropped
    paddle_model = getattr(models, architecture).from_pretrained(tmp_path / "paddle")
    return architecture, hf_model, paddle_model, tmp_path / "hf", tmp_path / "paddle"


def test_forward_and_gradients_match_transformers(converted, batch):
    import paddle
    import torch

    architecture, hf_model, paddle_model, _, _ = converted
    inputs = inputs_for(architecture, hf_model.config, batch)
    kept = inputs["attention_mask"].reshape(-1, inputs["attention_mask"].shape[-1]).astype(bool)
    labels = labels_for(architecture, inputs, num_labels=3)
    hf_model.eval()
    paddle_model.eval()  # dropout off: the same function in both frameworks
    expected = hf_model(**{k: torch.from_numpy(v) for k, v in {**inputs, **labels}.items()},
                        output_hidden_states=True)
    actual = paddle_model(**{k: paddle.to_tensor(v) for k, v in {**inputs, **labels}.items()},
                          output_hidden_states=True)
    diffs = {}
    for name in HEAD_OUTPUTS:
        if getattr(expected, name, None) is not None:
            diffs[name] = kept_max_diff(expected[name].detach().numpy(), getattr(actual, name).numpy(), kept)
    assert len(expected.hidden_states) == len(actual.hidden_states) == 3
    for index, (e, a) in enumerate(zip(expected.hidden_states, actual.hidden_states)):
        diffs[f"hidden_states[{index}]"] = kept_max_diff(e.detach().numpy(), a.numpy(), kept)
    worst = max(diffs, key=diffs.get)
    assert diffs[worst] <= ATOL, f"{worst}: max |delta| {diffs[worst]:.3g}"

    loss_expected, loss_actual = _losses(expected, actual, labels)
    assert abs(float(loss_expected) - float(loss_actual)) <= ATOL
    loss_expected.backward()
    loss_actual.backward()
    torch_grads = {name: p.grad for name, p in hf_model.named_parameters(remove_duplicate=False)}
    paddle_grads = {name: p.grad for name, p in paddle_model.named_parameters()}
    for spec in parameter_specs(hf_model.config.to_dict(), architecture):
        want = torch_grads[spec.hf_name]
        want = np.zeros(spec.hf_shape, np.float32) if want is None else want.numpy()
        got = paddle_grads[spec.paddle_name]
        got = np.zeros(spec.hf_shape, np.float32) if got is None else spec.transform.to_hf(got.numpy())
        diff = float(np.abs(want - got).max())
        assert diff <= max(ATOL, ATOL * float(np.abs(want).max())), f"gradient of {spec.hf_name}: {diff:.3g}"


def _losses(expected, actual, labels):
    """The head's own loss; a base model's: the mean of its last hidden state times seeded weights."""
    if labels:
        return expected.loss, actual.loss
    import paddle
    import torch

    weights = np.random.default_rng(1).standard_normal(expected.last_hidden_state.shape).astype(np.float32)
    return ((expected.last_hidden_state * torch.from_numpy(weights)).mean(),
            (actual.last_hidden_state * paddle.to_tensor(weights)).mean())


def test_hf_to_paddle_to_hf_is_bit_exact(converted, tmp_path):
    from safetensors.numpy import load_file

    _, _, _, hf_dir, paddle_dir = converted
    convert_checkpoint(paddle_dir, tmp_path / "back", to="hf")
    before, after = load_file(hf_dir / "model.safetensors"), load_file(tmp_path / "back" / "model.safetensors")
    assert set(before) == set(after)
    for name, value in before.items():
        assert value.dtype == after[name].dtype and np.array_equal(value, after[name]), name


def test_ernie_takes_inputs_embeds_as_transformers(tmp_path, batch):
    """Word vectors given instead of ids (prompt tuning's virtual tokens): task and token types default to zeros
    over the vectors' length in both frameworks."""
    import paddle
    import torch

    hf_model = make_tiny_hf_model("ErnieForSequenceClassification", seed=5)
    hf_model.save_pretrained(tmp_path / "hf")
    convert_checkpoint(tmp_path / "hf", tmp_path / "paddle", progress=False)
    paddle_model = models.ErnieForSequenceClassification.from_pretrained(tmp_path / "paddle")
    vectors = np.random.default_rng(0).standard_normal((*batch["input_ids"].shape, 32)).astype(np.float32)
    with torch.no_grad():
        expected = hf_model(inputs_embeds=torch.from_numpy(vectors),
                            attention_mask=torch.from_numpy(batch["attention_mask"])).logits.numpy()
    actual = paddle_model(inputs_embeds=paddle.to_tensor(vectors),
                          attention_mask=paddle.to_tensor(batch["attention_mask"])).logits.numpy()
    assert np.abs(expected - actual).max() <= ATOL
