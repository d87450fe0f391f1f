"""paddleport's CPU kernels and fast layers against Paddle's own ops: values and gradients.

A kernel that does not build is a failing test here (not a skip), unless the kernels were switched off with
PADDLEPORT_CPU_KERNELS=0; the fallback tests need no kernel and always run.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import paddle
import pytest

from paddleport.models import kernels, layers
from paddleport.models.kernels import cpu_kernels
from tests.fixtures import openmp_threads

F = paddle.nn.functional
# odd widths, widths not a multiple of the 8 (AVX2) or 16 (AVX-512) floats of a vector, and BERT's own
WIDTHS = [16, 40, 48, 64, 384, 769]


@pytest.fixture
def built():
    """The compiled kernels; a build failure fails the test."""
    if os.environ.get(kernels.DISABLE_ENV) == "0":
        pytest.skip(f"{kernels.DISABLE_ENV}=0 switches the kernels off")
    library = cpu_kernels()
    if library is None:
        pytest.fail("paddleport's CPU kernels did not build here (see the warning logged above)")
    return library


def test_the_kernels_build(built):
    assert hasattr(built, "pp_layer_norm") and hasattr(built, "pp_pointwise_conv_residual_layer_norm")


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(params=[1, 2], ids=["1-thread", "2-threads"])
def threads(request):
    """Paddle's OpenMP threads (the kernels' row loops split over them), set back afterwards."""
    previous = openmp_threads()
    paddle.base.core.set_num_threads(request.param)
    yield request.param
    paddle.base.core.set_num_threads(previous)


@pytest.fixture
def strided_views():
    """Transposes and slices as strided views (Paddle's default; paddleport.runtime.setup turns it off)."""
    previous = paddle.get_flags(["FLAGS_use_stride_kernel"])
    paddle.set_flags({"FLAGS_use_stride_kernel": True})
    yield
    paddle.set_flags(previous)


def leaf(rng, *shape, scale=1.0):
    tensor = paddle.to_tensor((rng.standard_normal(shape) * scale).astype("float32"))
    tensor.stop_gradient = False
    return tensor


def strided_leaf(rng, *shape, scale=1.0):
    """A leaf whose value is a non-contiguous view of ``shape`` (the last two axes of a dense tensor, swapped)."""
    dense = leaf(rng, *shape[:-2], shape[-1], shape[-2], scale=scale)
    view = dense.transpose(list(range(len(shape) - 2)) + [len(shape) - 1, len(shape) - 2])
    assert not view.is_contiguous()
    return dense, view


def grads(fn, inputs, grad_out):
    return [g.numpy() for g in paddle.grad(fn(), inputs, grad_out)]


def assert_close(actual, expected, rtol=1e-5, atol=1e-6):
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), rtol=rtol, atol=atol)


def additive_mask(rng, batch, keys):
    keep = rng.random((batch, keys)) > 0.3
    keep[:, 0] = True
    return paddle.to_tensor(((1 - keep) * np.finfo(np.float32).min).astype("float32")[:, None, None, :])


@pytest.mark.parametrize("keys", WIDTHS)
def test_masked_softmax_and_gradient_match_paddle(built, rng, threads, strided_views, keys):
    dense, scores = strided_leaf(rng, 2, 3, 5, keys, scale=4.0)
    mask = additive_mask(rng, 2, keys)
    _, grad_out = strided_leaf(rng, 2, 3, 5, keys)

    def reference():
        return F.softmax(scores * 0.25 + mask, axis=-1)

    def kernel():
        return built.pp_softmax_mask(scores, mask, 0.25)

    assert_close(kernel().numpy(), reference().numpy())
    assert (kernel().numpy() == built.pp_softmax_mask(scores.contiguous(), mask, 0.25).numpy()).all()
    assert float(kernel().numpy()[np.broadcast_to(mask.numpy() < 0, (2, 3, 5, keys))].max()) == 0.0
    assert_close(grads(kernel, [dense], grad_out)[0], grads(reference, [dense], grad_out)[0])


