"""Shared dropout masks: torch and Paddle draw the same masks and, with them, train alike with dropout on."""

from __future__ import annotations

import numpy as np
import paddle
import pytest
import torch
from safetensors.numpy import load_file

from paddleport.convert import convert_checkpoint
from paddleport.dropout_masks import DropoutMaskStream, counter_hash32, keep_threshold, site_id
from paddleport.glue_runners import run_glue
from paddleport.glue_runners.backends import torch_dropout
from paddleport.parity.metrics import largest, named_differences
from paddleport.models import AutoModelForSequenceClassification, layers
from tests.fixtures import make_tiny_hf_checkpoint, qqp_batch
from tests.test_glue_runner import small_config

KEYS = [DropoutMaskStream(seed=seed, rank=rank, forward_index=step).key(site_id(name))
        for seed, rank, step, name in [(42, 0, 1, "bert.embeddings.dropout"), (7, 1, 1000, "dropout")]]


def paddle_int64(value: int):
    return paddle.to_tensor(value, dtype="int64")


def test_hash_of_known_counters_is_pinned():
    """The masks of a saved run depend on this formula: changing it changes every resumed run."""
    bits = counter_hash32(np.array([0, 1, 2, 2**32 - 1], dtype=np.uint64), 0x0123456789ABCDEF, constant=np.uint64)
    assert bits.tolist() == [476226723, 4113150310, 3872877519, 588486993]


@pytest.mark.parametrize("key", KEYS)
def test_counter_hash_is_the_same_in_numpy_torch_and_paddle(key):
    indices = np.concatenate([np.arange(50_000), 2**32 - 1 - np.arange(1_000)]).astype(np.uint64)
    expected = counter_hash32(indices, key, constant=np.uint64)
    assert expected.max() < 2**32
    torch_bits = counter_hash32(torch.from_numpy(indices.astype(np.int64)), key).numpy()
    paddle_bits = counter_hash32(paddle.to_tensor(indices.astype(np.int64)), key, constant=paddle_int64).numpy()
    np.testing.assert_array_equal(torch_bits.astype(np.uint64), expected)
    np.testing.assert_array_equal(paddle_bits.astype(np.uint64), expected)


def test_masks_keep_one_minus_p_independently_per_key():
    indices = np.arange(1_000_000, dtype=np.uint64)
    first, second = (counter_hash32(indices, key, constant=np.uint64) >= keep_threshold(0.1) for key in KEYS)
    assert abs(first.mean() - 0.9) < 0.002 and abs(second.mean() - 0.9) < 0.002
    assert abs((~first & ~second).mean() - 0.01) < 0.001  # both dropped as often as independent draws are


def test_schedule_keys_differ_by_every_part_and_restore_from_state():
    stream = DropoutMaskStream(seed=3)
    stream.next_forward()
    keys = {stream.key(1), stream.key(2), DropoutMaskStream(seed=4, forward_index=1).key(1),
            DropoutMaskStream(seed=3, rank=1, forward_index=1).key(1)}
    assert len(keys) == 4 and all(0 <= key < 2**63 for key in keys)
    restored = DropoutMaskStream(seed=0)
    restored.load_state_dict(stream.state_dict())
    assert restored.key(1) == stream.key(1)


@pytest.mark.parametrize("p", [0.1, 0.37])
@pytest.mark.parametrize("fast", [True, False], ids=["paddleport-kernel", "paddle-ops"])
def test_torch_and_paddle_drop_the_same_elements_with_the_same_gradient(p, fast):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4, 17, 19)).astype("float32")
    grad_out = rng.standard_normal(x.shape).astype("float32")
    x_torch = torch.tensor(x, requires_grad=True)
    out_torch = torch_dropout.shared_mask_dropout(x_torch, p, KEYS[0])
    out_torch.backward(torch.from_numpy(grad_out))
    layers.set_fast_cpu_paths(fast)
    try:
        x_paddle = paddle.to_tensor(x, stop_gradient=False)
        out_paddle = layers._shared_mask_dropout(x_paddle, p, KEYS[0])
        (grad_paddle,) = paddle.grad(out_paddle, x_paddle, paddle.to_tensor(grad_out))
    finally:
        layers.set_fast_cpu_paths(True)
    np.testing.assert_array_equal(out_paddle.numpy(), out_torch.detach().numpy())
    np.testing.assert_array_equal(grad_paddle.numpy(), x_torch.grad.numpy())
    assert abs((out_paddle.numpy() == 0).mean() - p) < 0.03


