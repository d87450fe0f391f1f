"""The PEFT methods paddleport trains, their command-line options and their plans, framework-free.

Each method has framework-free settings and a plan (which parameters the adapted model has, which train, which the
adapter file holds, under which canonical names: Hugging Face model names plus the method's own), and one module per
framework that applies the plan to a model. The backends of run-glue and train-parity only go through
:func:`plan_peft` and :func:`framework_module`, so a method is added here and in its own modules.

A framework module provides ``apply(model, plan) -> adapted model`` and ``load_adapter_weights(adapted, plan,
directory)``; the torch one ``canonical_parameters(adapted)`` (canonical name, parameter) and ``inner_model(adapted)``
(the transformers model, whose module names key the shared dropout masks); the Paddle one ``save_adapter(adapted,
plan, directory, base_model)`` and ``inner_model(adapted)``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Union

from paddleport.errors import PaddleportError
import numpy as np

from paddleport.convert.transforms import Transform
from paddleport.peft.lora import (LoraPlan, LoraSettings, is_lora_parameter, lora_initial_value,
                                  lora_settings_from_config, parse_target_modules, plan_lora, read_adapter_config)
from paddleport.peft.lora import transform_of_adapter_key as transform_of_lora_key
from paddleport.peft.bottleneck import (BottleneckPlan, BottleneckSettings, bottleneck_initial_value,
                                        is_bottleneck_parameter, plan_bottleneck)
from paddleport.peft.prompt import (PROMPT_METHODS, PromptPlan, PromptSettings, plan_prompt, prompt_initial_values,
                                    read_prompt_settings, transform_of_prompt_key)

PEFT_METHODS = ("none", "lora", *PROMPT_METHODS, "adapter")

PeftSettings = Union[LoraSettings, PromptSettings, BottleneckSettings]
PeftPlan = Union[LoraPlan, PromptPlan, BottleneckPlan]

# plan type -> (torch module, Paddle module)
_FRAMEWORK_MODULES = {
    LoraPlan: ("paddleport.peft.torch_lora", "paddleport.peft.paddle_lora"),
    PromptPlan: ("paddleport.peft.torch_prompt", "paddleport.peft.paddle_prompt"),
    BottleneckPlan: ("paddleport.peft.torch_bottleneck", "paddleport.peft.paddle_bottleneck"),
}


@dataclass(kw_only=True)
class PeftOptions:
    """``--peft`` and each method's options as run-glue and train-parity take them (their configs inherit these
    fields)."""

    peft: str = "none"  # one of PEFT_METHODS: train an adapter (paddleport.peft), saved in peft's layout
    lora_r: int = 8
    lora_alpha: float = 16.0
    lora_dropout: float = 0.1
    lora_target_modules: str = "query,value"
    lora_bias: str = "none"
    num_virtual_tokens: int = 20  # prompt, p-tuning
    encoder_reparameterization_type: str = "MLP"  # p-tuning: MLP or LSTM
    encoder_hidden_size: int | None = None  # p-tuning; None: the word-embedding width
    prompt_tuning_init: str = "RANDOM"  # prompt: RANDOM or TEXT (peft's PromptTuningConfig names)
    prompt_tuning_init_text: str | None = None  # prompt, TEXT: the text whose word embeddings start the prompt
    adapter_config: str = "houlsby"  # bottleneck adapters: houlsby or pfeiffer (AdapterHub's configs)
    reduction_factor: float = 16  # bottleneck adapters: hidden_size / bottleneck size

    def peft_settings(self) -> PeftSettings | None:
        """The chosen method's settings, checked (None for ``--peft none``)."""
        if self.peft not in PEFT_METHODS:
            raise PaddleportError("--peft", f"unknown method {self.peft!r}; choose one of {', '.join(PEFT_METHODS)}")
        if self.peft == "none":
            return None
        if self.peft in PROMPT_METHODS:
            tokenizer = self.tokenizer_dir() if self.prompt_tuning_init == "TEXT" else None
            return PromptSettings(method=self.peft, num_virtual_tokens=self.num_virtual_tokens,
                                  encoder_reparameterization_type=self.encoder_reparameterization_type,
                                  encoder_hidden_size=self.encoder_hidden_size,
                                  prompt_tuning_init=self.prompt_tuning_init,
                                  prompt_tuning_init_text=self.prompt_tuning_init_text,
                                  tokenizer_name_or_path=str(tokenizer) if tokenizer else None).check()
        if self.peft == "adapter":
            return BottleneckSettings.preset(self.adapter_config, self.reduction_factor)
        return LoraSettings(r=self.lora_r, lora_alpha=self.lora_alpha, lora_dropout=self.lora_dropout,
                            target_modules=parse_target_modules(self.lora_target_modules),
                            bias=self.lora_bias).check()


    def tokenizer_dir(self) -> Path | None:
        """The run's tokenizer directory (TEXT prompt initialisation tokenizes with it); None without a model."""
        return None


