"""Typed tensor transforms between the torch (Hugging Face) and Paddle layouts.

Each rule in a conversion table names its transform by the kind of layer the tensor belongs to;
nothing here looks at a tensor's shape to decide what to do.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Transform:
    name: str
    transpose: bool = False
    # How a fresh parameter of this kind starts (transformers' init): "weight" ~ N(0, initializer_range),
    # "bias" zeros, "layernorm" ones.
    kind: str = "weight"

    def to_paddle(self, array: np.ndarray) -> np.ndarray:
        return transposed(array) if self.transpose else array

    def to_hf(self, array: np.ndarray) -> np.ndarray:
        return self.to_paddle(array)  # a transpose is its own inverse

    def paddle_shape(self, hf_shape: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(reversed(hf_shape)) if self.transpose else tuple(hf_shape)


def transposed(array: np.ndarray, rows_per_block: int = 64) -> np.ndarray:
    """``array.T`` as a new C-contiguous array, copied a band of rows at a time.

    ``np.ascontiguousarray(array.T)`` walks the source column-wise and misses the cache on every element; a band
    of 64 source rows fills 64 contiguous values of each output row, several times faster on a 768 x 3072 matrix.
    """
    if array.ndim != 2:
        return np.ascontiguousarray(array.T)
    out = np.empty(array.shape[::-1], dtype=array.dtype)
    for start in range(0, array.shape[0], rows_per_block):
        out[:, start:start + rows_per_block] = array[start:start + rows_per_block].T
    return out


# torch nn.Linear stores [out, in]; paddle nn.Linear stores [in, out].
LINEAR_WEIGHT = Transform("linear_weight", transpose=True)
LINEAR_BIAS = Transform("linear_bias", kind="bias")
# Conv1d weights are [out, in/groups, kernel] in both frameworks.
CONV1D_WEIGHT = Transform("conv1d_weight")
CONV1D_BIAS = Transform("conv1d_bias", kind="bias")
EMBEDDING = Transform("embedding")
# torch.nn.LSTM and paddle.nn.LSTM hold the same [4 x hidden, in] gate matrices (gates i, f, g, o) and biases.
LSTM_WEIGHT = Transform("lstm_weight")
LSTM_BIAS = Transform("lstm_bias", kind="bias")
LAYERNORM_WEIGHT = Transform("layernorm_weight", kind="layernorm")
LAYERNORM_BIAS = Transform("layernorm_bias", kind="bias")
# A free parameter (the MLM output bias) and an untied MLM decoder, which both frameworks hold as
# [vocab, hidden] (paddleport computes the decoder as a matmul with transpose_y, like a tied embedding).
PARAMETER = Transform("parameter")
PARAMETER_BIAS = Transform("parameter", kind="bias")
OUTPUT_EMBEDDING = Transform("output_embedding")
