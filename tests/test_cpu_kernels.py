"""paddleport's CPU kernels and fast layers against Paddle's own ops: values and gradients."""

from __future__ import annotations

import logging

import numpy as np
import paddle
import pytest

from paddleport.models import kernels, layers
from paddleport.models.kernels import cpu_kernels

F = paddle.nn.functional
pytestmark = pytest.mark.skipif(cpu_kernels() is None, reason="the CPU kernels could not be built here")


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def leaf(rng, *shape, scale=1.0):
    tensor = paddle.to_tensor((rng.standard_normal(shape) * scale).astype("float32"))
    tensor.stop_gradient = False
    return tensor


def grads(fn, inputs, grad_out):
    return [g.numpy() for g in paddle.grad(fn(), inputs, grad_out)]


def assert_close(actual, expected, rtol=1e-5, atol=1e-6):
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), rtol=rtol, atol=atol)


def additive_mask(rng, batch, keys):
    keep = rng.random((batch, keys)) > 0.3
    keep[:, 0] = True
    return paddle.to_tensor(((1 - keep) * np.finfo(np.float32).min).astype("float32")[:, None, None, :])


def test_masked_softmax_and_gradient_match_paddle(rng):
    scores = leaf(rng, 3, 4, 7, 9, scale=4.0)
    mask = additive_mask(rng, 3, 9)
    grad_out = paddle.to_tensor(rng.standard_normal((3, 4, 7, 9)).astype("float32"))

    def reference():
        return F.softmax(scores * 0.25 + mask, axis=-1)

    def kernel():
        return cpu_kernels().pp_softmax_mask(scores, mask, 0.25)

    assert_close(kernel().numpy(), reference().numpy())
    assert float(kernel().numpy()[np.broadcast_to(mask.numpy() < 0, (3, 4, 7, 9))].max()) == 0.0
    assert_close(grads(kernel, [scores], grad_out)[0], grads(reference, [scores], grad_out)[0])


def test_layer_norm_and_gradients_match_paddle(rng):
    x, weight, bias = leaf(rng, 5, 6, 48, scale=3.0), leaf(rng, 48), leaf(rng, 48)
    grad_out = paddle.to_tensor(rng.standard_normal((5, 6, 48)).astype("float32"))

    def reference():
        return F.layer_norm(x + 2.0, [48], weight, bias, 1e-12)

    def kernel():
        return cpu_kernels().pp_layer_norm(x + 2.0, weight, bias, 1e-12)[0]

    assert_close(kernel().numpy(), reference().numpy(), atol=1e-5)
    for ours, theirs in zip(grads(kernel, [x, weight, bias], grad_out), grads(reference, [x, weight, bias], grad_out)):
        assert_close(ours, theirs, atol=1e-5)


def test_channel_layer_norm_and_bias_match_paddle(rng):
    x, weight, bias = leaf(rng, 3, 40, 11, scale=3.0), leaf(rng, 40), leaf(rng, 40)
    grad_out = paddle.to_tensor(rng.standard_normal((3, 40, 11)).astype("float32"))

    def reference():
        moved = F.layer_norm((x + bias.unsqueeze(-1)).transpose([0, 2, 1]), [40], weight, bias, 1e-12)
        return moved.transpose([0, 2, 1])

    def kernel():
        return cpu_kernels().pp_channel_layer_norm(cpu_kernels().pp_channel_bias(x, bias), weight, bias, 1e-12)[0]

    assert_close(kernel().numpy(), reference().numpy(), atol=1e-5)
    for ours, theirs in zip(grads(kernel, [x, weight, bias], grad_out), grads(reference, [x, weight, bias], grad_out)):
        assert_close(ours, theirs, atol=1e-5)


def test_gelu_and_gradient_match_paddle(rng):
    x = leaf(rng, 4, 1000, scale=4.0)
    grad_out = paddle.to_tensor(rng.standard_normal((4, 1000)).astype("float32"))
    assert_close(cpu_kernels().pp_gelu(x).numpy(), F.gelu(x).numpy())
    assert_close(grads(lambda: cpu_kernels().pp_gelu(x), [x], grad_out)[0],
                 grads(lambda: F.gelu(x), [x], grad_out)[0])


