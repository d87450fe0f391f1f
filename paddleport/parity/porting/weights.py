"""Which torch tensor is which Paddle tensor: the rule table of ``paddleport diff`` and the weight copy.

Rules are the converter's :class:`paddleport.convert.table.Rule` (torch-side pattern, Paddle-side pattern,
typed transform). A torch name is renamed by the first rule whose torch pattern matches it (the whole name, or
a module prefix: a rule naming a module renames everything under it); a Paddle name is renamed back by the
first rule whose Paddle pattern matches. Names no rule matches are the same on both sides.

The transform of a parameter is the matching rule's when the rule names the parameter itself, otherwise it
follows from the type of the torch module that owns the tensor: an ``nn.Linear`` weight is transposed (torch
stores [out, in], Paddle [in, out]); everything else is copied as is. A tensor's shape never decides.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from paddleport.convert.table import Rule, rename
from paddleport.convert.transforms import LINEAR_WEIGHT, Transform
from paddleport.errors import PaddleportError

SAME = Transform("same")
# torch BatchNorm buffer -> Paddle BatchNorm parameter (Paddle keeps the running statistics as parameters
# that are never trained); ``num_batches_tracked`` has no Paddle counterpart.
_BATCHNORM_LEAVES = {"running_mean": "_mean", "running_var": "_variance"}
_BATCHNORM_STEP_COUNTER = "num_batches_tracked"


class NameMap:
    """Torch-side names <-> Paddle-side names through a rule table (first matching rule wins)."""

    def __init__(self, rules: Sequence[Rule] | None = None):
        self.rules = tuple(rules or ())

    def to_paddle(self, torch_name: str) -> str:
        return self._rename(torch_name, to_paddle=True)[0]

    def to_torch(self, paddle_name: str) -> str:
        return self._rename(paddle_name, to_paddle=False)[0]

    def rule_transform(self, torch_name: str) -> Transform | None:
        """The transform a rule gives this exact tensor name, if a rule names it whole."""
        for rule in self.rules:
            renamed = rename(torch_name, rule.hf, rule.paddle)
            if renamed is not None:
                return rule.transform if renamed[1] else None
        return None

    def _rename(self, name: str, to_paddle: bool) -> tuple[str, bool]:
        for rule in self.rules:
            source, target = (rule.hf, rule.paddle) if to_paddle else (rule.paddle, rule.hf)
            renamed = rename(name, source, target)
            if renamed is not None:
                return renamed
        return name, False


@dataclass
class TensorPair:
    """One torch parameter or buffer and the Paddle tensor it is copied into."""

    torch_name: str
    paddle_name: str
    transform: Transform
    torch_shape: tuple[int, ...]
    paddle_shape: tuple[int, ...]
    trainable: bool  # a torch parameter (gradients and optimizer state are compared / converted)

    def as_dict(self) -> dict:
        return {"torch": self.torch_name, "paddle": self.paddle_name, "transform": self.transform.name,
                "torch_shape": list(self.torch_shape), "paddle_shape": list(self.paddle_shape)}


@dataclass
class WeightMap:
    pairs: list[TensorPair]
    unmapped_torch: list[str]  # torch tensors with no Paddle counterpart
    unmapped_paddle: list[str]  # Paddle tensors no torch tensor maps to
    notes: list[str]

    def as_dict(self) -> dict:
        return {"pairs": [pair.as_dict() for pair in self.pairs], "unmapped_torch": self.unmapped_torch,
                "unmapped_paddle": self.unmapped_paddle, "notes": self.notes}


def torch_tensors(module) -> dict[str, tuple[object, bool]]:
    """Every parameter and buffer of ``module`` by name, with whether it is a parameter."""
    tensors = {name: (buffer, False) for name, buffer in module.named_buffers()}
    tensors.update({name: (parameter, True) for name, parameter in module.named_parameters()})
    return tensors


def paddle_tensors(layer) -> dict[str, object]:
    tensors = {name: buffer for name, buffer in layer.named_buffers()}
    tensors.update({name: parameter for name, parameter in layer.named_parameters()})
    return tensors


def _owner_and_leaf(module, name: str):
    path, _, leaf = name.rpartition(".")
    return (module.get_submodule(path) if path else module), path, leaf


def map_weights(torch_module, paddle_layer, names: NameMap) -> WeightMap:
    """Pair every torch tensor with its Paddle tensor; a shape that disagrees after the transform is an error."""
    from torch import nn

    paddle_by_name = paddle_tensors(paddle_layer)
    pairs, unmapped_torch, notes = [], [], []
    for torch_name, (tensor, trainable) in torch_tensors(torch_module).items():
        owner, path, leaf = _owner_and_leaf(torch_module, torch_name)
        if isinstance(owner, nn.modules.batchnorm._BatchNorm):
            if leaf == _BATCHNORM_STEP_COUNTER:
                notes.append(f"{torch_name}: torch's BatchNorm step counter, no Paddle counterpart (not compared)")
                continue
            leaf = _BATCHNORM_LEAVES.get(leaf, leaf)
        canonical = f"{path}.{leaf}" if path else leaf
        paddle_name = names.to_paddle(canonical)
        if paddle_name not in paddle_by_name:
            unmapped_torch.append(torch_name)
            continue
        transform = names.rule_transform(canonical)
        if transform is None:
            transform = LINEAR_WEIGHT if isinstance(owner, nn.Linear) and leaf == "weight" else SAME
        torch_shape = tuple(tensor.shape)
        paddle_shape = tuple(paddle_by_name[paddle_name].shape)
        if transform.paddle_shape(torch_shape) != paddle_shape:
            raise PaddleportError("rules", f"torch {torch_name} {list(torch_shape)} -> Paddle {paddle_name} "
                                  f"{list(paddle_shape)}: shapes disagree after the {transform.name} transform")
        pairs.append(TensorPair(torch_name, paddle_name, transform, torch_shape, paddle_shape, trainable))
    mapped = {pair.paddle_name for pair in pairs}
    unmapped_paddle = [name for name in paddle_by_name if name not in mapped]
    return WeightMap(pairs, unmapped_torch, unmapped_paddle, notes)


def to_numpy(tensor) -> np.ndarray:
    """A copy of a torch or Paddle tensor as numpy (bfloat16 as float32: numpy has no bfloat16); a copy, because
    torch shares memory with the array and an in-place update later (running statistics) would change it."""
    if hasattr(tensor, "detach"):  # torch
        tensor = tensor.detach().cpu()
        if str(tensor.dtype) == "torch.bfloat16":
            tensor = tensor.float()
        return tensor.numpy().copy()
    if str(tensor.dtype) in ("paddle.bfloat16", "bfloat16"):
        tensor = tensor.astype("float32")
    return np.array(tensor.numpy(), copy=True)


def copy_weights(torch_module, paddle_layer, weights: WeightMap) -> None:
    """Copy every paired torch tensor into its Paddle tensor (in the Paddle tensor's dtype)."""
    import paddle

    torch_by_name = torch_tensors(torch_module)
    paddle_by_name = paddle_tensors(paddle_layer)
    with paddle.no_grad():
        for pair in weights.pairs:
            target = paddle_by_name[pair.paddle_name]
            value = paddle.to_tensor(pair.transform.to_paddle(to_numpy(torch_by_name[pair.torch_name][0])))
            target.set_value(value.astype(target.dtype))


def parameter_pairs(torch_module, paddle_layer, weights: WeightMap) -> list[tuple[str, object, object, Transform]]:
    """(torch name, torch parameter, Paddle parameter, transform) of every trainable pair."""
    torch_by_name = torch_tensors(torch_module)
    paddle_by_name = paddle_tensors(paddle_layer)
    return [(pair.torch_name, torch_by_name[pair.torch_name][0], paddle_by_name[pair.paddle_name], pair.transform)
            for pair in weights.pairs if pair.trainable]


def load_rules(values: Iterable) -> list[Rule]:
    """Rules given as :class:`Rule` objects or ``(torch_pattern, paddle_pattern[, transform])`` tuples."""
    rules = []
    for value in values:
        if isinstance(value, Rule):
            rules.append(value)
        elif isinstance(value, (tuple, list)) and len(value) in (2, 3) and all(isinstance(v, str) for v in value[:2]):
            rules.append(Rule(value[0], value[1], value[2] if len(value) == 3 else None))
        else:
            raise PaddleportError("rules", f"a rule is a Rule or (torch pattern, paddle pattern[, transform]), "
                                  f"got {value!r}")
    return rules
