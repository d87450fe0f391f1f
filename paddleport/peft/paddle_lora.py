"""paddleport's LoRA for its Paddle models: a ``LoraLinear`` wrapping ``paddleport.models.layers.Linear`` and a
``LoraConv1D`` wrapping SqueezeBERT's grouped pointwise convolution.

The sub-layer names mirror peft's ``lora.Linear`` and ``lora.Conv1d`` (``base_layer``, ``lora_A.default``,
``lora_B.default``, ``lora_dropout.default``), so the shared dropout masks of the two frameworks (keyed by module
name) agree and parameter names reduce to the same canonical names (:func:`paddleport.peft.lora.canonical_name`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import paddle
from paddle import nn

from paddleport.core.tensor_io import PADDLE_FORMAT_TAG
from paddleport.errors import PaddleportError
from paddleport.models.layers import Dropout, Linear, add_channel_bias
from paddleport.models.modeling_squeezebert import PointwiseConv1D
from paddleport.models.modeling_utils import numpy_to_paddle, tensor_to_numpy
from paddleport.peft.lora import (ADAPTER_CONFIG, ADAPTER_NAME, ADAPTER_WEIGHTS, LoraPlan, block_diagonal,
                                  canonical_name, check_adapter_fits, merged_conv_weight)


class LoraLinear(nn.Layer):
    """``base_layer(x) + lora_B(lora_A(dropout(x))) * scaling``, as peft's ``lora.Linear`` computes it."""

    def __init__(self, base_layer: nn.Linear, r: int, lora_alpha: float, lora_dropout: float, scaling: float):
        super().__init__()
        in_features, out_features = base_layer.weight.shape  # Paddle layout [in, out]
        self.base_layer = base_layer
        self.lora_A = nn.LayerDict({ADAPTER_NAME: Linear(in_features, r, bias_attr=False)})
        self.lora_B = nn.LayerDict({ADAPTER_NAME: Linear(r, out_features, bias_attr=False)})
        self.lora_dropout = nn.LayerDict({ADAPTER_NAME: Dropout(lora_dropout)})
        self.scaling = scaling
        self.merged = False
        self.reset_lora_parameters()

    def reset_lora_parameters(self) -> None:
        _reset_lora_parameters(self, fan_in=self.lora_A[ADAPTER_NAME].weight.shape[0])  # A [in, r]

    def forward(self, x):
        result = self.base_layer(x)
        if self.merged:
            return result
        update = self.lora_B[ADAPTER_NAME](self.lora_A[ADAPTER_NAME](self.lora_dropout[ADAPTER_NAME](x)))
        return result + update * self.scaling

    def delta_weight(self):
        """The update in the base weight's Paddle layout [in, out]: (B·A)ᵀ·scaling = A_p·B_p·scaling."""
        return paddle.matmul(self.lora_A[ADAPTER_NAME].weight, self.lora_B[ADAPTER_NAME].weight) * self.scaling

    def merge(self) -> None:
        with paddle.no_grad():
            weight = self.base_layer.weight
            weight.set_value(weight + self.delta_weight().astype(weight.dtype))
        self.merged = True


