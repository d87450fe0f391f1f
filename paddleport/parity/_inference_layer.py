"""A to_static-friendly wrapper: three int64 inputs in, a tuple of the model's main output tensors out.

Imported only when exporting (it imports paddle at module level so that dy2static can read its source).
"""

from __future__ import annotations

import paddle


def output_names(model: paddle.nn.Layer) -> list[str]:
    """What the exported program returns: logits for a head class, else the hidden state (+ pooled output)."""
    if not model.is_base_model:
        return ["logits"]
    return ["last_hidden_state"] + (["pooler_output"] if getattr(model, "pooler", None) is not None else [])


class InferenceLayer(paddle.nn.Layer):
    def __init__(self, model: paddle.nn.Layer):
        super().__init__()
        self.model = model
        self.names = output_names(model)

    def forward(self, input_ids, attention_mask, token_type_ids):
        output = self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        return tuple(getattr(output, name) for name in self.names)


def input_spec() -> list[paddle.static.InputSpec]:
    """Dynamic batch size and sequence length for the three model inputs."""
    return [paddle.static.InputSpec([None, None], "int64", name=name)
            for name in ("input_ids", "attention_mask", "token_type_ids")]
