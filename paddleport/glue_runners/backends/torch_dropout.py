"""Shared dropout masks in a transformers model: the masks paddleport's Paddle models draw (``dropout_masks``).

Every ``nn.Dropout`` becomes a :class:`SharedMaskDropout` keyed by its module name. BERT-style models that apply
attention dropout inside transformers' attention functions (``dropout=module.dropout.p``) get a registered
attention function, eager attention whose probabilities go through the module's own (shared-mask) dropout.
"""

from __future__ import annotations

import torch
from torch import nn

from paddleport.dropout_masks import (DropoutMaskStream, check_mask_size, counter_hash32, keep_scale, keep_threshold,
                                      site_id)

ATTENTION_NAME = "paddleport_shared_dropout"


def shared_mask_dropout(x: torch.Tensor, p: float, key: int) -> torch.Tensor:
    check_mask_size(x.numel())
    indices = torch.arange(x.numel(), dtype=torch.int64, device=x.device).view(x.shape)
    keep = counter_hash32(indices, key) >= keep_threshold(p)
    return x * (keep.to(x.dtype) * keep_scale(p))


class SharedMaskDropout(nn.Dropout):
    def __init__(self, p: float, stream: DropoutMaskStream, site: int):
        super().__init__(p)
        self.stream, self.site = stream, site

    def __deepcopy__(self, memo):
        """A copy (peft's trainable copy of a module_to_save) draws from the same stream, the run's, at the same
        site: the Hugging Face module name the Paddle model keeps."""
        copied = SharedMaskDropout(self.p, self.stream, self.site)
        copied.train(self.training)
        return copied

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        return shared_mask_dropout(x, self.p, self.stream.key(self.site))


def _attention_with_module_dropout(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """transformers' eager attention, with the probabilities dropped by the module's own attention dropout
    (``dropout`` in BERT-style modules, ``attention_dropout`` in ALBERT's)."""
    if scaling is None:
        scaling = query.size(-1) ** -0.5
    weights = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        weights = weights + attention_mask
    attention_dropout = module.dropout if hasattr(module, "dropout") else module.attention_dropout
    weights = attention_dropout(nn.functional.softmax(weights, dim=-1))
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), weights


def _register_attention() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    AttentionInterface.register(ATTENTION_NAME, _attention_with_module_dropout)
    AttentionMaskInterface.register(ATTENTION_NAME, eager_mask)


def share_dropout_masks(model: nn.Module, stream: DropoutMaskStream) -> None:
    """Replace every dropout of ``model`` by one drawing its masks from ``stream``."""
    for name, module in list(model.named_modules()):
        for child_name, child in module.named_children():
            if type(child) is nn.Dropout:
                site = site_id(f"{name}.{child_name}" if name else child_name)
                setattr(module, child_name, SharedMaskDropout(child.p, stream, site))
    if getattr(model, "_supports_attention_backend", False):
        _register_attention()
        model.set_attn_implementation(ATTENTION_NAME)