@pytest.mark.parametrize("width", WIDTHS)
def test_layer_norm_and_gradients_match_paddle(built, rng, threads, strided_views, width):
    dense, x = strided_leaf(rng, 3, 5, width, scale=3.0)
    weight, bias = leaf(rng, width), leaf(rng, width)
    _, grad_out = strided_leaf(rng, 3, 5, width)

    def reference():
        return F.layer_norm(x, [width], weight, bias, 1e-12)

    def kernel():
        return built.pp_layer_norm(x, weight, bias, 1e-12)[0]

    assert_close(kernel().numpy(), reference().numpy(), atol=1e-5)
    names = ("input", "weight", "bias")
    for name, ours, theirs in zip(names, grads(kernel, [dense, weight, bias], grad_out),
                                  grads(reference, [dense, weight, bias], grad_out)):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5, err_msg=name)


@pytest.mark.parametrize("channels", WIDTHS)
def test_channel_layer_norm_and_channel_bias_match_paddle_with_distinct_biases(built, rng, threads, strided_views,
                                                                               channels):
    dense, x = strided_leaf(rng, 3, channels, 11, scale=3.0)
    channel_bias, weight, norm_bias = leaf(rng, channels), leaf(rng, channels), leaf(rng, channels)
    _, grad_out = strided_leaf(rng, 3, channels, 11)

    def reference():
        shifted = x + channel_bias.unsqueeze(-1)
        return F.layer_norm(shifted.transpose([0, 2, 1]), [channels], weight, norm_bias, 1e-12).transpose([0, 2, 1])

    def kernel():
        return built.pp_channel_layer_norm(built.pp_channel_bias(x, channel_bias), weight, norm_bias, 1e-12)[0]

    assert_close(kernel().numpy(), reference().numpy(), atol=1e-5)
    inputs = {"input": dense, "channel bias": channel_bias, "weight": weight, "layer-norm bias": norm_bias}
    for name, ours, theirs in zip(inputs, grads(kernel, list(inputs.values()), grad_out),
                                  grads(reference, list(inputs.values()), grad_out)):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5, err_msg=name)


@pytest.mark.parametrize("width", [11, 32, 33, 128])
def test_channel_layer_norm_of_one_sequence_matches_paddle_across_column_blocks(built, rng, threads, width):
    """Work is split by (batch, block of 32 positions), so a batch of one uses every thread: widths inside, at and
    across a block boundary."""
    x, weight, norm_bias = leaf(rng, 1, 48, width, scale=3.0), leaf(rng, 48), leaf(rng, 48)
    grad_out = paddle.to_tensor(rng.standard_normal((1, 48, width)).astype("float32"))

    def reference():
        return F.layer_norm(x.transpose([0, 2, 1]), [48], weight, norm_bias, 1e-12).transpose([0, 2, 1])

    def kernel():
        return built.pp_channel_layer_norm(x, weight, norm_bias, 1e-12)[0]

    assert_close(kernel().numpy(), reference().numpy(), atol=1e-5)
    for name, ours, theirs in zip(("input", "weight", "bias"), grads(kernel, [x, weight, norm_bias], grad_out),
                                  grads(reference, [x, weight, norm_bias], grad_out)):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5, err_msg=name)


