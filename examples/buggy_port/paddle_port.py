"""A Paddle port of ``torch_encoder.TinyEncoder`` with a catalogue of classic porting bugs, one switch each.

``build()`` is the correct port; ``build(bug)`` plants one bug of ``BUGS``; ``build_buggy()`` (the CLI's
factory) plants the tanh GELU. ``paddleport diff --single-step`` names the module each bug is in.
"""

import math

import paddle
from paddle import nn

HIDDEN, HEADS, FEATURES, LAYERS = 16, 4, 8, 2

BUGS = {
    "layernorm_eps": "LayerNorm eps left at Paddle's default 1e-5 (torch model: 1e-12)",
    "gelu_tanh": "GELU with the tanh approximation (torch: exact erf)",
    "attention_scale_heads": "attention scores divided by the head count instead of sqrt(head dim)",
    "swapped_qk": "queries computed by the key projection and keys by the query projection",
}


class SelfAttention(nn.Layer):
    def __init__(self, dropout: float, bug: str | None):
        super().__init__()
        self.query = nn.Linear(HIDDEN, HIDDEN)
        self.key = nn.Linear(HIDDEN, HIDDEN)
        self.value = nn.Linear(HIDDEN, HIDDEN)
        self.dropout = nn.Dropout(dropout)
        self.bug = bug

    def forward(self, hidden):
        batch, length, _ = hidden.shape
        split = lambda x: x.reshape([batch, length, HEADS, HIDDEN // HEADS]).transpose([0, 2, 1, 3])  # noqa: E731
        query, key = self.query(hidden), self.key(hidden)
        if self.bug == "swapped_qk":
            query, key = key, query
        query, key, value = split(query), split(key), split(self.value(hidden))
        scale = HEADS if self.bug == "attention_scale_heads" else math.sqrt(HIDDEN // HEADS)
        scores = paddle.matmul(query, key, transpose_y=True) / scale
        probs = self.dropout(nn.functional.softmax(scores, axis=-1))
        return paddle.matmul(probs, value).transpose([0, 2, 1, 3]).reshape([batch, length, HIDDEN])


class EncoderLayer(nn.Layer):
    def __init__(self, dropout: float, bug: str | None):
        super().__init__()
        eps = 1e-5 if bug == "layernorm_eps" else 1e-12
        self.attention = SelfAttention(dropout, bug)
        self.attention_output = nn.Linear(HIDDEN, HIDDEN)
        self.attention_norm = nn.LayerNorm(HIDDEN, epsilon=eps)
        self.intermediate = nn.Linear(HIDDEN, 4 * HIDDEN)
        self.act = nn.GELU(approximate=bug == "gelu_tanh")
        self.output = nn.Linear(4 * HIDDEN, HIDDEN)
        self.output_norm = nn.LayerNorm(HIDDEN, epsilon=eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, hidden):
        hidden = self.attention_norm(hidden + self.dropout(self.attention_output(self.attention(hidden))))
        return self.output_norm(hidden + self.dropout(self.output(self.act(self.intermediate(hidden)))))


class TinyEncoder(nn.Layer):
    def __init__(self, dropout: float = 0.0, bug: str | None = None):
        super().__init__()
        self.embed = nn.Linear(FEATURES, HIDDEN)
        self.layers = nn.LayerList([EncoderLayer(dropout, bug) for _ in range(LAYERS)])
        self.head = nn.Linear(HIDDEN, 2)

    def forward(self, features):
        hidden = self.embed(features)
        for layer in self.layers:
            hidden = layer(hidden)
        return self.head(hidden[:, 0])


def build(bug: str | None = None, dropout: float = 0.0) -> TinyEncoder:
    if bug is not None and bug not in BUGS:
        raise ValueError(f"unknown bug {bug!r}")
    return TinyEncoder(dropout, bug)


def build_with_dropout() -> TinyEncoder:
    return build(dropout=0.2)


def build_buggy() -> TinyEncoder:
    return build("gelu_tanh")


def build_cnn_with_torch_momentum():
    """The CNN port with BatchNorm momentum copied from torch (0.1): Paddle's convention is 1 - torch's (0.9)."""
    from examples.cnn.paddle_cnn import SmallCNN

    return SmallCNN(bn_momentum=0.1)
