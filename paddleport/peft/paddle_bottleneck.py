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
from paddleport.peft.bottleneck import (BottleneckPlan, adapter_site, channel_output_block_forward,
                                        check_bottleneck_fits, held_adapter, output_block_forward,
                                        read_bottleneck_arrays)
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
    def __init__(self, hidden_size: int, bottleneck: int, non_linearity: str, original_ln_before: bool):
        super().__init__()
        self.adapter_down = nn.Sequential(Linear(hidden_size, bottleneck), Activation(non_linearity))
        self.adapter_up = Linear(bottleneck, hidden_size)
        self.original_ln_before = original_ln_before

    def forward(self, x, residual):
        return self.adapter_up(self.adapter_down(x)) + residual

    def over_channels(self, x, residual):
        """The adapter on [batch, channels, width] data (SqueezeBERT's): its Linears act on the channels."""
        return self(x.transpose([0, 2, 1]), residual.transpose([0, 2, 1])).transpose([0, 2, 1])


class AdapterHolder(nn.Layer):
    """Holds ``adapters`` where the model has no layer of its own to hold them (DistilBERT's and ALBERT's
    ``attention_adapters``, ``output_adapters``)."""


# The forwards replacing an adapted layer's (as torch_bottleneck.FORWARDS; the unfused paths of paddleport's layers).

def _distilbert_block_forward(self, hidden_states, attention_mask=None):
    attention_output, probs = self.attention(hidden_states, attention_mask)
    attention_output = adapter_site(held_adapter(getattr(self, "attention_adapters", None)), attention_output,
                                    hidden_states, self.sa_layer_norm)
    return adapter_site(held_adapter(getattr(self, "output_adapters", None)), self.ffn(attention_output),
                        attention_output, self.output_layer_norm), probs


def _albert_attention_forward(self, hidden_states, attention_mask=None):
    """AdapterHub's ALBERT attention site: the adapter reads the attention's input (see torch_bottleneck)."""
    context, probs = self.attend(hidden_states, attention_mask)
    projected = self.output_dropout(self.dense(context))
    return adapter_site(held_adapter(self.attention_adapters), hidden_states, projected, self.LayerNorm), probs


def _albert_layer_forward(self, hidden_states, attention_mask=None):
    attention_output, probs = self.attention(hidden_states, attention_mask)
    ffn_output = self.ffn_output(self.activation(self.ffn(attention_output)))
    return adapter_site(held_adapter(self.output_adapters), ffn_output, attention_output,
                        self.full_layer_layer_norm), probs


FORWARDS = {
    "output_block": (output_block_forward, ("dense", "dropout", "LayerNorm")),
    "channel_output_block": (channel_output_block_forward, ("conv1d", "dropout", "layernorm")),
    "distilbert_block": (_distilbert_block_forward, ("attention", "sa_layer_norm", "ffn", "output_layer_norm")),
    "albert_attention": (_albert_attention_forward, ("attend", "dense", "output_dropout", "LayerNorm")),
    "albert_layer": (_albert_layer_forward, ("attention", "ffn", "activation", "ffn_output",
                                             "full_layer_layer_norm")),
}


def _sublayer(model: nn.Layer, name: str) -> nn.Layer | None:
    layer = model
    for part in name.split(".") if name else []:
        layer = getattr(layer, part, None)
    return layer


def apply_bottleneck(model: nn.Layer, plan: BottleneckPlan) -> nn.Layer:
    """Add the planned adapters to ``model`` in place and train only them and the head."""
    settings = plan.settings
    for site in plan.placed:
        holder = _sublayer(model, site.holder)
        if holder is None:  # a holder the architecture lacks: AdapterHub adds one there
            parent, _, leaf = site.holder.rpartition(".")
            holder = AdapterHolder()
            _sublayer(model, parent).add_sublayer(leaf, holder)
        holder.adapters = nn.LayerDict({settings.name: BottleneckAdapter(
            plan.hidden_size, plan.bottleneck, settings.non_linearity, settings.original_ln_before)})
        holder.adapter_name = settings.name
    for name, forward in dict.fromkeys((site.patched, site.forward) for site in plan.placed):
        layer = _sublayer(model, name)
        function, reads = FORWARDS[forward]
        if not all(hasattr(layer, part) for part in reads):
            raise PaddleportError("--peft", f"{name} ({type(layer).__name__}) lacks the layers its adapter site "
                                            f"reads ({', '.join(reads)})")
        layer.forward = types.MethodType(function, layer)
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
