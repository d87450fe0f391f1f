"""Drop-in ``Linear``, ``LayerNorm``, ``Dropout``, ``gelu`` and attention softmax, fast on CPU.

Same parameters, names and results as ``paddle.nn``. In eager float32 on CPU they avoid the Paddle 3.3 kernels
that made BERT fine-tuning ~2x slower than torch: softmax, layer norm, GELU and dropout run paddleport's
kernels (``paddleport.models.kernels``, compiled on first use), and a Linear's bias gradient is a
``ones @ grad`` matmul instead of Paddle's column sum. Per-op figures: ``benchmarks/bench_cpu_kernels.py``.

Without the kernels, traced into a static program (export), on GPU or in other dtypes, every layer runs
``paddle.nn``'s own code, called as ``nn.X.forward(self, x)``: dy2static resolves a zero-argument ``super()``
wrongly in subclasses of these layers.
"""

from __future__ import annotations

import math

import paddle
import paddle.nn.functional as F
from paddle import nn
from paddle.autograd import PyLayer

from paddleport.dropout_masks import (DropoutMaskStream, check_mask_size, counter_hash32, keep_scale, keep_threshold,
                                      site_id)
from paddleport.models.kernels import cpu_kernels

_enabled = True


def set_fast_cpu_paths(enabled: bool) -> None:
    """Switch paddleport's CPU paths off (``paddle.nn``'s code everywhere), e.g. to compare the two."""
    global _enabled
    _enabled = enabled


def _on_fast_cpu_path(x) -> bool:
    """Whether ``x`` is an eager float32 CPU tensor and paddleport's CPU paths are switched on."""
    return _enabled and paddle.in_dynamic_mode() and x.dtype == paddle.float32 and x.place.is_cpu_place()


def _cpu_kernels_for(x):
    """The compiled kernels when ``x`` is on the fast CPU path and they could be built, else None."""
    return cpu_kernels() if _on_fast_cpu_path(x) else None


def _kernel_can_normalise(layer_norm: nn.LayerNorm) -> bool:
    """The kernels normalise over the last axis and apply both a weight and a bias."""
    return len(layer_norm._normalized_shape) == 1 and layer_norm.weight is not None and layer_norm.bias is not None


# --- Linear --------------------------------------------------------------------------------------

def _column_sums(grad_2d):
    """``grad_2d.sum(0)`` as a matmul: Paddle's CPU reduction over rows is ~40x slower than BLAS."""
    ones = paddle.ones([1, grad_2d.shape[0]], dtype=grad_2d.dtype)
    return paddle.matmul(ones, grad_2d).reshape([-1])


class _LinearFunction(PyLayer):
    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        return paddle.matmul(x, weight) + bias

    @staticmethod
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensor()
        grad_2d = grad_out.reshape([-1, grad_out.shape[-1]])
        grad_x = paddle.matmul(grad_out, weight, transpose_y=True)
        grad_weight = paddle.matmul(x.reshape([-1, x.shape[-1]]), grad_2d, transpose_x=True)
        return grad_x, grad_weight, _column_sums(grad_2d)


class Linear(nn.Linear):
    def forward(self, x):
        trains_all = paddle.is_grad_enabled() and not any(
            t is None or t.stop_gradient for t in (x, self.weight, self.bias))
        if trains_all and _on_fast_cpu_path(x):
            return _LinearFunction.apply(x, self.weight, self.bias)
        return nn.Linear.forward(self, x)


# --- LayerNorm, GELU, Dropout, attention softmax ---------------------------------------------------

def _paddle_layer_norm(layer_norm: nn.LayerNorm, x):
    """``nn.LayerNorm.forward``, except for an input that needs a gradient under a frozen weight (LoRA, prompt
    tuning): Paddle 3.3.1's CPU ``layer_norm`` backward then leaves the weight out of the input's gradient (computes
    it as for a weight of ones), so the weight and bias are applied after an unscaled norm."""
    frozen_weight = layer_norm.weight is not None and layer_norm.weight.stop_gradient
    if not (frozen_weight and not x.stop_gradient and paddle.is_grad_enabled()):
        return nn.LayerNorm.forward(layer_norm, x)
    normalized = F.layer_norm(x, layer_norm._normalized_shape, epsilon=layer_norm._epsilon)
    scaled = normalized * layer_norm.weight
    return scaled if layer_norm.bias is None else scaled + layer_norm.bias


