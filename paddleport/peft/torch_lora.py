"""The torch side of LoRA: Hugging Face ``peft`` on a transformers model, set up from a :class:`LoraPlan`."""

from __future__ import annotations

from pathlib import Path

from paddleport.errors import PaddleportError
from paddleport.peft.lora import ADAPTER_WEIGHTS, LoraPlan, LoraSettings, canonical_name, check_adapter_fits


def lora_config(settings: LoraSettings):
    import peft

    targets = settings.target_modules if isinstance(settings.target_modules, str) else list(settings.target_modules)
    return peft.LoraConfig(r=settings.r, lora_alpha=settings.lora_alpha, lora_dropout=settings.lora_dropout,
                           target_modules=targets, bias=settings.bias, modules_to_save=list(settings.modules_to_save),
                           use_rslora=settings.use_rslora, task_type="SEQ_CLS")


def apply(model, plan: LoraPlan):
    """``peft.get_peft_model`` with the plan's settings; checks peft trains exactly the planned parameters."""
    import peft

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
