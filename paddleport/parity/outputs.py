"""Which outputs a model class has, and what each one means: a value per token or one per sequence.

Compared positions follow from an output's meaning, never from its shape: a token-level output
(``[batch, seq, ...]``: hidden states, masked-LM logits) is compared where the attention mask keeps a token; a
sequence-level output (``[batch, ...]``: the pooled output, classification logits) is compared on every row, even
when its width happens to equal the padded length.  The classes' layouts come from the registry's conversion
tables (``paddleport.registry``: pooler or not, which head), so a new architecture is described in one place.
"""

from __future__ import annotations

import numpy as np

TOKEN = "token"
SEQUENCE = "sequence"
# What each head's logits are per: a label per sequence (or per choice), or one distribution per token.
HEAD_LOGITS_LEVEL = {"sequence_classification": SEQUENCE, "multiple_choice": SEQUENCE, "masked_lm": TOKEN,
                     "token_classification": TOKEN, "question_answering": TOKEN, "pretraining": TOKEN}
# The head outputs of each head (a span head has two logits, per token).
HEAD_OUTPUTS = {"question_answering": ("start_logits", "end_logits")}
BASE_OUTPUT_LEVEL = {"embeddings": TOKEN, "last_hidden_state": TOKEN, "pooler_output": SEQUENCE}


def class_layout(config: dict, architecture: str):
    """The conversion table's ``ClassLayout`` (pooler?, head) of ``architecture``."""
    from paddleport.registry import architecture as registered

    table = registered(config.get("model_type")).table
    if architecture not in table.classes:
        raise ValueError(f"{architecture} is not a {config['model_type']} class ({', '.join(table.classes)})")
    return table.classes[architecture]


def compared_outputs(config: dict, architecture: str) -> dict[str, str]:
    """name -> level of every tensor ``compare`` compares, in forward order: embeddings, layer.0 … layer.N-1,
    pooler_output when the class has a pooler, logits when it has a head."""
    from paddleport.core.configuration import AutoConfig

    layout = class_layout(config, architecture)
    names = {"embeddings": TOKEN}
    layers = AutoConfig.from_dict(config).layer_outputs  # DistilBERT's n_layers, ALBERT's shared applications
    names.update({f"layer.{index}": TOKEN for index in range(layers)})
    if layout.pooler:
        names["pooler_output"] = SEQUENCE
    if layout.head is not None:
        names.update(dict.fromkeys(HEAD_OUTPUTS.get(layout.head, ("logits",)), HEAD_LOGITS_LEVEL[layout.head]))
    return names


def output_level(name: str, config: dict, architecture: str) -> str:
    """TOKEN or SEQUENCE for a named output of ``architecture`` (hidden states are ``layer.N`` or
    ``hidden_states[N]``)."""
    if name in ("logits", "start_logits", "end_logits"):
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