class LoraConv1D(nn.Layer):
    """peft's ``lora.Conv1d`` on paddleport's grouped 1x1 convolution (SqueezeBERT's ``PointwiseConv1D``):
    ``base_layer(x) + lora_B(lora_A(dropout(x))) * scaling`` over [batch, channels, width], with A a dense
    ``Conv1D(in, r, 1)`` and B a grouped ``Conv1D(r, out, 1, groups)`` without biases, as peft builds them (B's
    output group g reads A's channels g·r/groups …). ``bias`` and ``groups`` are the base layer's; SqueezeBERT's
    fused conv kernels take only a plain PointwiseConv1D, so its blocks run this layer's forward.
    """

    def __init__(self, base_layer: PointwiseConv1D, r: int, lora_dropout: float, scaling: float):
        super().__init__()
        out_channels, in_per_group, _ = base_layer.weight.shape  # [out, in/groups, 1] as in torch
        groups = base_layer.groups
        self.base_layer = base_layer
        self.lora_A = nn.LayerDict({ADAPTER_NAME: PointwiseConv1D(in_per_group * groups, r, 1, bias_attr=False)})
        self.lora_B = nn.LayerDict({ADAPTER_NAME: PointwiseConv1D(r, out_channels, groups, bias_attr=False)})
        self.lora_dropout = nn.LayerDict({ADAPTER_NAME: Dropout(lora_dropout)})
        self.scaling = scaling
        self.merged = False
        _reset_lora_parameters(self, fan_in=in_per_group * groups)  # A [r, in, 1]

    @property
    def bias(self):
        return self.base_layer.bias

    @property
    def groups(self) -> int:
        return self.base_layer.groups

    def without_bias(self, x):
        update = self.lora_B[ADAPTER_NAME](self.lora_A[ADAPTER_NAME](self.lora_dropout[ADAPTER_NAME](x)))
        return self.base_layer.without_bias(x) + update * self.scaling

    def forward(self, x):
        return add_channel_bias(self.without_bias(x), self.bias)

    def merged_layer(self) -> PointwiseConv1D:
        """A dense (groups 1) ``PointwiseConv1D`` computing the base convolution plus the update: the update reads
        every input channel (:func:`paddleport.peft.lora.grouped_conv_delta`), so it cannot join a grouped weight."""
        weight = merged_conv_weight(tensor_to_numpy(self.base_layer.weight), self.groups,
                                    tensor_to_numpy(self.lora_A[ADAPTER_NAME].weight),
                                    tensor_to_numpy(self.lora_B[ADAPTER_NAME].weight), self.scaling)
        return _dense_conv(weight, self.base_layer.bias)


def _reset_lora_parameters(layer: nn.Layer, fan_in: int) -> None:
    """peft's default: A kaiming-uniform (a=√5: U(±1/√fan_in)), B zero, so the adapted model starts as the base."""
    weight_a = layer.lora_A[ADAPTER_NAME].weight
    bound = 1.0 / math.sqrt(fan_in)
    weight_a.set_value(paddle.uniform(weight_a.shape, dtype=weight_a.dtype, min=-bound, max=bound))
    weight_b = layer.lora_B[ADAPTER_NAME].weight
    weight_b.set_value(paddle.zeros_like(weight_b))


def _dense_conv(weight: np.ndarray, bias) -> PointwiseConv1D:
    """A groups-1 ``PointwiseConv1D`` holding ``weight`` [out, in, 1] and a copy of ``bias``."""
    out_channels, in_channels, _ = weight.shape
    layer = PointwiseConv1D(in_channels, out_channels, 1)
    layer.weight.set_value(numpy_to_paddle(np.ascontiguousarray(weight)).astype(layer.weight.dtype))
    layer.bias.set_value(bias.detach().astype(layer.bias.dtype))
    return layer


def _lora_layer(base: nn.Layer, module: str, settings) -> nn.Layer:
    """The LoRA wrapper of ``base``: a Conv1d's (checked first: a Conv1D is no Linear) or a Linear's."""
    if isinstance(base, PointwiseConv1D):
        return LoraConv1D(base, settings.r, settings.lora_dropout, settings.scaling)
    if isinstance(base, nn.Linear):
        return LoraLinear(base, settings.r, settings.lora_alpha, settings.lora_dropout, settings.scaling)
    raise PaddleportError("--lora-target-modules", f"{module} is a {type(base).__name__}, not a Linear or a Conv1d")


def _parent_and_leaf(model: nn.Layer, name: str) -> tuple[nn.Layer, str]:
    parent_name, _, leaf = name.rpartition(".")
    parent = model
    for part in parent_name.split(".") if parent_name else []:
        parent = getattr(parent, part)
    return parent, leaf


def apply(model: nn.Layer, plan: LoraPlan) -> nn.Layer:
    """Wrap the planned modules of ``model`` in place and set which parameters train (as peft marks them)."""
    for module in plan.wrapped:
        parent, leaf = _parent_and_leaf(model, module)
        setattr(parent, leaf, _lora_layer(getattr(parent, leaf), module, plan.settings))
    return train_planned_parameters(model, plan)


