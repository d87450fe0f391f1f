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
# The outputs of each head (a conversion table's head name), in forward order, and what each is per: a label per
# sequence (or per choice), or one per token. A span head has two logits per token; ERNIE's pre-training heads
# give masked-LM logits per token and next-sentence logits per sequence.
HEAD_OUTPUTS = {
    "sequence_classification": {"logits": SEQUENCE}, "multiple_choice": {"logits": SEQUENCE},
    "masked_lm": {"logits": TOKEN}, "token_classification": {"logits": TOKEN},
    "question_answering": {"start_logits": TOKEN, "end_logits": TOKEN},
    "pretraining": {"logits": TOKEN},  # ELECTRA's discriminator: replaced or not, per token
    "next_sentence_prediction": {"logits": SEQUENCE},
    "masked_lm_and_next_sentence": {"prediction_logits": TOKEN, "seq_relationship_logits": SEQUENCE},
}
HEAD_OUTPUT_NAMES = tuple(dict.fromkeys(name for outputs in HEAD_OUTPUTS.values() for name in outputs))
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
        names.update(HEAD_OUTPUTS[layout.head])
    return names


def output_level(name: str, config: dict, architecture: str) -> str:
    """TOKEN or SEQUENCE for a named output of ``architecture`` (hidden states are ``layer.N`` or
    ``hidden_states[N]``)."""
    if name in HEAD_OUTPUT_NAMES:
        head = class_layout(config, architecture).head
        if name not in HEAD_OUTPUTS.get(head, {}):
            raise ValueError(f"{architecture} has no {name}")
        return HEAD_OUTPUTS[head][name]
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
