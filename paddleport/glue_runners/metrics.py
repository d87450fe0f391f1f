"""GLUE metrics through scikit-learn and scipy."""

from __future__ import annotations

import numpy as np

from paddleport.glue_runners.tasks import GlueTask


def predictions_from_logits(task: GlueTask, logits: np.ndarray) -> np.ndarray:
    """Class ids (argmax) or regression scores."""
    return logits[:, 0] if task.is_regression else logits.argmax(axis=-1)


def compute_metrics(task: GlueTask, logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """The GLUE metrics of ``task``: accuracy (+F1 and their mean for QQP/MRPC), Matthews for CoLA,
    Pearson/Spearman for STS-B."""
    predictions = predictions_from_logits(task, logits)
    if task.is_regression:
        from scipy.stats import pearsonr, spearmanr

        pearson = float(pearsonr(predictions, labels)[0])
        spearman = float(spearmanr(predictions, labels)[0])
        return {"pearson": pearson, "spearmanr": spearman, "corr": (pearson + spearman) / 2}
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

    metrics = {"accuracy": float(accuracy_score(labels, predictions))}
    if task.main_metric == "matthews_correlation":
        metrics["matthews_correlation"] = float(matthews_corrcoef(labels, predictions))
    if task.main_metric == "acc_and_f1":
        metrics["f1"] = float(f1_score(labels, predictions, zero_division=0.0))
        metrics["acc_and_f1"] = (metrics["accuracy"] + metrics["f1"]) / 2
    return metrics
