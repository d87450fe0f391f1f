"""Parameter-efficient fine-tuning for both frameworks: torch through Hugging Face ``peft``, Paddle through
paddleport's own layers; the methods, their options and plans (``methods``); LoRA (``lora``, ``torch_lora``,
``paddle_lora``); prompt tuning and p-tuning (``prompt``, ``torch_prompt``, ``paddle_prompt``); adapter directories
convert and merge (``adapters``).

This package imports neither torch nor paddle; the ``torch_*`` and ``paddle_*`` modules import their framework.
"""

from paddleport.peft.lora import (ADAPTER_CONFIG, ADAPTER_WEIGHTS, LoraPlan, LoraSettings, is_adapter_dir,
                                  parse_target_modules, plan_lora)
from paddleport.peft.methods import PEFT_METHODS, PeftOptions, plan_peft, read_adapter_settings
from paddleport.peft.prompt import PromptPlan, PromptSettings

__all__ = ["ADAPTER_CONFIG", "ADAPTER_WEIGHTS", "PEFT_METHODS", "LoraPlan", "LoraSettings", "is_adapter_dir",
           "parse_target_modules", "plan_lora", "read_adapter_settings", "PeftOptions", "plan_peft",
           "PromptPlan", "PromptSettings"]
