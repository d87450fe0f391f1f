"""``diff``: where a hand-written Paddle port first computes something else than its torch original.

Both models are hooked at every named sub-module; torch modules and Paddle layers are paired by name through the
rule table (``weights.NameMap``), never by definition order. In full mode both models run whole and every
matched module's outputs are compared in the order torch finished them; in single-step mode every matched Paddle
layer is called on its own with the inputs torch's module received, so errors do not pile up and the wrong layer
stands out. A module's own buffers (BatchNorm running statistics) are compared after the call too.

Known framework difference handled here: in training mode Paddle's BatchNorm folds the *biased* batch variance
into its running variance, torch the unbiased one; Paddle's running variance is compared against what torch's
would be under Paddle's convention (noted in the report).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from paddleport.convert.table import Rule
from paddleport.dropout_masks import DropoutMaskStream
from paddleport.errors import PaddleportError
from paddleport.parity.porting import capture
from paddleport.parity.porting.dropout import shared_dropout
from paddleport.parity.porting.report import (GRADIENT_TOLERANCES, DiffReport, ModuleDiff, TensorStats,
                                              compare_arrays, dtype_name, tolerance_for)
from paddleport.parity.porting.weights import (NameMap, WeightMap, copy_weights as copy_all_weights, map_weights,
                                               paddle_tensors, parameter_pairs, to_numpy)

Inputs = dict[str, np.ndarray] | tuple
# (torch-side module name, output name as ``capture.named_tensors`` gives it, the batch) -> a boolean mask over the
# output's leading axes (the positions compared), or None for every position.
Positions = Callable[[str, str, Inputs], np.ndarray | None]
LossFns = tuple[Callable, Callable]  # (torch loss of the torch output, Paddle loss of the Paddle output)
BATCHNORM_VARIANCE_NOTE = ("BatchNorm running variance: Paddle folds in the biased batch variance, torch the "
                           "unbiased; Paddle's is compared against torch's converted to Paddle's convention")


def diff(torch_module, paddle_layer, inputs: Inputs | Sequence[Inputs], rules: Sequence[Rule] | None = None,
         copy_weights: bool = True, grad: bool = True, steps: int = 0, *, single_step: bool = False,
         train: bool = False, tolerances: dict[str, tuple[float, float]] | None = None,
         grad_tolerances: dict[str, tuple[float, float]] | None = None, loss_fn: LossFns | None = None,
         optimizer=None, scheduler=None, max_grad_norm: float | None = None, loss_tolerance: float = 1e-5,
         seed: int = 0, positions: Positions | None = None) -> DiffReport:
    """Compare ``torch_module`` (the reference) and ``paddle_layer`` (the port) on ``inputs``.

    ``inputs``: a dict of numpy arrays (keyword arguments of both forwards), a tuple (positional), or a list of
    either (batches: the forward and gradient checks use the first, training cycles through them).
    ``rules``: :class:`paddleport.convert.table.Rule` (torch pattern, Paddle pattern, transform) or tuples.
    ``copy_weights``: copy torch's parameters and buffers into the Paddle layer first (through the rules).
    ``grad``: compare every mapped parameter's gradient of ``loss_fn`` (default: the first floating output
    itself when it is a scalar, else its sum weighted by a fixed random tensor).
    ``steps``: also run that many optimizer steps in both, ``optimizer`` / ``scheduler`` being the torch ones
    (mapped to Paddle counterparts, ``training.paddle_optimizer_like``), with global-norm clipping at
    ``max_grad_norm``; the loss of every step must agree within ``loss_tolerance``.
    ``train``: compare forward / gradients in training mode (dropout on, with shared masks; BatchNorm batch stats).
    ``tolerances`` / ``grad_tolerances``: {fnmatch pattern of torch names: (rtol, atol)} over the per-dtype
    defaults (outputs: ``torch.testing.assert_close``'s, per element; gradients: ``GRADIENT_TOLERANCES``, rtol
    times the tensor's largest entry).
    ``positions``: which positions of an output are compared, by its meaning (``token_positions`` builds one
    for outputs that are per token: compared where the attention mask keeps a token); all when None.
    Both models are changed: weights copied, and trained when ``steps`` > 0.
    """
    from paddleport.parity.porting.weights import load_rules

    batches = list(inputs) if isinstance(inputs, list) else [inputs]
    if not batches:
        raise PaddleportError("inputs", "no inputs")
    for model, side in ((torch_module, "torch"), (paddle_layer, "Paddle")):
        _check_inputs_fit(model, side, batches[0])
    pairing = ModelPair(torch_module, paddle_layer, load_rules(rules or ()))
    weights = pairing.weights
    if copy_weights:
        copy_all_weights(torch_module, paddle_layer, weights)
    streams = (DropoutMaskStream(seed), DropoutMaskStream(seed))
    with shared_dropout(pairing.torch_modules, pairing.paddle_layers, streams) as dropout_notes:
        notes = weights.notes + dropout_notes
        _set_mode(torch_module, paddle_layer, train)
        compare = _single_step if single_step else _full_forward
        modules = compare(torch_module, paddle_layer, batches[0], pairing, streams, tolerances, train, notes,
                          positions)
        gradient_stats = None
        if grad:
            gradient_stats = _gradients(torch_module, paddle_layer, batches[0], weights, streams, loss_fn,
                                        grad_tolerances)
        training = None
        if steps > 0:
            from paddleport.parity.porting.training import train_both

            training = train_both(torch_module, paddle_layer, batches, weights, streams, steps=steps,
                                  optimizer=optimizer, scheduler=scheduler, max_grad_norm=max_grad_norm,
                                  loss_fns=loss_fn or default_loss_fns(), loss_tolerance=loss_tolerance,
                                  tolerances=tolerances)
    return DiffReport(
        mode="single-step" if single_step else "full", train_mode=train, weights=weights.as_dict(), modules=modules,
        unmatched_torch=pairing.unmatched_torch, unmatched_paddle=pairing.unmatched_paddle, tree=pairing.tree,
        gradients=gradient_stats, training=training, notes=sorted(set(notes), key=notes.index))


class ModelPair:
    """Both models, their tensors paired through the rules (``weights``), their modules matched by torch-side
    name, and what either side has that the other lacks."""

    def __init__(self, torch_module, paddle_layer, rules: Sequence[Rule] = ()):
        self.torch_module, self.paddle_layer = torch_module, paddle_layer
        names = NameMap(rules)
        self.weights = weights = map_weights(torch_module, paddle_layer, names)
        torch_modules = dict(torch_module.named_modules())
        paddle_layers = dict(paddle_layer.named_sublayers(include_self=True))
        self.paddle_names = {name: names.to_paddle(name) for name in torch_modules
                             if names.to_paddle(name) in paddle_layers}
        self.torch_modules = {name: torch_modules[name] for name in self.paddle_names}
        self.paddle_layers = {name: paddle_layers[paddle] for name, paddle in self.paddle_names.items()}
        self.unmatched_torch = [name for name in torch_modules if name not in self.paddle_names]
        matched = set(self.paddle_names.values())
        self.unmatched_paddle = [name for name in paddle_layers if name not in matched]
        self.tree = [(name, type(module).__name__, name.count(".") + 1 if name else 0)
                     for name, module in torch_modules.items()]
        # torch module name -> {torch buffer leaf: the Paddle tensor it was mapped to}
        paddle_by_name = paddle_tensors(paddle_layer)
        self.buffers: dict[str, dict[str, object]] = {}
        for pair in weights.pairs:
            if pair.trainable:
                continue
            path, _, leaf = pair.torch_name.rpartition(".")
            if path in self.paddle_names:
                self.buffers.setdefault(path, {})[leaf] = paddle_by_name[pair.paddle_name]


def _check_inputs_fit(model, side: str, batch: Inputs) -> None:
    """The inputs bind to the model's forward (names and count), else a one-line error before anything runs."""
    import inspect

    args, kwargs = (((), batch) if isinstance(batch, dict) else (tuple(batch), {}))
    signature = inspect.signature(model.forward)
    try:
        signature.bind(*args, **kwargs)
    except TypeError as error:
        given = ", ".join(kwargs) if kwargs else f"{len(args)} positional"
        raise PaddleportError("inputs", f"{side} forward{signature} does not take the inputs ({given}): "
                              f"{error}") from None


def _set_mode(torch_module, paddle_layer, train: bool) -> None:
    torch_module.train(train)
    paddle_layer.train() if train else paddle_layer.eval()


def _split(batch: Inputs, convert) -> tuple[tuple, dict]:
    """(args, kwargs) with every numpy array converted (a copy: the numpy input stays untouched); other values
    (flags such as ``output_hidden_states=True``) passed as they are."""
    convert_array = lambda value: convert(np.array(value)) if isinstance(value, np.ndarray) else value  # noqa: E731
    if isinstance(batch, dict):
        return (), {key: convert_array(value) for key, value in batch.items()}
    return tuple(convert_array(value) for value in batch), {}


def torch_inputs(batch: Inputs, module=None) -> tuple[tuple, dict]:
    """The batch as torch tensors, on ``module``'s device."""
    import torch

    device = next((parameter.device for parameter in module.parameters()), None) if module is not None else None
    return _split(batch, lambda array: torch.from_numpy(array).to(device) if device else torch.from_numpy(array))


def paddle_inputs(batch: Inputs) -> tuple[tuple, dict]:
    """The batch as Paddle tensors (on Paddle's current device)."""
    import paddle

    return _split(batch, paddle.to_tensor)


def _watched(modules: dict[str, object], only: Sequence[str] | None) -> dict[str, object]:
    return modules if only is None else {name: module for name, module in modules.items() if name in only}


def record_torch(pairing: ModelPair, batch: Inputs, stream: DropoutMaskStream | None = None,
                 record_inputs: bool = False, only: Sequence[str] | None = None) -> list[capture.RecordedCall]:
    """torch's forward on ``batch`` (no autograd), every matched module's calls (or those named in ``only``)
    recorded in finishing order."""
    import torch

    recorder = capture.TorchRecorder(_watched(pairing.torch_modules, only), record_inputs=record_inputs)
    try:
        args, kwargs = torch_inputs(batch, pairing.torch_module)
        if stream is not None:
            stream.next_forward()
        with torch.no_grad():
            pairing.torch_module(*args, **kwargs)
    finally:
        recorder.remove()
    return recorder.calls


def record_paddle(pairing: ModelPair, batch: Inputs, stream: DropoutMaskStream | None = None,
                  only: Sequence[str] | None = None) -> dict[tuple[str, int], capture.RecordedCall]:
    """Paddle's forward on ``batch`` (no autograd), the matched layers' calls by (torch-side name, call index)."""
    import paddle

    recorder = capture.PaddleRecorder(_watched(pairing.paddle_layers, only), pairing.buffers)
    try:
        args, kwargs = paddle_inputs(batch)
        if stream is not None:
            stream.next_forward()
        with paddle.no_grad():
            pairing.paddle_layer(*args, **kwargs)
    finally:
        recorder.remove()
    return recorder.calls


def _full_forward(torch_module, paddle_layer, batch, pairing, streams, tolerances, train, notes,
                  positions) -> list[ModuleDiff]:
    torch_calls = record_torch(pairing, batch, streams[0])
    paddle_calls = record_paddle(pairing, batch, streams[1])
    return [_compare_call(call, paddle_calls.get((call.name, call.call)), pairing, tolerances, train, notes,
                          _keep_of(positions, call.name, batch)) for call in torch_calls]


def _keep_of(positions: Positions | None, module: str, batch: Inputs) -> Callable[[str], np.ndarray | None]:
    """output name -> the positions of it that are compared."""
    return lambda output: None if positions is None else positions(module, output, batch)


def token_positions(token_outputs: Sequence[str], mask: str = "attention_mask") -> Positions:
    """``positions`` for ``diff``: the outputs named by ``token_outputs`` (fnmatch patterns of
    ``"module:output"``, e.g. ``"encoder.*:"`` or ``":hidden_states*"``; a module's bare tensor output is named
    ``""``) are per token, compared where the batch's ``mask`` input keeps a token; the rest everywhere. Which
    outputs are per token is said by name (their meaning), never guessed from a shape."""
    import fnmatch

    def positions(module: str, output: str, batch: Inputs) -> np.ndarray | None:
        if not any(fnmatch.fnmatchcase(f"{module}:{output}", pattern) for pattern in token_outputs):
            return None
        if not isinstance(batch, dict) or mask not in batch:
            raise PaddleportError("positions", f"token positions need the {mask!r} input")
        return np.asarray(batch[mask]).astype(bool)
    return positions


def _single_step(torch_module, paddle_layer, batch, pairing, streams, tolerances, train, notes,
                 positions) -> list[ModuleDiff]:
    """Each matched Paddle layer called alone on the inputs its torch module received in torch's forward."""
    import paddle

    torch_calls = record_torch(pairing, batch, streams[0], record_inputs=True)
    saved = {name: tensor.clone() for name, tensor in paddle_layer.state_dict().items()}
    streams[1].next_forward()
    results = []
    try:
        for call in torch_calls:
            layer = pairing.paddle_layers[call.name]
            before = capture.read_buffers(pairing.buffers.get(call.name, {}))
            paddle_call = capture.RecordedCall(call.name, call.call, buffers_before=before)
            try:
                with paddle.no_grad():
                    output = _call_with_torch_inputs(layer, call.inputs)
            except Exception as error:  # noqa: BLE001 (a layer whose interface differs is reported, not fatal)
                results.append(_module_diff(call, pairing, problem=f"Paddle call on torch's inputs failed: "
                                            f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"))
                continue
            paddle_call.set_outputs(output, capture.is_paddle_tensor)
            paddle_call.buffers = capture.read_buffers(pairing.buffers.get(call.name, {}))
            results.append(_compare_call(call, paddle_call, pairing, tolerances, train, notes,
                                         _keep_of(positions, call.name, batch)))
    finally:
        paddle_layer.set_state_dict(saved)
    return results


def _to_paddle(value):
    """torch tensors in ``value`` (nested tuples, lists, dicts) as Paddle tensors."""
    import paddle

    def convert(tensor):
        if str(tensor.dtype) == "torch.bfloat16":
            return paddle.to_tensor(tensor.float().numpy()).astype("bfloat16")
        return paddle.to_tensor(tensor.cpu().numpy())

    return capture.map_torch_tensors(value, convert)


def _call_with_torch_inputs(layer, inputs: tuple):
    """Call ``layer`` with torch's recorded (args, kwargs), bound to the Paddle forward's own parameters: keyword
    arguments it knows by name; non-tensor arguments it has no room for (flags such as ``output_attentions``,
    None) dropped; the remaining tensors by position into its free parameters, in torch's order."""
    import inspect

    args, kwargs = list(_to_paddle(inputs[0])), _to_paddle(inputs[1])
    parameters = list(inspect.signature(layer.forward).parameters.values())
    if any(p.kind is p.VAR_POSITIONAL for p in parameters) and any(p.kind is p.VAR_KEYWORD for p in parameters):
        return layer(*args, **kwargs)
    positional = [p.name for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    by_name = {key: value for key, value in kwargs.items() if key in positional[len(args):]
               or any(p.name == key and p.kind is p.KEYWORD_ONLY for p in parameters)}
    leftover = [value for key, value in kwargs.items() if key not in by_name and capture.is_paddle_tensor(value)]
    free = [name for name in positional[len(args):] if name not in by_name]
    args += leftover[:len(free)]
    while len(args) > len(positional) and not capture.is_paddle_tensor(args[-1]):
        args.pop()  # trailing flags the Paddle forward does not take
    return layer(*args, **by_name)


def _module_diff(call, pairing, problem=None) -> ModuleDiff:
    return ModuleDiff(call.name, pairing.paddle_names[call.name], call.call,
                      type(pairing.torch_modules[call.name]).__name__, type(pairing.paddle_layers[call.name]).__name__,
                      problem=problem)


def output_label(name: str) -> str:
    """``output``, ``output[1]``, ``output.logits``: how an output is named in a report."""
    return "output" + (name if not name or name.startswith("[") else f".{name}")


def _paired_outputs(call, paddle_call) -> list[tuple[str, int, int]]:
    """(torch-side output name, torch index, Paddle index): by name when both sides name the same outputs
    (output objects whose fields come in another order), else by position."""
    if len(set(call.output_names)) == len(call.output_names) and set(call.output_names) == set(
            paddle_call.output_names):
        return [(name, index, paddle_call.output_names.index(name)) for index, name in enumerate(call.output_names)]
    count = min(len(call.outputs), len(paddle_call.outputs))
    return [(call.output_names[index], index, index) for index in range(count)]


def _compare_call(call, paddle_call, pairing, tolerances, train: bool, notes: list[str],
                  keep: Callable[[str], np.ndarray | None] = lambda output: None) -> ModuleDiff:
    result = _module_diff(call, pairing)
    if paddle_call is None:
        result.problem = "not called in Paddle's forward" if call.call == 0 else \
            f"called {call.call} time(s) in Paddle, more in torch"
        return result
    tolerance_of = lambda dtype: tolerance_for(call.name, dtype, tolerances)  # noqa: E731
    for name, index, paddle_index in _paired_outputs(call, paddle_call):
        dtype = call.dtypes[index]
        result.outputs.append(compare_arrays(output_label(name), paddle_call.outputs[paddle_index],
                                             call.outputs[index], dtype, tolerance_of(dtype), keep=keep(name)))
    if len(call.outputs) != len(paddle_call.outputs):
        if not result.outputs and call.outputs:
            result.problem = f"outputs: {len(call.outputs)} tensors in torch, none in Paddle"
        else:
            notes.append(f"{call.name}: {len(call.outputs)} output tensors in torch, {len(paddle_call.outputs)} "
                         f"in Paddle; the first {len(result.outputs)} compared")
    for leaf, expected in call.buffers.items():
        if leaf not in paddle_call.buffers:
            continue
        expected = _in_paddle_convention(pairing.torch_modules[call.name], leaf, call, expected, train, notes)
        dtype = str(expected.dtype)
        result.buffers.append(compare_arrays(leaf, paddle_call.buffers[leaf], expected, dtype, tolerance_of(dtype)))
    return result


def _in_paddle_convention(module, leaf: str, call, after: np.ndarray, train: bool, notes: list[str]) -> np.ndarray:
    """torch's running variance after a training-mode BatchNorm call, re-derived with the biased batch variance."""
    from torch import nn

    if not (train and leaf == "running_var" and isinstance(module, nn.modules.batchnorm._BatchNorm)
            and module.momentum is not None and call.rows_per_channel > 1):
        return after
    notes.append(BATCHNORM_VARIANCE_NOTE)
    momentum, rows = module.momentum, call.rows_per_channel
    before = call.buffers_before[leaf]
    unbiased_batch_variance = (after - (1 - momentum) * before) / momentum
    return ((1 - momentum) * before + momentum * unbiased_batch_variance * (rows - 1) / rows).astype(after.dtype)


# --- gradients ---------------------------------------------------------------------------------------------

def default_loss_fns() -> LossFns:
    """The first floating output itself when it is a scalar, else its sum weighted by a fixed random tensor
    (a plain sum would give LayerNorm / softmax inputs zero gradients)."""
    import paddle
    import torch

    def weights(shape) -> np.ndarray:
        return np.random.default_rng(0).standard_normal(tuple(shape)).astype(np.float32)

    def torch_loss(output):
        first = _first_floating(capture.flatten(output, capture.is_torch_tensor))
        return first.sum() if first.numel() == 1 else (first.float() * torch.from_numpy(weights(first.shape))).sum()

    def paddle_loss(output):
        first = _first_floating(capture.flatten(output, capture.is_paddle_tensor))
        if first.size == 1:
            return first.sum()
        return (first.astype("float32") * paddle.to_tensor(weights(first.shape))).sum()

    return torch_loss, paddle_loss


def _first_floating(tensors: list):
    first = next((tensor for tensor in tensors if tensor.is_floating_point()), None)
    if first is None:
        raise PaddleportError("loss_fn", "the model returns no floating-point tensor to build the default loss "
                              "from: pass loss_fn=(torch_loss, paddle_loss)")
    return first


def forward_loss(torch_module, paddle_layer, batch: Inputs, streams, loss_fns: LossFns):
    """One forward pass and loss in each framework (autograd on)."""
    args, kwargs = torch_inputs(batch, torch_module)
    if streams is not None:
        streams[0].next_forward()
    torch_loss = loss_fns[0](torch_module(*args, **kwargs))
    args, kwargs = paddle_inputs(batch)
    if streams is not None:
        streams[1].next_forward()
    paddle_loss = loss_fns[1](paddle_layer(*args, **kwargs))
    return torch_loss, paddle_loss


@dataclass
class Gradients:
    """One backward pass in each framework: the losses and every trainable pair's gradient, Paddle's mapped back
    to torch's layout through the pair's transform (None where a framework computed none)."""

    torch_loss: np.ndarray
    paddle_loss: np.ndarray
    dtype: str  # of the loss
    parameters: list[tuple[str, str, list[int], np.ndarray | None, np.ndarray | None]]  # name, dtype, shape, torch, ours


def gradients(torch_module, paddle_layer, batch: Inputs, weights: WeightMap, loss_fns: LossFns | None = None,
              streams=None) -> Gradients:
    """The loss of one forward pass on ``batch`` in each framework and every mapped parameter's gradient."""
    torch_module.zero_grad(set_to_none=True)
    paddle_layer.clear_gradients()
    torch_loss, paddle_loss = forward_loss(torch_module, paddle_layer, batch, streams, loss_fns or default_loss_fns())
    torch_loss.backward()
    paddle_loss.backward()
    result = Gradients(to_numpy(torch_loss).reshape(()), to_numpy(paddle_loss).reshape(()), dtype_name(torch_loss),
                       [])
    for name, torch_param, paddle_param, transform in parameter_pairs(torch_module, paddle_layer, weights):
        reference = None if torch_param.grad is None else to_numpy(torch_param.grad)
        ours = None if paddle_param.grad is None else transform.to_hf(to_numpy(paddle_param.grad))
        result.parameters.append((name, dtype_name(torch_param), list(torch_param.shape), reference, ours))
    torch_module.zero_grad(set_to_none=True)
    paddle_layer.clear_gradients()
    return result


def _gradients(torch_module, paddle_layer, batch, weights: WeightMap, streams, loss_fns, tolerances
               ) -> list[TensorStats]:
    """The loss, then every mapped parameter's gradient, judged per element against the tensor's largest entry."""
    measured = gradients(torch_module, paddle_layer, batch, weights, loss_fns, streams)
    results = [compare_arrays("(loss)", measured.paddle_loss, measured.torch_loss, measured.dtype,
                              tolerance_for("(loss)", measured.dtype, tolerances))]
    for name, dtype, shape, reference, ours in measured.parameters:
        if reference is None or ours is None:
            if reference is not None or ours is not None:
                missing = "Paddle" if ours is None else "torch"
                results.append(TensorStats(name, dtype, shape, 0.0, 0.0, "max", problem=f"no gradient in {missing}"))
            continue
        results.append(compare_arrays(name, ours, reference, dtype,
                                      tolerance_for(name, dtype, tolerances, GRADIENT_TOLERANCES), "max"))
    return results


