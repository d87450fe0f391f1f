"""Bottleneck adapters on a transformers model (paddleport's twin of AdapterHub's ``Adapter``; see
:mod:`paddleport.peft.bottleneck` for why AdapterHub itself is not used)."""

from __future__ import annotations

import types
from pathlib import Path

import torch
from torch import nn

from paddleport.errors import PaddleportError
from paddleport.peft.bottleneck import (BottleneckPlan, adapter_site, channel_output_block_forward,
                                        check_bottleneck_fits, held_adapter, output_block_forward,
                                        read_bottleneck_arrays)


class Activation(nn.Module):
    """AdapterHub's ``Activation_Function_Class``: transformers' activation of that name."""

    def __init__(self, name: str):
        super().__init__()
        from transformers.activations import get_activation

        self.f = get_activation(name.lower())

    def forward(self, x):
        return self.f(x)


class BottleneckAdapter(nn.Module):
    """``adapter_up(act(adapter_down(x)))`` plus the adapter's residual (AdapterHub's ``Adapter.forward``)."""

    def __init__(self, hidden_size: int, bottleneck: int, non_linearity: str, original_ln_before: bool):
        super().__init__()
        self.adapter_down = nn.Sequential(nn.Linear(hidden_size, bottleneck), Activation(non_linearity))
        self.adapter_up = nn.Linear(bottleneck, hidden_size)
        self.original_ln_before = original_ln_before

    def forward(self, x, residual):
        return self.adapter_up(self.adapter_down(x)) + residual

    def over_channels(self, x, residual):
        """The adapter on [batch, channels, width] data (SqueezeBERT's): its Linears act on the channels."""
        return self(x.transpose(1, 2), residual.transpose(1, 2)).transpose(1, 2)


class AdapterHolder(nn.Module):
    """Holds ``adapters`` where the model has no module of its own to hold them (AdapterHub's ``BottleneckLayer``
    as DistilBERT's and ALBERT's integrations add it: ``attention_adapters``, ``output_adapters``)."""


# The forwards that replace an adapted module's, by the names the registry's AdapterSite entries give:
# each the transformers 5 module's computation with the adapter site in place of its residual LayerNorm.

def _distilbert_block_forward(self, hidden_states, attention_mask=None, **kwargs):
    """DistilBERT's TransformerBlock: the adapters before ``sa_layer_norm`` and ``output_layer_norm``."""
    attention_output, _ = self.attention(hidden_states, attention_mask=attention_mask, **kwargs)
    attention_output = adapter_site(held_adapter(getattr(self, "attention_adapters", None)), attention_output,
                                    hidden_states, self.sa_layer_norm)
    return adapter_site(held_adapter(getattr(self, "output_adapters", None)), self.ffn(attention_output),
                        attention_output, self.output_layer_norm)


def _albert_attention_forward(self, hidden_states, attention_mask=None, **kwargs):
    """ALBERT's attention; AdapterHub's integration hands its adapter layer the attention's input as the hidden
    states and the projected context as the residual input (``attention_adapters(hidden_states,
    projected_context_layer_dropout, LayerNorm)``), so the adapter reads the input: kept as AdapterHub has it."""
    from transformers.models.albert.modeling_albert import ALL_ATTENTION_FUNCTIONS, eager_attention_forward

    input_shape = hidden_states.shape[:-1]
    hidden_shape = (*input_shape, -1, self.attention_head_size)
    query, key, value = (projection(hidden_states).view(*hidden_shape).transpose(1, 2)
                         for projection in (self.query, self.key, self.value))
    attention = ALL_ATTENTION_FUNCTIONS.get_interface(self.config._attn_implementation, eager_attention_forward)
    context, weights = attention(self, query, key, value, attention_mask,
                                 dropout=self.attention_dropout.p if self.training else 0.0, scaling=self.scaling,
                                 **kwargs)
    projected = self.output_dropout(self.dense(context.reshape(*input_shape, -1).contiguous()))
    return adapter_site(held_adapter(self.attention_adapters), hidden_states, projected, self.LayerNorm), weights