def test_dropout_keeps_one_minus_p_scales_and_reuses_its_mask_in_the_gradient(rng):
    x = leaf(rng, 64, 1024)
    grad_out = paddle.to_tensor(rng.standard_normal((64, 1024)).astype("float32"))
    out = cpu_kernels().pp_dropout(x, 0.1, 1234).numpy()
    kept = out != 0
    assert abs(kept.mean() - 0.9) < 0.005
    assert_close(out[kept], x.numpy()[kept] / 0.9)
    grad = grads(lambda: cpu_kernels().pp_dropout(x, 0.1, 1234), [x], grad_out)[0]
    assert_close(grad, grad_out.numpy() * kept / 0.9)
    assert (cpu_kernels().pp_dropout(x, 0.1, 1234).numpy() == out).all()
    assert (cpu_kernels().pp_dropout(x, 0.1, 1235).numpy() != out).any()


def test_dropout_layer_follows_paddle_seed_and_mode(rng):
    dropout = layers.Dropout(0.2)
    x = paddle.to_tensor(rng.standard_normal((8, 100)).astype("float32"))
    paddle.seed(7)
    first = dropout(x).numpy()
    paddle.seed(7)
    assert (dropout(x).numpy() == first).all()
    dropout.eval()
    assert (dropout(x).numpy() == x.numpy()).all()


TINY_CONFIGS = {
    "bert": dict(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
                 max_position_embeddings=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, num_labels=3),
    "squeezebert": dict(vocab_size=100, hidden_size=32, embedding_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=64, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0, num_labels=3, q_groups=2, k_groups=4, v_groups=2,
                        post_attention_groups=2, intermediate_groups=4, output_groups=2),
}


def _tiny_training_step(architecture: str, fast: bool):
    """Loss and gradients of one training step of a seeded tiny model, with or without paddleport's CPU paths."""
    from paddleport.models import (BertConfig, BertForSequenceClassification, SqueezeBertConfig,
                                   SqueezeBertForSequenceClassification)

    config_class, model_class = {"bert": (BertConfig, BertForSequenceClassification),
                                 "squeezebert": (SqueezeBertConfig, SqueezeBertForSequenceClassification)}[architecture]
    layers.set_fast_cpu_paths(fast)
    try:
        paddle.seed(0)
        model = model_class.from_config(config_class(**TINY_CONFIGS[architecture]))
        model.train()
        rng = np.random.default_rng(1)
        input_ids = paddle.to_tensor(rng.integers(1, 100, (4, 11)))
        attention_mask = paddle.to_tensor((np.arange(11)[None, :] < np.array([[11], [5], [1], [8]])).astype("int64"))
        labels = paddle.to_tensor(rng.integers(0, 3, (4,)))
        loss = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
        loss.backward()
        return float(loss), {name: param.grad.numpy() for name, param in model.named_parameters()}
    finally:
        layers.set_fast_cpu_paths(True)


@pytest.mark.parametrize("architecture", ["bert", "squeezebert"])
def test_tiny_training_step_equals_paddle_ops(architecture):
    fast_loss, fast_grads = _tiny_training_step(architecture, fast=True)
    plain_loss, plain_grads = _tiny_training_step(architecture, fast=False)
    assert abs(fast_loss - plain_loss) <= 1e-6
    assert fast_grads.keys() == plain_grads.keys()
    for name, grad in fast_grads.items():
        scale = max(1.0, float(np.abs(plain_grads[name]).max()))
        assert float(np.abs(grad - plain_grads[name]).max()) <= 1e-5 * scale, name


def test_a_kernel_that_cannot_be_built_falls_back_with_a_warning(tmp_path, monkeypatch, caplog):
    broken = tmp_path / "broken.cc"
    broken.write_text("this is not C++\n")
    monkeypatch.setattr(kernels, "SOURCE", broken)
    monkeypatch.setenv("PADDLE_EXTENSION_DIR", str(tmp_path / "build"))
    with caplog.at_level(logging.WARNING, logger=kernels.__name__):
        assert kernels.cpu_kernels.__wrapped__() is None
    assert "CPU kernels unavailable" in caplog.text and "error" in caplog.text.split("kernels:")[-1]


def test_kernels_can_be_switched_off_by_environment(monkeypatch):
    monkeypatch.setenv(kernels.DISABLE_ENV, "0")
    assert kernels.cpu_kernels.__wrapped__() is None