class LayerNorm(nn.LayerNorm):
    def forward(self, x):
        kernels = _cpu_kernels_for(x)
        if kernels is None or not _kernel_can_normalise(self):
            return _paddle_layer_norm(self, x)
        return kernels.pp_layer_norm(x, self.weight, self.bias, self._epsilon)[0]


def gelu(x):
    """GELU, erf form (transformers' "gelu")."""
    kernels = _cpu_kernels_for(x)
    return F.gelu(x) if kernels is None else kernels.pp_gelu(x)


def _dropout_seed() -> int:
    """A seed for one dropout mask, drawn from Paddle's generator: ``paddle.seed`` and the saved RNG state
    (checkpoints, recompute) govern the masks as they govern Paddle's own dropout."""
    high, low = paddle.randint(0, 2**31 - 1, [2], dtype="int64").tolist()  # randint bounds are int32
    return (high << 31) | low


class Dropout(nn.Dropout):
    """``mask_stream`` set (by :func:`share_dropout_masks`): masks from the schedule torch draws too."""

    mask_stream: DropoutMaskStream | None = None
    mask_site = 0

    def forward(self, x):
        if (not self.training or self.p == 0) and self.mode == "upscale_in_train":
            return x  # Paddle's dropout copies the tensor here (0.8 ms for 16 x 128 x 768)
        if self.mask_stream is not None:
            return _shared_mask_dropout(x, float(self.p), self.mask_stream.key(self.mask_site))
        kernels = _cpu_kernels_for(x)
        if kernels is None or self.axis is not None or self.mode != "upscale_in_train":
            return nn.Dropout.forward(self, x)
        return kernels.pp_dropout(x, float(self.p), _dropout_seed())


def _shared_mask_dropout(x, p: float, key: int):
    kernels = _cpu_kernels_for(x)
    if kernels is not None:
        return kernels.pp_dropout(x, p, key)
    return shared_mask_dropout_ops(x, p, key)


def shared_mask_dropout_ops(x, p: float, key: int):
    """The shared mask from Paddle operators (the kernel's result, without needing the kernel built)."""
    count = math.prod(x.shape)
    check_mask_size(count)
    indices = paddle.arange(count, dtype="int64").reshape(x.shape)
    bits = counter_hash32(indices, key, constant=lambda value: paddle.to_tensor(value, dtype="int64"))
    return x * ((bits >= keep_threshold(p)).astype(x.dtype) * keep_scale(p))


def share_dropout_masks(model: nn.Layer, stream: DropoutMaskStream) -> None:
    """Every dropout of ``model`` draws its masks from ``stream`` (keyed by its sublayer name), as the torch
    model given the same stream does (``glue_runners.backends.torch_dropout``)."""
    for name, layer in model.named_sublayers():
        if isinstance(layer, nn.Dropout):
            if not isinstance(layer, Dropout) or layer.mode != "upscale_in_train" or layer.axis is not None:
                raise TypeError(f"{name}: shared dropout masks need paddleport.models.layers.Dropout")
            layer.mask_stream, layer.mask_site = stream, site_id(name)


def attention_probs(scores, mask, scaling: float):
    """``softmax(scores * scaling + mask)`` over the keys; ``mask`` is additive, broadcast or full-size."""
    kernels = _cpu_kernels_for(scores)
    if kernels is None or (mask is not None and mask.shape[1:3] != [1, 1]):
        scaled = scores * scaling
        return F.softmax(scaled if mask is None else scaled + mask, axis=-1)
    if mask is None:
        mask = paddle.zeros([scores.shape[0], 1, 1, scores.shape[-1]], dtype=scores.dtype)
    return kernels.pp_softmax_mask(scores, mask, scaling)


def attention_mask_for_layers(mask, num_heads: int):
    """The additive [batch, 1, 1, keys] mask as every layer's ``attention_probs`` wants it: unchanged for the
    kernel, else materialised once per forward as [batch, heads, queries, keys] in eager mode (Paddle adds a
    broadcast mask to the scores ~30x slower than a same-shape one: 25 ms vs 0.8 ms for 32 x 12 x 80 x 80)."""
    if _cpu_kernels_for(mask) is not None or not paddle.in_dynamic_mode():
        return mask
    batch, keys = mask.shape[0], mask.shape[-1]
    return mask.expand([batch, num_heads, keys, keys])


# --- inference-only fusions: a Linear's bias folded into the op after its matmul --------------------

def _dropout_off(dropout: nn.Dropout) -> bool:
    """Whether ``dropout`` is the identity now (evaluation, or p 0): the fused inference kernels need it."""
    return not dropout.training or dropout.p == 0


