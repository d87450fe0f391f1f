"""Parity and performance of the Paddle ports against transformers: compare, export, bench.

Importing this package imports neither torch nor paddle; the functions import them when called.
"""

from paddleport.parity.report import GradReport, ParityReport, TensorDiff

__all__ = ["GradReport", "ParityReport", "TensorDiff", "compare_models", "export_model", "run_benchmark",
           "BenchOptions", "demo_step", "diff", "DiffReport", "paddle_optimizer_like", "torch_state_to_paddle",
           "paddle_state_to_torch", "continue_in_paddle"]


def __getattr__(name: str):
    import importlib

    modules = {"compare_models": "compare", "export_model": "export", "run_benchmark": "bench",
               "BenchOptions": "bench", "demo_step": "demo", "diff": "porting.engine", "DiffReport": "porting.report",
               "paddle_optimizer_like": "porting.training", "torch_state_to_paddle": "porting.optimizer_state",
               "paddle_state_to_torch": "porting.optimizer_state", "continue_in_paddle": "porting.optimizer_state"}
    if name in modules:
        return getattr(importlib.import_module(f"paddleport.parity.{modules[name]}"), name)
    raise AttributeError(f"module 'paddleport.parity' has no attribute {name!r}")