@pytest.mark.parametrize("architecture", ["BertForSequenceClassification", "SqueezeBertForSequenceClassification"])
def test_models_given_one_stream_compute_the_same_training_forward(architecture, tmp_path):
    import transformers

    hf_dir = make_tiny_hf_checkpoint(tmp_path / "hf", architecture)
    convert_checkpoint(hf_dir, tmp_path / "paddle", to="paddle")
    torch_model = transformers.AutoModelForSequenceClassification.from_pretrained(str(hf_dir))
    paddle_model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "paddle")
    stream = DropoutMaskStream(seed=5, forward_index=1)
    torch_dropout.share_dropout_masks(torch_model, stream)
    layers.share_dropout_masks(paddle_model, stream)
    assert not any(type(module) is torch.nn.Dropout for module in torch_model.modules())
    batch = qqp_batch()
    torch_model.train()
    paddle_model.train()
    with torch.no_grad():
        torch_logits = torch_model(**{k: torch.from_numpy(v) for k, v in batch.items()}).logits.numpy()
    paddle_logits = paddle_model(**{k: paddle.to_tensor(v) for k, v in batch.items()}).logits.numpy()
    np.testing.assert_allclose(paddle_logits, torch_logits, atol=1e-5, rtol=0)
    paddle_model.eval()
    eval_logits = paddle_model(**{k: paddle.to_tensor(v) for k, v in batch.items()}).logits.numpy()
    assert np.abs(eval_logits - paddle_logits).max() > 1e-3  # dropout did act in training mode


def test_fine_tunes_end_alike_in_both_frameworks_also_with_checkpointing(tmp_path):
    """Shared masks, asked for (run-glue's default is native): torch and Paddle (each with and without gradient
    checkpointing, which recomputes the dropouts) end with the same weights; with native masks (the default)
    Paddle ends elsewhere."""
    model = make_tiny_hf_checkpoint(tmp_path / "model", "BertModel")
    runs = {"torch": ("torch", {}), "paddle": ("paddle", {}),
            "torch-recompute": ("torch", {"gradient_checkpointing": True}),
            "paddle-recompute": ("paddle", {"gradient_checkpointing": True}),
            "paddle-native": ("paddle", {})}
    weights, losses = {}, {}
    for name, (framework, overrides) in runs.items():
        masks = "native" if name.endswith("native") else "shared"
        metrics = run_glue(small_config(framework, model, tmp_path / name, lr=1e-3, dropout_masks=masks, **overrides))
        losses[name] = [row["train_loss"] for row in metrics["epochs"]]
        final_model = tmp_path / name / "final_model"
        if framework == "paddle":  # compared in Hugging Face names and layout
            convert_checkpoint(final_model, tmp_path / f"{name}-hf", to="hf")
            final_model = tmp_path / f"{name}-hf"
        weights[name] = load_file(str(final_model / "model.safetensors"))

    for name in ("paddle", "torch-recompute", "paddle-recompute"):
        assert largest(named_differences(weights[name], weights["torch"]))[1].within(1e-4), name
        np.testing.assert_allclose(losses[name], losses["torch"], rtol=0, atol=1e-5)
    assert largest(named_differences(weights["paddle-native"], weights["torch"]))[1].max_abs > 1e-3
