"""Bottleneck adapters on a transformers model (paddleport's twin of AdapterHub's ``Adapter``; see
:mod:`paddleport.peft.bottleneck` for why AdapterHub itself is not used)."""

from __future__ import annotations

import types
from pathlib import Path

import torch
from torch import nn

from paddleport.errors import PaddleportError
from paddleport.peft.bottleneck import BottleneckPlan, check_bottleneck_fits, read_bottleneck_arrays


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

    def __init__(self, hidden_size: int, bottleneck: int, non_linearity: str):
        super().__init__()
        self.adapter_down = nn.Sequential(nn.Linear(hidden_size, bottleneck), Activation(non_linearity))
        self.adapter_up = nn.Linear(bottleneck, hidden_size)

    def forward(self, x, residual):
        return self.adapter_up(self.adapter_down(x)) + residual


def _adapted_output_forward(self, hidden_states, input_tensor):
    """A BERT-style SelfOutput / Output with its adapter (AdapterHub's ``bottleneck_layer_forward``)."""
    hidden_states = self.dropout(self.dense(hidden_states))
    adapter = self.adapters[self.adapter_name]
    adapter_input = self.LayerNorm(hidden_states + input_tensor) if self.original_ln_before else hidden_states
    return self.LayerNorm(adapter(adapter_input, hidden_states) + input_tensor)


def apply_bottleneck(model: nn.Module, plan: BottleneckPlan) -> nn.Module:
    """Add the planned adapters to ``model`` in place and train only them and the head."""
    settings = plan.settings
    modules = dict(model.named_modules())
    for name in plan.adapted:
        module = modules[name]
        if not all(hasattr(module, part) for part in ("dense", "dropout", "LayerNorm")):
            raise PaddleportError("--peft", f"{name} ({type(module).__name__}) is not a BERT-style output block")
        module.adapters = nn.ModuleDict({settings.name: BottleneckAdapter(
            plan.hidden_size, plan.bottleneck, settings.non_linearity)}).to(module.dense.weight.device)
        module.adapter_name = settings.name
        module.original_ln_before = settings.original_ln_before
        module.forward = types.MethodType(_adapted_output_forward, module)
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
