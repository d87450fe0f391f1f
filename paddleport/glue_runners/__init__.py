"""GLUE fine-tuning with the same pipeline in PyTorch and PaddlePaddle, and a training-parity check.

``run_glue(GlueRunConfig(...))`` trains/evaluates one framework; ``run_train_parity(TrainParityConfig(...))``
steps both frameworks side by side. torch and paddle are imported only by the backend that uses them.
"""

from paddleport.glue_runners.parity import TrainParityConfig, run_train_parity
from paddleport.glue_runners.runner import GlueRunConfig, run_glue
from paddleport.glue_runners.tasks import GLUE_TASKS, get_task

__all__ = ["GLUE_TASKS", "GlueRunConfig", "TrainParityConfig", "get_task", "run_glue", "run_train_parity"]
