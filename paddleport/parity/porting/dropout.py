"""Shared dropout masks for any torch / Paddle model pair, without editing either model.

Every matched pair of dropout modules (torch ``nn.Dropout``, Paddle ``nn.Dropout``, paddleport's own included)
gets a forward hook that replaces the module's output by the input times the shared mask
(``paddleport.dropout_masks``) keyed by the *torch-side* module name, so both draw the same mask even when the
two models name their dropouts differently. The hooks are removed when ``diff`` returns.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator

from paddleport.dropout_masks import DropoutMaskStream, site_id


@contextlib.contextmanager
def shared_dropout(torch_modules: dict[str, object], paddle_layers: dict[str, object],
                   streams: tuple[DropoutMaskStream, DropoutMaskStream]) -> Iterator[list[str]]:
    """Every matched dropout module and functional dropout call draws shared masks until the block ends; yields
    notes on dropouts left drawing their own masks."""
    handles = hook_torch_dropouts(torch_modules, streams[0])
    paddle_handles, notes = hook_paddle_dropouts(paddle_layers, streams[1])
    try:
        with FunctionalDropouts(torch_modules, paddle_layers, streams):
            yield notes
    finally:
        for handle in handles + paddle_handles:
            handle.remove()


def hook_torch_dropouts(modules: dict[str, object], stream: DropoutMaskStream) -> list:
    """``modules``: torch-side name -> torch module; returns the hook handles."""
    from torch import nn

    from paddleport.glue_runners.backends.torch_dropout import shared_mask_dropout

    handles = []
    for name, module in modules.items():
        if isinstance(module, nn.Dropout):
            site = site_id(name)

            def shared(module, args, output, site=site):
                if module.training and module.p > 0:
                    return shared_mask_dropout(args[0], float(module.p), stream.key(site))
                return None

            handles.append(module.register_forward_hook(shared))
    return handles


def hook_paddle_dropouts(layers: dict[str, object], stream: DropoutMaskStream) -> tuple[list, list[str]]:
    """``layers``: torch-side name -> Paddle layer; returns the hook handles and notes on layers left alone."""
    from paddle import nn

    from paddleport.models.layers import shared_mask_dropout_ops

    handles, notes = [], []
    for name, layer in layers.items():
        if not isinstance(layer, nn.Dropout):
            continue
        if layer.axis is not None:
            notes.append(f"{name}: Paddle dropout with axis={layer.axis} draws its own masks (not shared)")
            continue
        site = site_id(name)

        def shared(layer, inputs, output, site=site):
            if not layer.training or float(layer.p) == 0:
                return None
            p = float(layer.p)
            if layer.mode == "upscale_in_train":
                return shared_mask_dropout_ops(inputs[0], p, stream.key(site))
            # downscale_in_infer: the same kept elements, unscaled (the port then differs in eval mode)
            return shared_mask_dropout_ops(inputs[0], p, stream.key(site)) * (1.0 - p)

        handles.append(layer.register_forward_post_hook(shared))
    return handles, notes


class FunctionalDropouts:
    """While entered: ``torch.nn.functional.dropout`` and ``paddle.nn.functional.dropout`` called inside a matched
    module (not inside a dropout module, which its hook covers) draw the shared mask keyed by that module's
    torch-side name and the call's index within the module's call, so a functional dropout in torch and one in
    the port at the same place draw the same mask. Calls from code that bound the function before (``from
    torch.nn.functional import dropout``) are not seen. The module attributes are put back on exit; this is a
    process-wide change while ``diff`` runs (not thread-safe)."""

    def __init__(self, torch_modules: dict[str, object], paddle_layers: dict[str, object],
                 streams: tuple[DropoutMaskStream, DropoutMaskStream]):
        self._modules, self._layers, self._streams = torch_modules, paddle_layers, streams
        self._stacks: tuple[list, list] = ([], [])  # [module, torch-side name, functional calls so far]
        self._handles: list = []
        self._originals: list = []

    def __enter__(self) -> FunctionalDropouts:
        import paddle
        import torch

        for name, module in self._modules.items():
            self._handles.append(module.register_forward_pre_hook(self._push(0, name)))
            self._handles.append(module.register_forward_hook(self._pop(0), always_call=True))
        for name, layer in self._layers.items():
            self._handles.append(layer.register_forward_pre_hook(self._push(1, name)))
            self._handles.append(layer.register_forward_post_hook(self._pop(1)))
        self._patch(torch.nn.functional, self._torch_dropout(torch.nn.functional.dropout, torch.nn.Dropout))
        self._patch(paddle.nn.functional, self._paddle_dropout(paddle.nn.functional.dropout, paddle.nn.Dropout))
        return self

    def __exit__(self, *exc_info) -> None:
        for module, original in self._originals:
            module.dropout = original
        for handle in self._handles:
            handle.remove()

    def _patch(self, module, replacement) -> None:
        self._originals.append((module, module.dropout))
        module.dropout = replacement

    def _push(self, side: int, name: str):
        def hook(module, *unused):
            self._stacks[side].append([module, name, 0])
        return hook

    def _pop(self, side: int):
        def hook(module, *unused):
            if self._stacks[side] and self._stacks[side][-1][0] is module:
                self._stacks[side].pop()
        return hook

    def _site(self, side: int, dropout_type) -> int | None:
        """The mask site of a functional call now, or None (no matched module running, or a dropout module's own)."""
        stack = self._stacks[side]
        if not stack or isinstance(stack[-1][0], dropout_type):
            return None
        frame = stack[-1]
        frame[2] += 1
        return site_id(f"{frame[1]}#functional_dropout{frame[2] - 1}")

    def _torch_dropout(self, original, dropout_type):
        from paddleport.glue_runners.backends.torch_dropout import shared_mask_dropout

        signature = inspect.signature(original)

        def dropout(*args, **kwargs):
            call = signature.bind(*args, **kwargs)
            call.apply_defaults()
            p, training = float(call.arguments["p"]), call.arguments["training"]
            site = self._site(0, dropout_type) if training and p > 0 else None
            if site is None:
                return original(*args, **kwargs)
            return shared_mask_dropout(call.arguments["input"], p, self._streams[0].key(site))
        return dropout

    def _paddle_dropout(self, original, dropout_type):
        from paddleport.models.layers import shared_mask_dropout_ops

        signature = inspect.signature(original)

        def dropout(*args, **kwargs):
            call = signature.bind(*args, **kwargs)
            call.apply_defaults()
            p, arguments = float(call.arguments["p"]), call.arguments
            shared = arguments["training"] and p > 0 and arguments["axis"] is None
            site = self._site(1, dropout_type) if shared else None
            if site is None:
                return original(*args, **kwargs)
            kept = shared_mask_dropout_ops(arguments["x"], p, self._streams[1].key(site))
            return kept if arguments["mode"] == "upscale_in_train" else kept * (1.0 - p)
        return dropout
