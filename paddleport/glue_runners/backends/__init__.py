"""Framework backends (torch, Paddle) behind one interface; each imports its framework lazily."""

from paddleport.glue_runners.backends.base import (AMP_MODES, Backend, BackendOptions, OptimizerConfig,
                                                   linear_warmup_decay, make_backend, uses_weight_decay)

__all__ = ["AMP_MODES", "Backend", "BackendOptions", "OptimizerConfig", "linear_warmup_decay", "make_backend",
           "uses_weight_decay"]
