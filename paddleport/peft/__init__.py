"""Parameter-efficient fine-tuning (LoRA) for both frameworks: torch through Hugging Face ``peft``, Paddle through
paddleport's own layer (``paddle_lora``); adapter directories convert and merge (``adapters``).

This package imports neither torch nor paddle; ``torch_lora`` and ``paddle_lora`` import their framework.
"""

from paddleport.peft.lora import (ADAPTER_CONFIG, ADAPTER_WEIGHTS, PEFT_METHODS, LoraPlan, LoraSettings,
                                  is_adapter_dir, parse_target_modules, plan_lora, read_adapter_settings)

__all__ = ["ADAPTER_CONFIG", "ADAPTER_WEIGHTS", "PEFT_METHODS", "LoraPlan", "LoraSettings", "is_adapter_dir",
           "parse_target_modules", "plan_lora", "read_adapter_settings"]
