"""Shared dropout masks for any torch / Paddle model pair, without editing either model.

Every matched pair of dropout modules (torch ``nn.Dropout``, Paddle ``nn.Dropout``, paddleport's own included)
gets a forward hook that replaces the module's output by the input times the shared mask
(``paddleport.dropout_masks``) keyed by the *torch-side* module name, so both draw the same mask even when the
two models name their dropouts differently. The hooks are removed when ``diff`` returns.
"""

from __future__ import annotations

from paddleport.dropout_masks import DropoutMaskStream, site_id


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
