"""Bottleneck adapters on paddleport's Paddle models: the same layers, names and computation as
:mod:`paddleport.peft.torch_bottleneck` (AdapterHub's ``Adapter``), built from paddleport's layers."""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np
from paddle import nn

from paddleport.core.tensor_io import PADDLE_FORMAT_TAG
from paddleport.errors import PaddleportError
from paddleport.models.layers import Linear
from paddleport.peft.bottleneck import BottleneckPlan, check_bottleneck_fits, read_bottleneck_arrays
from paddleport.peft.paddle_lora import train_planned_parameters


class Activation(nn.Layer):
    """The activation of that name in paddleport's ``ACT2FN`` (transformers' names and formulas)."""

    def __init__(self, name: str):
        super().__init__()
        from paddleport.models.modeling_utils import ACT2FN

        self.f = ACT2FN[name.lower()]

    def forward(self, x):
        return self.f(x)


class BottleneckAdapter(nn.Layer):
    def __init__(self, hidden_size: int, bottleneck: int, non_linearity: str):
        super().__init__()
        self.adapter_down = nn.Sequential(Linear(hidden_size, bottleneck), Activation(non_linearity))
        self.adapter_up = Linear(bottleneck, hidden_size)

    def forward(self, x, residual):
        return self.adapter_up(self.adapter_down(x)) + residual


def _adapted_output_forward(self, hidden_states, input_tensor):
    """``BertSelfOutput`` / ``BertOutput`` with the adapter (the unfused path: dense, dropout, then the adapter)."""
    hidden_states = self.dropout(self.dense(hidden_states))
    adapter = self.adapters[self.adapter_name]
    adapter_input = self.LayerNorm(hidden_states + input_tensor) if self.original_ln_before else hidden_states
    return self.LayerNorm(adapter(adapter_input, hidden_states) + input_tensor)


def _sublayer(model: nn.Layer, name: str) -> nn.Layer:
    layer = model
    for part in name.split("."):
        layer = getattr(layer, part)
    return layer


def apply_bottleneck(model: nn.Layer, plan: BottleneckPlan) -> nn.Layer:
    """Add the planned adapters to ``model`` in place and train only them and the head."""
    settings = plan.settings
    for name in plan.adapted:
        layer = _sublayer(model, name)
        if not all(hasattr(layer, part) for part in ("dense", "dropout", "LayerNorm")):
            raise PaddleportError("--peft", f"{name} ({type(layer).__name__}) is not a BERT-style output block")
        layer.adapters = nn.LayerDict({settings.name: BottleneckAdapter(plan.hidden_size, plan.bottleneck,
                                                                        settings.non_linearity)})
        layer.adapter_name = settings.name
        layer.original_ln_before = settings.original_ln_before
        layer.forward = types.MethodType(_adapted_output_forward, layer)
    return train_planned_parameters(model, plan)


def save_adapter(model: nn.Layer, plan: BottleneckPlan, directory: Path, base_model: str | None) -> Path:
    """AdapterHub's layout with Paddle-layout tensors (``format: paddle``)."""
    from paddleport.models.modeling_utils import tensor_to_numpy
    from paddleport.peft.bottleneck import write_bottleneck_dir

    state = model.state_dict()
    arrays = {key: tensor_to_numpy(state[param.paddle_name]) for key, param in plan.saved.items()}
    return write_bottleneck_dir(directory, plan, arrays, PADDLE_FORMAT_TAG, base_model, model.config.num_labels)


def load_adapter_weights(model: nn.Layer, plan: BottleneckPlan, directory: Path) -> None:
    """An adapter directory (either layout; torch's transposed by the table) into an adapted model."""
    from paddleport.models.modeling_utils import numpy_to_paddle

    arrays, layout = read_bottleneck_arrays(directory)
    check_bottleneck_fits(plan, {key: value.shape for key, value in arrays.items()}, layout, Path(directory))
    state = model.state_dict()
    saved = plan.saved
    for key, value in arrays.items():
        param = saved[key]
        value = value if layout == "paddle" else param.transform.to_paddle(value)
        target = state[param.paddle_name]
        target.set_value(numpy_to_paddle(np.ascontiguousarray(value)).astype(target.dtype))


apply = apply_bottleneck  # the name paddleport.peft.methods' framework modules share


def inner_model(model):
    """The model itself: the adapters live inside its own modules (dropout sites keep their names)."""
    return model