def train_planned_parameters(model: nn.Layer, plan) -> nn.Layer:
    """Only the plan's trainable parameters train; the adapted model must hold exactly the plan's parameters."""
    trainable = {param.paddle_name for param in plan.trainable}
    names = set()
    for name, param in model.named_parameters():
        param.stop_gradient = name not in trainable
        names.add(name)
    if names != {param.paddle_name for param in plan.params}:
        unexpected = sorted(names ^ {param.paddle_name for param in plan.params})
        raise PaddleportError(None, f"the adapted model and its adapter plan disagree on {', '.join(unexpected[:4])}")
    return model


def inner_model(model: nn.Layer) -> nn.Layer:
    """The model whose sub-layer names are the Hugging Face ones (LoRA adapts it in place)."""
    return model


def merge_lora(model: nn.Layer, plan: LoraPlan) -> nn.Layer:
    """Fold every LoRA update into its base layer and put a plain layer back (a model like the base).

    A Linear keeps its shape. A grouped Conv1d becomes dense (groups 1; peft refuses this merge): every
    convolution of its kind (``plan.grouped_merge``, wrapped or not) is made dense and the config's group count
    of that kind set to 1, so that the saved model loads as the same SqueezeBERT architecture.
    """
    wrapped = [name for name, layer in model.named_sublayers() if isinstance(layer, (LoraLinear, LoraConv1D))]
    for name in wrapped:
        parent, leaf = _parent_and_leaf(model, name)
        layer = getattr(parent, leaf)
        if isinstance(layer, LoraConv1D):
            setattr(parent, leaf, layer.merged_layer())
        else:
            layer.merge()
            setattr(parent, leaf, layer.base_layer)
    for groups_key, modules in plan.grouped_merge.items():
        for module in modules:
            parent, leaf = _parent_and_leaf(model, module)
            conv = getattr(parent, leaf)
            if conv.groups > 1:
                setattr(parent, leaf, _dense_conv(block_diagonal(tensor_to_numpy(conv.weight), conv.groups),
                                                  conv.bias))
        setattr(model.config, groups_key, 1)
    for param in model.parameters():
        param.stop_gradient = False
    return model


def save_adapter(model: nn.Layer, plan: LoraPlan, directory: Path, base_model: str | None) -> Path:
    """``adapter_config.json`` + ``adapter_model.safetensors`` (peft's keys, Paddle layout, ``format: paddle``)."""
    from safetensors.numpy import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = model.state_dict()
    arrays = {key: np.ascontiguousarray(tensor_to_numpy(state[param.paddle_name]))
              for key, param in plan.saved.items()}
    save_file(arrays, str(directory / ADAPTER_WEIGHTS), metadata={"format": PADDLE_FORMAT_TAG})
    config = plan.settings.to_adapter_config(base_model)
    (directory / ADAPTER_CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return directory


def load_adapter_weights(model: nn.Layer, plan: LoraPlan, directory: Path) -> None:
    """An adapter file (either layout; the torch layout is transposed by the table) into an adapted model."""
    from paddleport.core.tensor_io import read_safetensors_checked

    path = Path(directory) / ADAPTER_WEIGHTS
    if not path.is_file():
        raise PaddleportError(directory, f"has no {ADAPTER_WEIGHTS}")
    arrays, metadata = read_safetensors_checked(path)
    layout = "paddle" if metadata.get("format") == PADDLE_FORMAT_TAG else "hf"
    check_adapter_fits(plan, {key: value.shape for key, value in arrays.items()}, layout, path)
    by_name = {param.name: param for param in plan.params}
    state = model.state_dict()
    for key, value in arrays.items():
        name = canonical_name(key)
        if name is None:
            continue
        param = by_name[name]
        value = value if layout == "paddle" else param.transform.to_paddle(value)
        target = state[param.paddle_name]
        target.set_value(numpy_to_paddle(np.ascontiguousarray(value)).astype(target.dtype))