def conv_inputs(rng, batch, in_channels, out_channels, groups, width):
    """A strided [batch, in, width] input, the Conv1D weight [out, in / groups, 1], distinct biases and a residual;
    outputs of order 1 (weights scaled by 1/sqrt(fan-in)), as in a model, so float32 sums of up to 769 terms in a
    different order stay within the tolerance."""
    _, x = strided_leaf(rng, batch, in_channels, width)
    _, residual = strided_leaf(rng, batch, out_channels, width)
    weight = leaf(rng, out_channels, in_channels // groups, 1, scale=(in_channels // groups) ** -0.5)
    conv_bias, norm_weight, norm_bias = leaf(rng, out_channels), leaf(rng, out_channels), leaf(rng, out_channels)
    return x, weight, conv_bias, residual, norm_weight, norm_bias


# (in, out, groups): SqueezeBERT's q/k/v, post-attention, intermediate and output shapes in small, and widths and
# channel counts that are not multiples of a vector
CONV_SHAPES = [(64, 64, 4), (48, 48, 1), (32, 128, 4), (128, 32, 4), (40, 24, 2), (769, 769, 1)]


@pytest.mark.parametrize("in_channels, out_channels, groups", CONV_SHAPES)
@pytest.mark.parametrize("batch, width", [(1, 70), (3, 11), (2, 129)])  # batch 1: the columns split into tiles
def test_pointwise_conv_kernels_match_paddle_conv1d(built, rng, threads, strided_views, in_channels, out_channels,
                                                    groups, batch, width):
    x, weight, conv_bias, residual, norm_weight, norm_bias = conv_inputs(rng, batch, in_channels, out_channels,
                                                                         groups, width)
    with paddle.no_grad():
        conv = F.conv1d(x, weight, conv_bias, groups=groups)
        assert_close(built.pp_pointwise_conv(x, weight, conv_bias, groups).numpy(), conv.numpy(), atol=1e-5)
        assert_close(built.pp_pointwise_conv_gelu(x, weight, conv_bias, groups).numpy(), F.gelu(conv).numpy(),
                     atol=1e-5)
        fused = built.pp_pointwise_conv_residual_layer_norm(x, weight, conv_bias, residual, norm_weight, norm_bias,
                                                            groups, 1e-12)
        expected = F.layer_norm((conv + residual).transpose([0, 2, 1]), [out_channels], norm_weight, norm_bias,
                                1e-12).transpose([0, 2, 1])
        assert_close(fused.numpy(), expected.numpy(), atol=1e-5)


def test_pointwise_conv_kernels_reject_a_weight_of_the_wrong_shape(built, rng):
    x, weight, conv_bias, *_ = conv_inputs(rng, 2, 64, 64, 4, 5)
    with paddle.no_grad(), pytest.raises(OSError, match="weight must be"):
        built.pp_pointwise_conv(x, weight, conv_bias, 2)  # [64, 16, 1] is the weight of 4 groups, not 2


def heads_attention(query, key, value, mask, scaling, num_heads):
    """Paddle ops: context [batch, channels, width] and scores (scaled, masked, before the softmax)."""
    batch, channels, width = query.shape
    q, k, v = (t.reshape([batch, num_heads, channels // num_heads, width]) for t in (query, key, value))
    scores = paddle.matmul(q, k, transpose_x=True) * scaling + mask
    context = paddle.matmul(v, F.softmax(scores, axis=-1), transpose_y=True)
    return context.reshape([batch, channels, width]), scores


@pytest.mark.parametrize("channels, num_heads", [(64, 4), (48, 12), (40, 5)])
@pytest.mark.parametrize("batch, width", [(1, 70), (3, 11), (2, 129)])
def test_channel_attention_kernel_matches_paddle_ops(built, rng, threads, strided_views, channels, num_heads, batch,
                                                     width):
    (_, query), (_, key), (_, value) = (strided_leaf(rng, batch, channels, width) for _ in range(3))
    mask = additive_mask(rng, batch, width)
    with paddle.no_grad():
        context, scores = heads_attention(query, key, value, mask, 0.3, num_heads)
        for keep_scores in (False, True):
            ours, our_scores = built.pp_channel_attention(query, key, value, mask, 0.3, num_heads, keep_scores)
            assert_close(ours.numpy(), context.numpy(), atol=1e-5)
            if keep_scores:  # masked keys hold float32's min plus a score: compared where the mask keeps a key
                kept = np.broadcast_to(mask.numpy() == 0, scores.shape)
                assert_close(our_scores.numpy()[kept], scores.numpy()[kept], atol=1e-5)
                assert (our_scores.numpy()[~kept] < -1e38).all()
            else:
                assert our_scores.shape == [0]


@pytest.mark.parametrize("channels", WIDTHS)
def test_channel_bias_and_its_gradients_match_paddle(built, rng, threads, strided_views, channels):
    dense, x = strided_leaf(rng, 2, channels, 7)
    bias = leaf(rng, channels)
    _, grad_out = strided_leaf(rng, 2, channels, 7)
    kernel, reference = (lambda: built.pp_channel_bias(x, bias)), (lambda: x + bias.unsqueeze(-1))
    assert_close(kernel().numpy(), reference().numpy())
    for name, ours, theirs in zip(("input", "bias"), grads(kernel, [dense, bias], grad_out),
                                  grads(reference, [dense, bias], grad_out)):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5, err_msg=name)


@pytest.mark.parametrize("width", WIDTHS)
def test_gelu_and_gradient_match_paddle(built, rng, threads, strided_views, width):
    dense, x = strided_leaf(rng, 4, 7, width, scale=4.0)
    _, grad_out = strided_leaf(rng, 4, 7, width)
    assert_close(built.pp_gelu(x).numpy(), F.gelu(x).numpy())
    assert_close(grads(lambda: built.pp_gelu(x), [dense], grad_out)[0],
                 grads(lambda: F.gelu(x), [dense], grad_out)[0])


@pytest.mark.parametrize("width", WIDTHS)
def test_fused_bias_gelu_matches_paddle_ops(built, rng, threads, strided_views, width):
    _, x = strided_leaf(rng, 3, 5, width, scale=3.0)
    bias = leaf(rng, width)
    with paddle.no_grad():
        assert_close(built.pp_bias_gelu(x, bias).numpy(), F.gelu(x + bias).numpy())


@pytest.mark.parametrize("width", WIDTHS)
def test_fused_bias_residual_layer_norm_matches_paddle_ops_with_distinct_biases(built, rng, threads, strided_views,
                                                                                width):
    _, x = strided_leaf(rng, 3, 5, width, scale=3.0)
    _, residual = strided_leaf(rng, 3, 5, width)
    dense_bias, weight, norm_bias = leaf(rng, width), leaf(rng, width), leaf(rng, width)
    with paddle.no_grad():
        fused = built.pp_bias_residual_layer_norm(x, dense_bias, residual, weight, norm_bias, 1e-12)
        expected = F.layer_norm(x + dense_bias + residual, [width], weight, norm_bias, 1e-12)
    assert_close(fused.numpy(), expected.numpy(), atol=1e-5)


@pytest.mark.parametrize("heads,head_size", [(4, 16), (12, 64), (3, 13)])
def test_fused_bias_split_heads_matches_paddle_ops(built, rng, threads, strided_views, heads, head_size):
    _, x = strided_leaf(rng, 3, 5, heads * head_size)
    bias = leaf(rng, heads * head_size)
    with paddle.no_grad():
        fused = built.pp_bias_split_heads(x, bias, heads)
        expected = (x + bias).reshape([3, 5, heads, head_size]).transpose([0, 2, 1, 3])
    assert fused.shape == [3, heads, 5, head_size] and fused.is_contiguous()
    assert_close(fused.numpy(), expected.numpy())


def test_inference_fusions_in_the_layers_equal_the_unfused_layers(built, rng):
    """The layer helpers pass each bias to its place: the Linear's into the fusion, the norm's into the norm."""
    dense, norm, dropout = layers.Linear(40, 48), layers.LayerNorm(48, epsilon=1e-12), layers.Dropout(0.1)
    dropout.eval()
    for parameter in (dense.bias, norm.weight, norm.bias):
        parameter.set_value(rng.standard_normal(parameter.shape).astype("float32"))
    hidden = paddle.to_tensor(rng.standard_normal((3, 5, 40)).astype("float32"))
    residual = paddle.to_tensor(rng.standard_normal((3, 5, 48)).astype("float32"))
    with paddle.no_grad():
        fused = layers.dense_residual_layer_norm(dense, dropout, norm, hidden, residual).numpy()
        fused_gelu = layers.dense_gelu(dense, hidden).numpy()
        fused_heads = layers.dense_split_heads(dense, hidden, 4).numpy()
    linear = paddle.matmul(hidden, dense.weight) + dense.bias
    assert_close(fused_heads, linear.reshape([3, 5, 4, 12]).transpose([0, 2, 1, 3]).numpy())
    assert_close(fused, F.layer_norm(linear + residual, [48], norm.weight, norm.bias, 1e-12).numpy(), atol=1e-5)
    assert_close(fused_gelu, F.gelu(linear).numpy())


def test_squeezebert_layers_without_autograd_equal_paddle_ops(built, rng):
    """PointwiseConv1D, its fused GELU and residual + norm, and channel_attention: the kernels without autograd,
    Paddle's ops with autograd or with the fast paths off; dropout on in training falls back to the unfused ops."""
    conv, norm = layers.PointwiseConv1D(48, 48, groups=4), layers.ChannelLayerNorm(48, epsilon=1e-12)
    dropout, attention_dropout = layers.Dropout(0.1), layers.Dropout(0.1)
    for parameter in (*conv.parameters(), *norm.parameters()):
        parameter.set_value(rng.standard_normal(parameter.shape).astype("float32"))
    x, residual = (paddle.to_tensor(rng.standard_normal((2, 48, 9)).astype("float32")) for _ in range(2))
    mask = additive_mask(rng, 2, 9)

    def outputs():
        context, scores = layers.channel_attention(conv(x), x, residual, mask, 0.25, 4, attention_dropout, True)
        return [conv(x), layers.pointwise_conv_gelu(conv, x),
                layers.pointwise_conv_residual_layer_norm(conv, dropout, norm, x, residual), context, scores]

    dropout.eval(), attention_dropout.eval()
    with paddle.no_grad():
        fused = outputs()
        layers.set_fast_cpu_paths(False)
        try:
            plain = outputs()
        finally:
            layers.set_fast_cpu_paths(True)
    with_autograd = outputs()
    kept = np.broadcast_to(mask.numpy() == 0, fused[-1].shape)
    for ours, theirs, grads_recorded in zip(fused, plain, with_autograd):
        expected = [t.numpy()[kept] if t.ndim == 4 else t.numpy() for t in (theirs, grads_recorded)]
        for reference in expected:
            assert_close(ours.numpy()[kept] if ours.ndim == 4 else ours.numpy(), reference, atol=1e-5)
    assert layers.channel_attention(x, x, x, mask, 0.25, 4, attention_dropout, False)[1] is None
    dropout.train()
    with paddle.no_grad():
        trained = layers.pointwise_conv_residual_layer_norm(conv, dropout, norm, x, residual)
    assert not np.allclose(trained.numpy(), fused[2].numpy())  # dropout applied: the unfused path ran


def disentangled_reference(raw, c2p, c2p_index, p2c, p2c_index, keep, scale):
    """DeBERTa's masked attention probabilities from Paddle's ops, in transformers' order: the gathers (p2c's
    index given as [query, key], transposed back to transformers' [key, query]), divisions, adds, fill, softmax."""
    shape = raw.shape
    rel = None
    if c2p is not None:
        rel = paddle.take_along_axis(c2p, c2p_index.expand(shape), axis=-1, broadcast=False) / scale
    if p2c is not None:
        index = p2c_index.transpose([1, 0]).expand(shape)
        gathered = paddle.take_along_axis(p2c, index, axis=-1, broadcast=False).transpose([0, 1, 3, 2]) / scale
        rel = gathered if rel is None else rel + gathered
    scores = raw / scale if rel is None else raw / scale + rel
    lowest = paddle.full_like(scores, np.finfo(np.float32).min)
    return F.softmax(paddle.where(keep, scores, lowest), axis=-1)


@pytest.mark.parametrize("terms", ["c2p+p2c", "c2p", "p2c", "none"])
@pytest.mark.parametrize("length", [5, 40])
def test_disentangled_softmax_matches_paddle_ops(built, rng, threads, strided_views, terms, length):
    """pp_disentangled_softmax (DeBERTa's attention, inference only) on strided inputs, a padded key, a padded
    query row (uniform, as transformers' fill gives) and either relative term left out."""
    batch, heads, span, scale = 2, 3, 9, 3.5
    _, raw = strided_leaf(rng, batch, heads, length, length, scale=4.0)
    _, c2p = strided_leaf(rng, batch, heads, length, span, scale=4.0)
    _, p2c = strided_leaf(rng, batch, heads, length, span, scale=4.0)
    c2p_index, p2c_index = (paddle.to_tensor(rng.integers(0, span, (length, length))) for _ in range(2))
    kept = np.ones((batch, length), bool)
    kept[1, length // 2:] = False
    keep = paddle.to_tensor(kept[:, None, :, None] & kept[:, None, None, :])
    if "c2p" not in terms:
        c2p = c2p_index = None
    if "p2c" not in terms:
        p2c = p2c_index = None
    with paddle.no_grad():
        fused = built.pp_disentangled_softmax(raw, c2p, c2p_index, p2c, p2c_index, keep, scale).numpy()
        expected = disentangled_reference(raw, c2p, c2p_index, p2c, p2c_index, keep, scale).numpy()
    assert_close(fused, expected)
    assert float(fused[1, :, :length // 2, length // 2:].max()) == 0.0  # padded keys of kept queries
    assert_close(fused[1, :, length - 1], np.full((heads, length), 1 / length))  # a padded query: uniform


def test_disentangled_softmax_refuses_an_index_out_of_range(built, rng):
    raw = paddle.to_tensor(rng.standard_normal((1, 2, 4, 4)).astype("float32"))
    scores = paddle.to_tensor(rng.standard_normal((1, 2, 4, 3)).astype("float32"))
    index = paddle.full([4, 4], 3, dtype="int64")  # span is 3
    keep = paddle.ones([1, 1, 4, 4], dtype="bool")
    with paddle.no_grad(), pytest.raises(Exception, match="index out of range"):
        built.pp_disentangled_softmax(raw, scores, index, None, None, keep, 2.0)


# DeBERTa's attention variants: log buckets with shared keys (deberta-v3's), separate position projections with
# distances past max_relative_positions (clipped indices), either relative term alone, no relative attention
DEBERTA_VARIANTS = {
    "v3-shared-keys": dict(share_att_key=True, position_buckets=16, max_relative_positions=64),
    "separate-projections-clipped": dict(share_att_key=False, position_buckets=-1, max_relative_positions=4),
    "c2p-only": dict(pos_att_type="c2p", position_buckets=8, max_relative_positions=32),
    "p2c-only": dict(pos_att_type="p2c", position_buckets=8, max_relative_positions=32),
    "no-relative-attention": dict(relative_attention=False, position_biased_input=True),
}


@pytest.mark.parametrize("variant", list(DEBERTA_VARIANTS))
def test_deberta_inference_attention_equals_paddle_ops(built, rng, monkeypatch, variant):
    """DeBERTa without autograd runs its attention on pp_disentangled_softmax (projecting only the relative
    embedding rows some distance selects): hidden states and attention probabilities equal the ops path's."""
    from paddleport.models import DebertaV2Config, DebertaV2Model

    config = dict(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
                  max_position_embeddings=64, type_vocab_size=0, relative_attention=True, pos_att_type="p2c|c2p",
                  norm_rel_ebd="layer_norm", position_biased_input=False, hidden_dropout_prob=0.0,
                  attention_probs_dropout_prob=0.0)
    paddle.seed(0)
    model = DebertaV2Model.from_config(DebertaV2Config(**{**config, **DEBERTA_VARIANTS[variant]}))
    model.eval()
    input_ids = paddle.to_tensor(rng.integers(1, 100, (3, 21)))
    attention_mask = paddle.to_tensor((np.arange(21)[None, :] < np.array([[21], [9], [1]])).astype("int64"))
    calls = []
    fused_kernel = built.pp_disentangled_softmax
    monkeypatch.setattr(built, "pp_disentangled_softmax", lambda *args: calls.append(1) or fused_kernel(*args))

    def forward():
        with paddle.no_grad():
            out = model(input_ids=input_ids, attention_mask=attention_mask, output_attentions=True,
                        output_hidden_states=True)
        return [t.numpy() for t in out.hidden_states + out.attentions]

    fused = forward()
    assert len(calls) == 2  # one per layer
    layers.set_fast_cpu_paths(False)
    try:
        plain = forward()
    finally:
        layers.set_fast_cpu_paths(True)
    kept = attention_mask.numpy().astype(bool)
    for got, want in zip(fused, plain):
        if got.ndim == 3:  # hidden states, at the kept positions
            got, want = got[kept], want[kept]
        assert_close(got, want, atol=1e-5)


def test_dropout_keeps_one_minus_p_scales_and_reuses_its_mask_in_the_gradient(built, rng, threads):
    x = leaf(rng, 64, 1024)
    grad_out = paddle.to_tensor(rng.standard_normal((64, 1024)).astype("float32"))
    out = built.pp_dropout(x, 0.1, 1234).numpy()
    kept = out != 0
    assert abs(kept.mean() - 0.9) < 0.005
    assert_close(out[kept], x.numpy()[kept] / 0.9)
    grad = grads(lambda: built.pp_dropout(x, 0.1, 1234), [x], grad_out)[0]
    assert_close(grad, grad_out.numpy() * kept / 0.9)
    assert (built.pp_dropout(x, 0.1, 1234).numpy() == out).all()
    assert (built.pp_dropout(x, 0.1, 1235).numpy() != out).any()


@pytest.mark.parametrize("width", WIDTHS)
def test_dropout_of_a_strided_view_is_the_dropout_of_its_dense_copy(built, rng, strided_views, width):
    _, x = strided_leaf(rng, 3, 5, width)
    assert (built.pp_dropout(x, 0.2, 99).numpy() == built.pp_dropout(x.contiguous(), 0.2, 99).numpy()).all()


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
def test_tiny_training_step_equals_paddle_ops(built, architecture):
    fast_loss, fast_grads = _tiny_training_step(architecture, fast=True)
    plain_loss, plain_grads = _tiny_training_step(architecture, fast=False)
    assert abs(fast_loss - plain_loss) <= 1e-6
    assert fast_grads.keys() == plain_grads.keys()
    for name, grad in fast_grads.items():
        scale = max(1.0, float(np.abs(plain_grads[name]).max()))
        assert float(np.abs(grad - plain_grads[name]).max()) <= 1e-5 * scale, name


def test_squeezebert_training_step_is_the_same_with_gradient_checkpointing(built):
    """The recomputed layers return only tensors (their attention scores), with or without output_attentions."""
    from paddleport.models import SqueezeBertConfig, SqueezeBertForSequenceClassification

    rng = np.random.default_rng(1)
    input_ids, labels = paddle.to_tensor(rng.integers(1, 100, (3, 7))), paddle.to_tensor(rng.integers(0, 3, (3,)))
    paddle.seed(0)
    model = SqueezeBertForSequenceClassification.from_config(SqueezeBertConfig(**TINY_CONFIGS["squeezebert"]))
    model.train()
    steps = []
    for checkpointing, output_attentions in [(False, False), (True, False), (True, True)]:
        model.transformer.encoder.gradient_checkpointing = checkpointing
        model.clear_gradients()
        paddle.seed(5)  # the same dropout masks in each step
        output = model(input_ids=input_ids, labels=labels, output_attentions=output_attentions)
        output.loss.backward()
        assert (output.attentions is not None) == output_attentions
        steps.append((float(output.loss), {name: param.grad.numpy() for name, param in model.named_parameters()}))
    for loss, grads in steps[1:]:
        assert loss == steps[0][0]
        for name, grad in grads.items():
            np.testing.assert_allclose(grad, steps[0][1][name], rtol=0, atol=1e-6, err_msg=name)


def test_a_kernel_that_cannot_be_built_falls_back_with_a_warning(tmp_path, monkeypatch, caplog, capsys):
    """Also: a build says so on stderr before it starts (the user does not wait in silence)."""
    broken = tmp_path / "broken.cc"
    broken.write_text("this is not C++\n")
    monkeypatch.setattr(kernels, "SOURCE", broken)
    monkeypatch.setenv("PADDLE_EXTENSION_DIR", str(tmp_path / "build"))
    with caplog.at_level(logging.WARNING, logger=kernels.__name__):
        assert kernels.cpu_kernels.__wrapped__() is None
    assert "CPU kernels unavailable" in caplog.text and "error" in caplog.text.split("kernels:")[-1]
    assert capsys.readouterr().err.splitlines() == [kernels.BUILD_MESSAGE]


def test_kernels_can_be_switched_off_by_environment(monkeypatch):
    monkeypatch.setenv(kernels.DISABLE_ENV, "0")
    assert kernels.cpu_kernels.__wrapped__() is None


class _CallCounter:
    """Wraps the kernels' module: counts the calls of each ``pp_`` op the layers make through it."""

    def __init__(self, library):
        self.library, self.calls = library, {}

    def __getattr__(self, name):
        op = getattr(self.library, name)

        def counted(*args):
            self.calls[name] = self.calls.get(name, 0) + 1
            return op(*args)

        return counted


@pytest.mark.parametrize("architecture", ["BertModel", "RobertaModel", "XLMRobertaModel", "ErnieModel",
                                          "ElectraModel"])
def test_bert_family_inference_runs_every_fused_kernel_once_per_block(built, monkeypatch, architecture):
    """Every model on BERT's encoder takes the same fused inference path per layer: the query, key and value bias
    adds with their head transposes, the attention softmax, bias + GELU and both bias + residual + layer norms."""
    import paddleport.models as models

    counter = _CallCounter(built)
    monkeypatch.setattr(layers, "cpu_kernels", lambda: counter)
    model_class = getattr(models, architecture)
    config = model_class.config_class(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                      intermediate_size=37, embedding_size=32, use_task_id=True)
    paddle.seed(0)
    model = model_class.from_config(config)
    model.eval()
    input_ids = paddle.to_tensor(np.random.default_rng(0).integers(3, 99, (2, 7)))
    with paddle.no_grad():
        model(input_ids=input_ids, attention_mask=paddle.ones([2, 7], dtype="int64"))
    per_layer = {"pp_bias_split_heads": 3, "pp_softmax_mask": 1, "pp_bias_gelu": 1, "pp_bias_residual_layer_norm": 2}
    assert {name: counter.calls.get(name, 0) for name in per_layer} == {name: 2 * count
                                                                      for name, count in per_layer.items()}
