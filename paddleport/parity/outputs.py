"""Which outputs a model class has, and what each one means: a value per token or one per sequence.

Compared positions follow from an output's meaning, never from its shape: a token-level output
(``[batch, seq, ...]``: hidden states, masked-LM logits) is compared where the attention mask keeps a token; a
sequence-level output (``[batch, ...]``: the pooled output, classification logits) is compared on every row, even
when its width happens to equal the padded length.  The classes' layouts come from the conversion tables
(``paddleport.convert.TABLES``: pooler or not, which head), so a new architecture is described in one place.
"""

from __future__ import annotations

import numpy as np

TOKEN = "token"
SEQUENCE = "sequence"
# What each head's logits are per: a label per sequence, or a vocabulary distribution per token.
HEAD_LOGITS_LEVEL = {"sequence_classification": SEQUENCE, "masked_lm": TOKEN}
BASE_OUTPUT_LEVEL = {"embeddings": TOKEN, "last_hidden_state": TOKEN, "pooler_output": SEQUENCE}


def class_layout(config: dict, architecture: str):
    """The conversion table's ``ClassLayout`` (pooler?, head) of ``architecture``."""
    from paddleport.convert.registry import TABLES

    table = TABLES[config["model_type"]]
    if architecture not in table.classes:
        raise ValueError(f"{architecture} is not a {config['model_type']} class ({', '.join(table.classes)})")
    return table.classes[architecture]


def compared_outputs(config: dict, architecture: str) -> dict[str, str]:
    """name -> level of every tensor ``compare`` compares, in forward order: embeddings, layer.0 … layer.N-1,
    pooler_output when the class has a pooler, logits when it has a head."""
    layout = class_layout(config, architecture)
    names = {"embeddings": TOKEN}
    names.update({f"layer.{index}": TOKEN for index in range(int(config["num_hidden_layers"]))})
    if layout.pooler:
        names["pooler_output"] = SEQUENCE
    if layout.head is not None:
        names["logits"] = HEAD_LOGITS_LEVEL[layout.head]
    return names


def output_level(name: str, config: dict, architecture: str) -> str:
    """TOKEN or SEQUENCE for a named output of ``architecture`` (hidden states are ``layer.N`` or
    ``hidden_states[N]``)."""
    if name == "logits":
        head = class_layout(config, architecture).head
        if head is None:
            raise ValueError(f"{architecture} has no head, so no logits")
        return HEAD_LOGITS_LEVEL[head]
    if name in BASE_OUTPUT_LEVEL:
        return BASE_OUTPUT_LEVEL[name]
    if name.startswith(("layer.", "hidden_states[")):
        return TOKEN
    raise ValueError(f"unknown output {name!r}")


def compared_positions(level: str, attention_mask: np.ndarray) -> np.ndarray:
    """The boolean position mask ``metrics.difference`` takes: the kept tokens, or every row of the batch."""
    kept = np.asarray(attention_mask).astype(bool)
    if level == TOKEN:
        return kept
    if level == SEQUENCE:
        return np.ones(kept.shape[0], dtype=bool)
    raise ValueError(f"unknown output level {level!r}")
