"""Run reports: the per-epoch table, metrics.json, loss/accuracy curves (PNG) and peak memory."""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path
from typing import Any, Sequence

TABLE_COLUMNS = (("epoch", "epoch", "{:d}"), ("train_loss", "train loss", "{:.4f}"),
                 ("eval_loss", "eval loss", "{:.4f}"),
                 ("eval_accuracy", "eval acc", "{:.4f}"), ("eval_f1", "eval F1", "{:.4f}"),
                 ("epoch_time_s", "epoch time (s)", "{:.1f}"))


def peak_rss_mb() -> float:
    """Peak resident set size of this process (MiB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def _cell(value: Any, pattern: str) -> str:
    return "-" if value is None else pattern.format(value)


def epoch_table(rows: Sequence[dict]) -> str:
    """A fixed-width text table of the epoch rows."""
    headers = [header for _, header, _ in TABLE_COLUMNS]
    cells = [[_cell(row.get(key), pattern) for key, _, pattern in TABLE_COLUMNS] for row in rows]
    widths = [max(len(text) for text in column) for column in zip(headers, *cells)]
    lines = ["  ".join(text.rjust(width) for text, width in zip(line, widths)) for line in [headers, *cells]]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def summary_text(metrics: dict) -> str:
    """The epoch table plus totals, as printed at the end of a run."""
    device = metrics.get("peak_device_memory_mb")
    lines = [
        f"{metrics['framework']} {metrics['task']}: {len(metrics['epochs'])} epoch(s), {metrics['global_steps']} steps",
        epoch_table(metrics["epochs"]),
        f"total training time {metrics['total_train_time_s']:.1f} s, {metrics['train_samples_per_s']:.1f} samples/s, "
        f"peak RSS {metrics['peak_memory_mb']:.0f} MiB" + (f", peak GPU {device:.0f} MiB" if device else ""),
    ]
    best = metrics.get("best")
    if best:
        lines.append(f"best {best['metric']} {best['value']:.4f} at step {best['step']} -> {best['model_dir']}")
    return "\n".join(lines)


def write_json(path: Path, payload: dict) -> None:
    path = Path(path)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    temporary.replace(path)


def plot_curves(rows: Sequence[dict], loss_log: Sequence[Sequence[float]], steps_per_epoch: int, path: Path) -> Path:
    """Two panels: train loss per step and eval loss per epoch; eval accuracy (and F1) per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, (loss_axes, accuracy_axes) = pyplot.subplots(1, 2, figsize=(11, 4))
    if loss_log:
        steps, losses = zip(*loss_log)
        loss_axes.plot([step / steps_per_epoch for step in steps], losses, lw=0.8, alpha=0.7, label="train loss (step)")
    epochs = [row["epoch"] for row in rows]
    loss_axes.plot(epochs, [row["train_loss"] for row in rows], "o-", label="train loss (epoch)")
    loss_axes.plot(epochs, [row["eval_loss"] for row in rows], "s-", label="eval loss")
    loss_axes.set(xlabel="epoch", ylabel="loss", title="loss")
    for key, label in (("eval_accuracy", "eval accuracy"), ("eval_f1", "eval F1")):
        if any(row.get(key) is not None for row in rows):
            accuracy_axes.plot(epochs, [row.get(key) for row in rows], "o-", label=label)
    accuracy_axes.set(xlabel="epoch", title="evaluation")
    for axes in (loss_axes, accuracy_axes):
        axes.grid(alpha=0.3)
        axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)
    return Path(path)


def framework_comparison(results: dict[str, dict]) -> str:
    """torch and Paddle runs side by side (last epoch's dev metrics, throughput) and the Paddle/torch ratio."""
    headers = ("framework", "train", "dev", "epochs", "train loss", "dev acc", "dev F1", "samples/s", "train s")
    rows = []
    for framework, metrics in results.items():
        last = metrics["epochs"][-1]
        rows.append((framework, str(metrics["train_samples"]), str(metrics["eval_samples"]),
                     str(len(metrics["epochs"])),
                     f"{last['train_loss']:.4f}", _cell(last.get("eval_accuracy"), "{:.4f}"),
                     _cell(last.get("eval_f1"), "{:.4f}"), f"{metrics['train_samples_per_s']:.1f}",
                     f"{metrics['total_train_time_s']:.1f}"))
    widths = [max(len(text) for text in column) for column in zip(headers, *rows)]
    lines = ["  ".join(text.rjust(width) for text, width in zip(line, widths)) for line in (headers, *rows)]
    lines.insert(1, "  ".join("-" * width for width in widths))
    if {"torch", "paddle"} <= set(results):
        torch_run, paddle_run = results["torch"], results["paddle"]
        ratio = paddle_run["train_samples_per_s"] / max(torch_run["train_samples_per_s"], 1e-9)
        delta = ((paddle_run["epochs"][-1].get("eval_accuracy") or 0)
                 - (torch_run["epochs"][-1].get("eval_accuracy") or 0))
        lines.append(f"Paddle/torch throughput ratio {ratio:.2f}; "
                     f"dev accuracy paddle - torch {100 * delta:+.1f} points")
    return "\n".join(lines)
