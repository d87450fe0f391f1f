"""A to_static-friendly wrapper: the model's int64 inputs in, a tuple of its main output tensors out.

Imported only when exporting (it imports paddle at module level so that dy2static can read its source).
"""

from __future__ import annotations

import paddle


def output_names(model: paddle.nn.Layer) -> list[str]:
    """What the exported program returns: the head's outputs, else the hidden state (+ pooled output)."""
    if not model.is_base_model:
        return list(model.main_output_names)
    return ["last_hidden_state"] + (["pooler_output"] if getattr(model, "pooler", None) is not None else [])


class InferenceLayer(paddle.nn.Layer):
    """Takes the model's inputs in ``model.input_names`` order (no token_type_ids for DistilBERT, task_type_ids for
    an ERNIE with ``use_task_id``)."""

    def __init__(self, model: paddle.nn.Layer):
        super().__init__()
        self.model = model
        self.names = output_names(model)
        self.input_names = model.input_names

    def forward(self, input_ids, attention_mask, token_type_ids=None, task_type_ids=None):
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        if task_type_ids is not None:
            inputs["task_type_ids"] = task_type_ids
        output = self.model(**inputs)
        return tuple(getattr(output, name) for name in self.names)


def input_spec(input_names: tuple[str, ...]) -> list[paddle.static.InputSpec]:
    """Dynamic batch size and sequence length for each model input."""
    return [paddle.static.InputSpec([None, None], "int64", name=name) for name in input_names]
