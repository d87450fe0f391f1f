"""Forward hooks that record what every matched module receives and returns, in torch and in Paddle."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from paddleport.parity.porting.report import dtype_name
from paddleport.parity.porting.weights import to_numpy


def named_tensors(value, is_tensor, path: str = "") -> list[tuple[str, object]]:
    """The tensors in a module's output, in order, each with where it sits: ``""`` for a bare tensor, ``[1]`` in
    a tuple, ``logits`` / ``hidden_states[2]`` in an output object (dicts, transformers' ModelOutput, and
    dataclass outputs such as paddleport's, their None fields left out)."""
    if is_tensor(value):
        return [(path, value)]
    if isinstance(value, dict):
        items = value.items()
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        items = ((field.name, getattr(value, field.name)) for field in dataclasses.fields(value))
    elif isinstance(value, (tuple, list)):
        return [named for index, item in enumerate(value)
                for named in named_tensors(item, is_tensor, f"{path}[{index}]")]
    else:
        return []
    return [named for key, item in items
            for named in named_tensors(item, is_tensor, f"{path}.{key}" if path else str(key))]


def flatten(value, is_tensor) -> list:
    """The tensors in a module's output, in order (see :func:`named_tensors`)."""
    return [tensor for _, tensor in named_tensors(value, is_tensor)]


def is_torch_tensor(value) -> bool:
    import torch

    return isinstance(value, torch.Tensor)


def is_paddle_tensor(value) -> bool:
    import paddle

    return isinstance(value, paddle.Tensor)


@dataclass
class RecordedCall:
    name: str  # torch-side module name
    call: int
    outputs: list[np.ndarray] = field(default_factory=list)
    dtypes: list[str] = field(default_factory=list)
    output_names: list[str] = field(default_factory=list)  # where each output sits (``named_tensors``)
    buffers: dict[str, np.ndarray] = field(default_factory=dict)  # torch-side tensor name -> value after the call
    buffers_before: dict[str, np.ndarray] = field(default_factory=dict)
    inputs: tuple | None = None  # (args, kwargs) as torch tensors (single-step mode)
    rows_per_channel: int = 0  # BatchNorm: elements per channel of the input

    def set_outputs(self, output, is_tensor) -> None:
        named = named_tensors(output, is_tensor)
        self.output_names = [name for name, _ in named]
        self.outputs = [to_numpy(tensor) for _, tensor in named]
        self.dtypes = [dtype_name(tensor) for _, tensor in named]

    def named_outputs(self) -> dict[str, np.ndarray]:
        return dict(zip(self.output_names, self.outputs))


def map_torch_tensors(value, function):
    """``value`` with every torch tensor in it (nested tuples, lists, dicts) replaced by ``function(tensor)``."""
    if is_torch_tensor(value):
        return function(value)
    if isinstance(value, tuple):
        return tuple(map_torch_tensors(item, function) for item in value)
    if isinstance(value, list):
        return [map_torch_tensors(item, function) for item in value]
    if isinstance(value, dict):
        return {key: map_torch_tensors(item, function) for key, item in value.items()}
    return value


def _clone(value):
    """Tensors in ``value`` detached and copied (an in-place op later in the forward must not change them)."""
    return map_torch_tensors(value, lambda tensor: tensor.detach().clone())


class TorchRecorder:
    """Hooks on the named torch modules; ``calls`` in the order the calls finished."""

    def __init__(self, modules: dict[str, object], record_inputs: bool):
        self.calls: list[RecordedCall] = []
        self._open: dict[str, list[RecordedCall]] = {}
        self._counts: dict[str, int] = {}
        self._handles = []
        for name, module in modules.items():
            self._handles.append(module.register_forward_pre_hook(self._pre(name, record_inputs), with_kwargs=True))
            self._handles.append(module.register_forward_hook(self._post(name), with_kwargs=True))

    def _pre(self, name: str, record_inputs: bool):
        def hook(module, args, kwargs):
            call = RecordedCall(name, self._counts.get(name, 0))
            self._counts[name] = call.call + 1
            call.buffers_before = {key: to_numpy(value) for key, value in module.named_buffers(recurse=False)}
            if record_inputs:
                call.inputs = (_clone(args), _clone(kwargs))
            if args and is_torch_tensor(args[0]) and args[0].dim() > 1:
                call.rows_per_channel = args[0].numel() // args[0].shape[1]
            self._open.setdefault(name, []).append(call)
        return hook

    def _post(self, name: str):
        def hook(module, args, kwargs, output):
            call = self._open[name].pop()
            call.set_outputs(output, is_torch_tensor)
            call.buffers = {key: to_numpy(value) for key, value in module.named_buffers(recurse=False)}
            self.calls.append(call)
        return hook

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


class PaddleRecorder:
    """Hooks on the matched Paddle layers, recorded under their torch-side names."""

    def __init__(self, layers: dict[str, object], buffers: dict[str, dict[str, object]]):
        """``layers``: torch-side name -> Paddle layer; ``buffers``: torch-side module name -> {torch buffer
        leaf name: the Paddle tensor it maps to}."""
        self.calls: dict[tuple[str, int], RecordedCall] = {}
        self._counts: dict[str, int] = {}
        self._buffers = buffers
        self._handles = [layer.register_forward_post_hook(self._post(name)) for name, layer in layers.items()]

    def _post(self, name: str):
        def hook(layer, inputs, output):
            call = RecordedCall(name, self._counts.get(name, 0))
            self._counts[name] = call.call + 1
            call.set_outputs(output, is_paddle_tensor)
            call.buffers = read_buffers(self._buffers.get(name, {}))
            self.calls[(name, call.call)] = call
        return hook

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


def read_buffers(tensors: dict[str, object]) -> dict[str, np.ndarray]:
    return {leaf: to_numpy(tensor) for leaf, tensor in tensors.items()}