def read_adapter_settings(adapter_dir: Path) -> PeftSettings:
    """The settings of a peft adapter directory (LoRA, prompt tuning, p-tuning); other PEFT types are errors."""
    config, path = read_adapter_config(adapter_dir)
    peft_type = config.get("peft_type")
    if peft_type == "LORA":
        return lora_settings_from_config(config, path)
    if peft_type in PROMPT_METHODS.values():
        return read_prompt_settings(config, path)
    raise PaddleportError(path, f"peft_type {peft_type!r} is not supported (LORA, "
                                f"{', '.join(PROMPT_METHODS.values())})")


def transform_of_adapter_key(settings: PeftSettings, key: str) -> Transform | None:
    """The transform of an adapter-file key of ``settings``' method (None: a key no forward reads)."""
    if isinstance(settings, PromptSettings):
        return transform_of_prompt_key(key)
    if isinstance(settings, BottleneckSettings):
        from paddleport.peft.bottleneck import transform_of_bottleneck_key

        return transform_of_bottleneck_key(key)
    return transform_of_lora_key(key)


def plan_peft(config: dict, class_name: str, settings: PeftSettings) -> PeftPlan:
    """The plan of ``settings``' method for the model ``class_name`` of ``config`` (no model is built); a method
    this model cannot take is a PaddleportError here, before any training."""
    if isinstance(settings, LoraSettings):
        return plan_lora(config, class_name, settings)
    if isinstance(settings, PromptSettings):
        return plan_prompt(config, class_name, settings)
    if isinstance(settings, BottleneckSettings):
        return plan_bottleneck(config, class_name, settings)
    raise TypeError(f"no PEFT method takes {type(settings).__name__}")


def sequence_classification_class(config: dict) -> str:
    """The sequence-classification class of ``config``'s model type (what run-glue trains)."""
    from paddleport.registry import architecture

    return architecture(config.get("model_type"), "config.json").class_name("sequence_classification")


def plan_for_checkpoint(config: dict, num_labels: int, settings: PeftSettings) -> PeftPlan:
    """The plan for ``config``'s sequence-classification model with ``num_labels`` labels."""
    config = {key: value for key, value in config.items() if key not in ("id2label", "label2id")}
    return plan_peft(config | {"num_labels": num_labels}, sequence_classification_class(config), settings)


def framework_module(plan: PeftPlan, framework: str) -> ModuleType:
    """The module that applies ``plan`` in ``framework`` ("torch" or "paddle"); imports that framework."""
    torch_module, paddle_module = _FRAMEWORK_MODULES[type(plan)]
    return importlib.import_module(torch_module if framework == "torch" else paddle_module)


def initialised_from_model(plan: PeftPlan | None) -> set[str]:
    """Canonical names of the adapter parameters the method initialises from the model's own weights (prompt
    tuning's TEXT table), which the shared seeded initialisation leaves alone."""
    return plan.initialised_from_model() if isinstance(plan, PromptPlan) else set()


def virtual_tokens(settings: PeftSettings | None) -> int:
    """Positions the method's virtual tokens take in front of the text (prompt tuning, p-tuning)."""
    return settings.num_virtual_tokens if isinstance(settings, PromptSettings) else 0


def initial_values(shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, np.ndarray]:
    """Initial values (Hugging Face layout) of the adapter parameters among ``shapes`` (canonical names), as
    torch + peft initialise them, from seeded numpy (one generator per name) so that both frameworks start alike."""
    values = {name: lora_initial_value(name, shape, seed) for name, shape in shapes.items() if is_lora_parameter(name)}
    values |= {name: bottleneck_initial_value(name, shape, seed) for name, shape in shapes.items()
               if is_bottleneck_parameter(name)}
    return values | prompt_initial_values(shapes, seed)