def inference_kernels_for(x):
    """The kernels when no gradient is recorded (the fused ops below have no backward)."""
    return None if paddle.is_grad_enabled() else _cpu_kernels_for(x)


def dense_gelu(dense: nn.Linear, hidden_states):
    """``gelu(dense(hidden_states))``; without autograd, the bias add and GELU are one pass after the matmul."""
    kernels = inference_kernels_for(hidden_states)
    if kernels is None or not isinstance(dense, nn.Linear):  # a wrapped Linear (LoRA) runs its own forward
        return gelu(dense(hidden_states))
    return kernels.pp_bias_gelu(paddle.matmul(hidden_states, dense.weight), dense.bias)


def split_heads(x, num_heads: int):
    """[batch, seq, heads * head_size] -> [batch, heads, seq, head_size]"""
    return x.reshape([0, 0, num_heads, x.shape[-1] // num_heads]).transpose([0, 2, 1, 3])


def dense_split_heads(dense: nn.Linear, hidden_states, num_heads: int):
    """``split_heads(dense(hidden_states))``; without autograd, the bias add and the head transpose are one pass
    after the matmul (the query, key and value projections: 36 adds and 36 transposes fewer per BERT-base forward)."""
    kernels = inference_kernels_for(hidden_states)
    if (kernels is None or not isinstance(dense, nn.Linear)  # a wrapped Linear (LoRA) runs its own forward
            or dense.bias is None or len(hidden_states.shape) != 3):
        return split_heads(dense(hidden_states), num_heads)
    return kernels.pp_bias_split_heads(paddle.matmul(hidden_states, dense.weight), dense.bias, num_heads)


def dense_residual_layer_norm(dense: nn.Linear, dropout: nn.Dropout | None, layer_norm: nn.LayerNorm, hidden_states,
                              residual):
    """``layer_norm(dropout(dense(hidden_states)) + residual)`` (no dropout when ``dropout`` is None); without
    autograd and with dropout off, the bias, residual add and norm are one pass after the matmul (saves two
    full-size adds per block)."""
    kernels = inference_kernels_for(hidden_states)
    dropout_off = dropout is None or _dropout_off(dropout)
    if (kernels is None or not dropout_off or not _kernel_can_normalise(layer_norm)
            or not isinstance(dense, nn.Linear)):  # a wrapped Linear (LoRA) runs its own forward
        projected = dense(hidden_states)
        return layer_norm((projected if dropout is None else dropout(projected)) + residual)
    return kernels.pp_bias_residual_layer_norm(paddle.matmul(hidden_states, dense.weight), dense.bias, residual,
                                               layer_norm.weight, layer_norm.bias, layer_norm._epsilon)


# --- SqueezeBERT's [batch, channels, width] layout ---------------------------------------------------

class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of [batch, channels, width] data (no transposes with the kernel)."""

    def forward(self, x):
        kernels = _cpu_kernels_for(x)
        if kernels is None:
            return _paddle_layer_norm(self, x.transpose([0, 2, 1])).transpose([0, 2, 1])
        return kernels.pp_channel_layer_norm(x, self.weight, self.bias, self._epsilon)[0]


def add_channel_bias(x, bias):
    """``x`` [batch, channels, width] plus ``bias`` [channels]: Paddle's broadcast add over the middle axis
    is slow on CPU, and so is the reduction that gives its bias gradient."""
    kernels = _cpu_kernels_for(x)
    return x + bias.unsqueeze(-1) if kernels is None else kernels.pp_channel_bias(x, bias)


class PointwiseConv1D(nn.Conv1D):
    """A kernel-size-1 grouped ``Conv1D`` (same parameters, same layout) over [batch, channels, width] data.

    Paddle's CPU grouped convolution is several times slower than a matmul over the groups, which is what this
    computes; without autograd, paddleport's kernel runs the groups as sgemm tiles with the bias (and, through
    :func:`pointwise_conv_gelu` / :func:`pointwise_conv_residual_layer_norm`, what follows it) added while each
    tile is in cache.
    """

    def __init__(self, in_channels: int, out_channels: int, groups: int, bias_attr=None):
        super().__init__(in_channels, out_channels, kernel_size=1, groups=groups, bias_attr=bias_attr)
        self.groups = groups

    def forward(self, x):
        kernels = _conv_kernels_for(self, x)
        if kernels is None:
            output = self.without_bias(x)
            return output if self.bias is None else add_channel_bias(output, self.bias)
        return kernels.pp_pointwise_conv(x, self.weight, self.bias, self.groups)

    def without_bias(self, x):
        """The convolution before its bias is added, [N, out_channels, W]."""
        out_channels, in_per_group = self.weight.shape[0], self.weight.shape[1]
        weight = self.weight.reshape([self.groups, out_channels // self.groups, in_per_group])
        if paddle.is_grad_enabled():
            grouped = self._differentiable_matmul(weight, x)
        else:  # inference: the weight broadcast over the batch, no transposes
            grouped = paddle.matmul(weight, x.reshape([0, self.groups, in_per_group, -1]))
        return grouped.reshape([0, out_channels, -1])

    def _differentiable_matmul(self, weight, x):
        """[N, C, W] -> [groups, C/groups, N*W] -> one batched matmul -> [N, groups, out/groups, W].

        Paddle cannot differentiate a matmul that broadcasts the weight over the batch.
        """
        batch, _, width = x.shape
        groups, out_per_group, in_per_group = weight.shape
        columns = x.reshape([batch, groups, in_per_group, width]).transpose([1, 2, 0, 3])
        grouped = paddle.matmul(weight, columns.reshape([groups, in_per_group, batch * width]))
        return grouped.reshape([groups, out_per_group, batch, width]).transpose([2, 0, 1, 3])


def _conv_kernels_for(conv: nn.Layer, x):
    """The kernels when no gradient is recorded and ``conv`` is a plain PointwiseConv1D with a bias (a LoRA-wrapped
    convolution runs its own forward)."""
    if not isinstance(conv, PointwiseConv1D) or conv.bias is None:
        return None
    return inference_kernels_for(x)


def pointwise_conv_gelu(conv: PointwiseConv1D, x):
    """``gelu(conv(x))``; without autograd, one kernel (SqueezeBERT's intermediate block)."""
    kernels = _conv_kernels_for(conv, x)
    if kernels is None:
        return gelu(conv(x))
    return kernels.pp_pointwise_conv_gelu(x, conv.weight, conv.bias, conv.groups)


def pointwise_conv_residual_layer_norm(conv: PointwiseConv1D, dropout: nn.Dropout, layer_norm: ChannelLayerNorm, x,
                                       residual):
    """``layer_norm(dropout(conv(x)) + residual)`` over the channels of [batch, channels, width]; without autograd
    and with dropout off, one kernel (SqueezeBERT's conv blocks)."""
    kernels = _conv_kernels_for(conv, x)
    if kernels is None or not _dropout_off(dropout):
        return layer_norm(dropout(conv(x)) + residual)
    return kernels.pp_pointwise_conv_residual_layer_norm(x, conv.weight, conv.bias, residual, layer_norm.weight,
                                                         layer_norm.bias, conv.groups, layer_norm._epsilon)


def channel_attention(query, key, value, mask, scaling: float, num_heads: int, dropout: nn.Dropout,
                      output_attentions: bool):
    """``(context, scores)``: attention over [batch, channels, width] query, key and value whose heads are blocks of
    channels (SqueezeBERT's layout), the context in the same layout; ``scores`` is None unless ``output_attentions``,
    else ``query^T key * scaling + mask`` [batch, heads, queries, keys], before the softmax (what transformers'
    SqueezeBERT returns as its attentions). Without autograd and with dropout off, one kernel: each head's scores,
    masked softmax and context computed in cache, nothing but the context written out."""
    kernels = inference_kernels_for(query)
    batch, channels, width = query.shape
    if kernels is not None and _dropout_off(dropout) and (mask is None or mask.shape[1:3] == [1, 1]):
        if mask is None:
            mask = paddle.zeros([batch, 1, 1, width], dtype=query.dtype)
        context, scores = kernels.pp_channel_attention(query, key, value, mask, scaling, num_heads,
                                                       output_attentions)
        return context, (scores if output_attentions else None)
    heads = [t.reshape([0, num_heads, channels // num_heads, -1]) for t in (query, key, value)]
    scores = paddle.matmul(heads[0], heads[1], transpose_x=True)
    probs = dropout(attention_probs(scores, mask, scaling))
    context = paddle.matmul(heads[2], probs, transpose_y=True)  # [N, heads, head_size, W]
    if output_attentions:
        scores = scores * scaling if mask is None else scores * scaling + mask
    return context.reshape([0, channels, -1]), (scores if output_attentions else None)
