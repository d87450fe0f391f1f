"""The reference: a tiny torch Transformer encoder (attention, LayerNorm eps 1e-12, erf GELU, dropout)."""

import math

import torch
from torch import nn

HIDDEN, HEADS, FEATURES, LAYERS = 16, 4, 8, 2


class SelfAttention(nn.Module):
    def __init__(self, dropout: float):
        super().__init__()
        self.query = nn.Linear(HIDDEN, HIDDEN)
        self.key = nn.Linear(HIDDEN, HIDDEN)
        self.value = nn.Linear(HIDDEN, HIDDEN)
        self.dropout = nn.Dropout(dropout)

    def forward(self, hidden):
        batch, length, _ = hidden.shape
        split = lambda x: x.view(batch, length, HEADS, HIDDEN // HEADS).transpose(1, 2)  # noqa: E731
        query, key, value = split(self.query(hidden)), split(self.key(hidden)), split(self.value(hidden))
        scores = query @ key.transpose(-1, -2) / math.sqrt(HIDDEN // HEADS)
        probs = self.dropout(scores.softmax(-1))
        return (probs @ value).transpose(1, 2).reshape(batch, length, HIDDEN)


class EncoderLayer(nn.Module):
    def __init__(self, dropout: float):
        super().__init__()
        self.attention = SelfAttention(dropout)
        self.attention_output = nn.Linear(HIDDEN, HIDDEN)
        self.attention_norm = nn.LayerNorm(HIDDEN, eps=1e-12)
        self.intermediate = nn.Linear(HIDDEN, 4 * HIDDEN)
        self.act = nn.GELU()
        self.output = nn.Linear(4 * HIDDEN, HIDDEN)
        self.output_norm = nn.LayerNorm(HIDDEN, eps=1e-12)
        self.dropout = nn.Dropout(dropout)

    def forward(self, hidden):
        hidden = self.attention_norm(hidden + self.dropout(self.attention_output(self.attention(hidden))))
        return self.output_norm(hidden + self.dropout(self.output(self.act(self.intermediate(hidden)))))


class TinyEncoder(nn.Module):
    def __init__(self, dropout: float = 0.0):
        super().__init__()
        self.embed = nn.Linear(FEATURES, HIDDEN)
        self.layers = nn.ModuleList(EncoderLayer(dropout) for _ in range(LAYERS))
        self.head = nn.Linear(HIDDEN, 2)

    def forward(self, features):
        hidden = self.embed(features)
        for layer in self.layers:
            hidden = layer(hidden)
        return self.head(hidden[:, 0])


def build(dropout: float = 0.0) -> TinyEncoder:
    torch.manual_seed(0)
    return TinyEncoder(dropout)


def build_with_dropout() -> TinyEncoder:
    return build(dropout=0.2)
