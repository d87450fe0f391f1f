"""Shorthands for writing tables: one call per layer, yielding its weight and bias rules."""

from __future__ import annotations

from paddleport.convert.table import Rule, ShapeFn
from paddleport.convert.transforms import (
    CONV1D_BIAS, CONV1D_WEIGHT, EMBEDDING, LAYERNORM_BIAS, LAYERNORM_WEIGHT, LINEAR_BIAS, LINEAR_WEIGHT,
)


def _same_name(name: str, transform, shape: ShapeFn, groups: str | None = None) -> Rule:
    """paddleport's Paddle models keep the Hugging Face parameter names."""
    return Rule(name, name, transform, shape, groups=groups)


def linear(path: str, out_features: str, in_features: str) -> tuple[Rule, ...]:
    """A torch/paddle ``Linear``; sizes are config attribute names."""
    return (
        _same_name(f"{path}.weight", LINEAR_WEIGHT, lambda c: (getattr(c, out_features), getattr(c, in_features))),
        _same_name(f"{path}.bias", LINEAR_BIAS, lambda c: (getattr(c, out_features),)),
    )


def single_output(path: str, in_features: str = "hidden_size") -> tuple[Rule, ...]:
    """A ``Linear(in_features, 1)``: a multiple-choice classifier, ELECTRA's per-token discriminator."""
    return (
        _same_name(f"{path}.weight", LINEAR_WEIGHT, lambda c: (1, getattr(c, in_features))),
        _same_name(f"{path}.bias", LINEAR_BIAS, lambda c: (1,)),
    )


def conv1d(path: str, out_channels: str, in_channels: str, groups: str) -> tuple[Rule, ...]:
    """A kernel-size-1 ``Conv1d`` with ``groups`` taken from the config."""
    return (
        _same_name(f"{path}.weight", CONV1D_WEIGHT, lambda c: (
            getattr(c, out_channels), getattr(c, in_channels) // getattr(c, groups), 1), groups),
        _same_name(f"{path}.bias", CONV1D_BIAS, lambda c: (getattr(c, out_channels),), groups),
    )


def layernorm(path: str, size: str = "hidden_size") -> tuple[Rule, ...]:
    return (
        _same_name(f"{path}.weight", LAYERNORM_WEIGHT, lambda c: (getattr(c, size),)),
        _same_name(f"{path}.bias", LAYERNORM_BIAS, lambda c: (getattr(c, size),)),
    )


def embedding(path: str, rows: str, size: str) -> tuple[Rule, ...]:
    return (_same_name(f"{path}.weight", EMBEDDING, lambda c: (getattr(c, rows), getattr(c, size))),)


def parameter(name: str, shape: ShapeFn, transform, when=lambda c: True) -> tuple[Rule, ...]:
    return (Rule(name, name, transform, shape, when),)


def embeddings_rules(size: str) -> tuple[Rule, ...]:
    """The word/position/token-type embeddings and their LayerNorm (BERT, SqueezeBERT, ELECTRA, ALBERT), all of
    width ``size`` (ELECTRA's and ALBERT's ``embedding_size`` may differ from ``hidden_size``)."""
    return (
        *embedding("embeddings.word_embeddings", "vocab_size", size),
        *embedding("embeddings.position_embeddings", "max_position_embeddings", size),
        *embedding("embeddings.token_type_embeddings", "type_vocab_size", size),
        *layernorm("embeddings.LayerNorm", size),
    )
