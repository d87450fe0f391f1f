"""The torch side of LoRA: Hugging Face ``peft`` on a transformers model, set up from a :class:`LoraPlan`."""

from __future__ import annotations

from pathlib import Path

from paddleport.errors import PaddleportError
from paddleport.peft.lora import (ADAPTER_NAME, ADAPTER_WEIGHTS, LoraPlan, LoraSettings, block_diagonal,
                                  canonical_name, check_adapter_fits, merged_conv_weight)


def lora_config(settings: LoraSettings):
    import peft

    targets = settings.target_modules if isinstance(settings.target_modules, str) else list(settings.target_modules)
    return peft.LoraConfig(r=settings.r, lora_alpha=settings.lora_alpha, lora_dropout=settings.lora_dropout,
                           target_modules=targets, bias=settings.bias, modules_to_save=list(settings.modules_to_save),
                           use_rslora=settings.use_rslora, task_type="SEQ_CLS")


def apply(model, plan: LoraPlan):
    """``peft.get_peft_model`` with the plan's settings; checks peft trains exactly the planned parameters."""
    import warnings

    import peft

    with warnings.catch_warnings():  # paddleport merges grouped convolutions (merge_lora), peft's warning is moot
        warnings.filterwarnings("ignore", message="LoRA adapter added to ConvNd layer with groups > 1")
        adapted = peft.get_peft_model(model, lora_config(plan.settings))
    trainable = {canonical_name(name) for name, param in adapted.named_parameters() if param.requires_grad}
    planned = {param.name for param in plan.trainable}
    if trainable != planned:
        raise PaddleportError(None, f"peft and paddleport's LoRA plan train different parameters: "
                                    f"{', '.join(sorted(trainable ^ planned)[:4])}")
    return adapted


def save_adapter(adapted, plan: LoraPlan, directory: Path, base_model: str | None) -> None:
    """peft's adapter directory (adapter_config.json + adapter_model.safetensors)."""
    adapted.peft_config["default"].base_model_name_or_path = base_model
    adapted.save_pretrained(str(directory))


def inner_model(adapted):
    """The transformers model inside a peft model (module names as in the plain model)."""
    return adapted.base_model.model


def canonical_parameters(adapted):
    """(canonical name, parameter) of every parameter the adapted forward uses."""
    for name, param in adapted.named_parameters():
        canonical = canonical_name(name)
        if canonical is not None:
            yield canonical, param


def load_adapter_weights(adapted, plan: LoraPlan, directory: Path) -> None:
    """An adapter file in torch layout into a peft model (after checking it fits this base model)."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    from paddleport.core.tensor_io import PADDLE_FORMAT_TAG, read_safetensors_checked

    path = Path(directory) / ADAPTER_WEIGHTS
    if not path.is_file():
        raise PaddleportError(directory, f"has no {ADAPTER_WEIGHTS}")
    arrays, metadata = read_safetensors_checked(path)
    if metadata.get("format") == PADDLE_FORMAT_TAG:
        raise PaddleportError(directory, "holds a Paddle-layout adapter; convert it with paddleport convert --to hf")
    check_adapter_fits(plan, {key: value.shape for key, value in arrays.items()}, "hf", path)
    set_peft_model_state_dict(adapted, load_file(str(path)))


def merge_lora(adapted, plan: LoraPlan):
    """The transformers model with every LoRA update folded into its weights (peft's ``merge_and_unload``).

    peft cannot merge a grouped Conv1d (``NotImplementedError: Merging is not supported for _ConvNd layers with
    groups > 1!``): each such layer is replaced first by a dense (groups 1) ``Conv1d`` computing the base
    convolution plus the update (:func:`paddleport.peft.lora.merged_conv_weight`), the other convolutions of its
    kind (``plan.grouped_merge``) made dense too and the config's group count of that kind set to 1, as the Paddle
    side does; peft merges the rest.
    """
    from peft.tuners.lora import LoraLayer

    inner = inner_model(adapted)
    for name, module in list(inner.named_modules()):
        if isinstance(module, LoraLayer) and getattr(module.base_layer, "groups", 1) > 1:  # a grouped lora.Conv1d
            weight = merged_conv_weight(_numpy(module.base_layer.weight), module.base_layer.groups,
                                        _numpy(module.lora_A[ADAPTER_NAME].weight),
                                        _numpy(module.lora_B[ADAPTER_NAME].weight), module.scaling[ADAPTER_NAME])
            _replace(inner, name, _dense_conv(weight, module.base_layer.bias))
    merged = adapted.merge_and_unload()
    for groups_key, modules in plan.grouped_merge.items():
        for name in modules:
            conv = merged.get_submodule(name)
            if conv.groups > 1:
                _replace(merged, name, _dense_conv(block_diagonal(_numpy(conv.weight), conv.groups), conv.bias))
        setattr(merged.config, groups_key, 1)
    return merged


def _numpy(param):
    return param.detach().cpu().numpy()


def _dense_conv(weight, bias):
    """A groups-1 ``torch.nn.Conv1d`` (kernel 1) holding ``weight`` [out, in, 1] and a copy of ``bias``."""
    import torch

    conv = torch.nn.Conv1d(weight.shape[1], weight.shape[0], kernel_size=1, dtype=bias.dtype, device=bias.device)
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(weight))
        conv.bias.copy_(bias)
    return conv


def _replace(model, name: str, module) -> None:
    parent_name, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, leaf, module)