def _albert_layer_forward(self, hidden_states, attention_mask=None, **kwargs):
    """ALBERT's (shared) layer: the feed-forward adapter before ``full_layer_layer_norm``."""
    from transformers.pytorch_utils import apply_chunking_to_forward

    attention_output, _ = self.attention(hidden_states, attention_mask, **kwargs)
    ffn_output = apply_chunking_to_forward(self.ff_chunk, self.chunk_size_feed_forward, self.seq_len_dim,
                                           attention_output)
    return adapter_site(held_adapter(self.output_adapters), ffn_output, attention_output, self.full_layer_layer_norm)


# forward name -> (forward, the attributes it reads from the module it replaces the forward of)
FORWARDS = {
    "output_block": (output_block_forward, ("dense", "dropout", "LayerNorm")),
    "channel_output_block": (channel_output_block_forward, ("conv1d", "dropout", "layernorm")),
    "distilbert_block": (_distilbert_block_forward, ("attention", "sa_layer_norm", "ffn", "output_layer_norm")),
    "albert_attention": (_albert_attention_forward, ("query", "key", "value", "dense", "output_dropout",
                                                     "LayerNorm", "attention_dropout")),
    "albert_layer": (_albert_layer_forward, ("attention", "ff_chunk", "full_layer_layer_norm")),
}


def apply_bottleneck(model: nn.Module, plan: BottleneckPlan) -> nn.Module:
    """Add the planned adapters to ``model`` in place and train only them and the head."""
    settings = plan.settings
    device = next(model.parameters()).device
    for site in plan.placed:
        try:
            holder = model.get_submodule(site.holder)
        except AttributeError:  # a holder the architecture lacks: AdapterHub adds one there
            parent, _, leaf = site.holder.rpartition(".")
            holder = AdapterHolder()
            model.get_submodule(parent).add_module(leaf, holder)
        holder.adapters = nn.ModuleDict({settings.name: BottleneckAdapter(
            plan.hidden_size, plan.bottleneck, settings.non_linearity, settings.original_ln_before)}).to(device)
        holder.adapter_name = settings.name
    for name, forward in dict.fromkeys((site.patched, site.forward) for site in plan.placed):
        module = model.get_submodule(name)
        function, reads = FORWARDS[forward]
        if not all(hasattr(module, part) for part in reads):
            raise PaddleportError("--peft", f"{name} ({type(module).__name__}) lacks the modules its adapter site "
                                            f"reads ({', '.join(reads)})")
        module.forward = types.MethodType(function, module)
    trainable = {param.name for param in plan.trainable}
    names = set()
    for name, param in model.named_parameters():
        param.requires_grad_(name in trainable)
        names.add(name)
    if names != {param.name for param in plan.params}:
        unexpected = sorted(names ^ {param.name for param in plan.params})
        raise PaddleportError(None, f"the adapted model and its adapter plan disagree on {', '.join(unexpected[:4])}")
    return model


def canonical_parameters(model):
    """(Hugging Face name, parameter): the adapted model's names are already the canonical ones."""
    return model.named_parameters()


def save_adapter(model, plan: BottleneckPlan, directory: Path, base_model: str | None) -> Path:
    """AdapterHub's layout in torch layout (``format: pt``)."""
    from paddleport.peft.bottleneck import write_bottleneck_dir

    params = dict(model.named_parameters())
    arrays = {key: params[param.name].detach().float().cpu().numpy() for key, param in plan.saved.items()}
    return write_bottleneck_dir(directory, plan, arrays, "pt", base_model, model.config.num_labels)


def load_adapter_weights(model, plan: BottleneckPlan, directory: Path) -> None:
    """An adapter directory (either layout; Paddle's transposed back by the table) into an adapted model."""
    arrays, layout = read_bottleneck_arrays(directory)
    check_bottleneck_fits(plan, {key: value.shape for key, value in arrays.items()}, layout, Path(directory))
    params = dict(model.named_parameters())
    saved = plan.saved
    with torch.no_grad():
        for key, value in arrays.items():
            param = saved[key]
            value = value if layout == "hf" else param.transform.to_hf(value)
            params[param.name].copy_(torch.from_numpy(value.copy()))


apply = apply_bottleneck  # the name paddleport.peft.methods' framework modules share


def inner_model(model):
    """The model itself: the adapters live inside its own modules (dropout sites keep their names)."""
    return model
