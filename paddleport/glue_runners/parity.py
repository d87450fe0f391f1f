"""``train-parity``: the same optimizer steps in torch and Paddle, from the same weights on the same batches.

fp32, dropout off, or on with ``dropout=True``: both frameworks then draw the same masks
(``paddleport.dropout_masks``). The loss of every step and the largest parameter difference at the end are
compared.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from paddleport import runtime
from paddleport.glue_runners.backends.base import BackendOptions, OptimizerConfig, make_backend
from paddleport.glue_runners.checkpoint_info import check_head, inspect_model_dir
from paddleport.glue_runners.data import DataSource, load_glue_data
from paddleport.glue_runners.features import (Features, collate, epoch_batches, find_tokenizer_dir, load_tokenizer,
                                              tokenize_split)
from paddleport.glue_runners.reporting import write_json
from paddleport.glue_runners.runner import FRAMEWORKS, load_backend_model
from paddleport.glue_runners.tasks import get_task
from paddleport.peft.lora import LoraSettings, plan_for_checkpoint, settings_from_options


DEFAULT_MAX_LENGTH = 64


@dataclass
class TrainParityConfig:
    model: Path
    steps: int = 20
    task: str = "qqp"
    data_dir: Path | None = None
    tokenizer: Path | None = None
    batch_size: int = 8
    max_length: int | None = None  # None: DEFAULT_MAX_LENGTH, clamped to the model's max_position_embeddings
    lr: float = 1e-4
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0
    seed: int = 0
    dropout: bool = False  # train mode, shared dropout masks
    tolerance: float = 1e-4
    work_dir: Path | None = None  # where the Paddle conversion goes; a temporary directory by default
    json_path: Path | None = None
    num_threads: int | None = None
    peft: str = "none"  # "lora": train the same LoRA adapter in both frameworks
    lora_r: int = 8
    lora_alpha: float = 16.0
    lora_dropout: float = 0.1
    lora_target_modules: str = "query,value"
    lora_bias: str = "none"

    def lora_settings(self) -> LoraSettings | None:
        return settings_from_options(self.peft, self.lora_r, self.lora_alpha, self.lora_dropout,
                                     self.lora_target_modules, self.lora_bias)


def parity_batches(features: Features, steps: int, batch_size: int, seed: int, pad_token_id: int) -> list[dict]:
    """``steps`` padded batches in seeded order, cycling through the data as often as needed."""
    batches: list[dict] = []
    epoch = 0
    while len(batches) < steps:
        for indices in epoch_batches(features.lengths, batch_size, seed, epoch)[: steps - len(batches)]:
            batches.append(collate(features, indices, pad_token_id))
        epoch += 1
    return batches


def train_steps(framework: str, config: TrainParityConfig, batches: list[dict], num_labels: int, work_dir: Path
                ) -> tuple[list[float], dict[str, np.ndarray]]:
    """Losses of each step (before its update) and the final parameters (Hugging Face layout)."""
    info = inspect_model_dir(config.model)
    options = BackendOptions(dropout_masks="shared", lora=config.lora_settings())
    backend = load_backend_model(make_backend(framework, options), info, num_labels, config.seed, work_dir)
    backend.set_train_mode(config.dropout)  # dropout off, or on with the same masks in both frameworks
    backend.build_optimizer(OptimizerConfig(
        lr=config.lr, weight_decay=config.weight_decay, warmup_steps=int(config.warmup_ratio * config.steps),
        total_steps=config.steps, max_grad_norm=config.max_grad_norm))
    losses = []
    for batch in batches:
        losses.append(backend.forward_backward(batch, 1.0))
        backend.optimizer_step()
    return losses, backend.get_parameters()


def largest_difference(first: dict[str, np.ndarray], second: dict[str, np.ndarray]) -> tuple[str, float]:
    differences = {name: float(np.max(np.abs(first[name] - second[name]))) for name in first}
    name = max(differences, key=differences.get)
    return name, differences[name]


def run_train_parity(config: TrainParityConfig) -> dict:
    """Train both frameworks ``config.steps`` steps; the report says whether every loss agrees within tolerance."""
    task = get_task(config.task)
    info = inspect_model_dir(config.model)
    check_head(info, task.num_labels, task.name)
    if config.lora_settings() is not None:
        plan_for_checkpoint(info.config, task.num_labels, config.lora_settings())
    train = load_glue_data(task, DataSource(data_dir=config.data_dir)).train.head(config.steps * config.batch_size)
    tokenizer = load_tokenizer(config.tokenizer or find_tokenizer_dir(config.model))
    features = tokenize_split(train, tokenizer, info.fit_max_length(config.max_length, DEFAULT_MAX_LENGTH))
    batches = parity_batches(features, config.steps, config.batch_size, config.seed, tokenizer.pad_token_id)
    with tempfile.TemporaryDirectory(prefix="paddleport-parity-") as temporary:
        work_dir = Path(config.work_dir or temporary)
        with runtime.ensure("cpu", config.num_threads, FRAMEWORKS):
            results = {framework: train_steps(framework, config, batches, task.num_labels, work_dir)
                       for framework in FRAMEWORKS}
    (torch_losses, torch_params), (paddle_losses, paddle_params) = results["torch"], results["paddle"]
    loss_differences = [abs(a - b) for a, b in zip(torch_losses, paddle_losses)]
    name, difference = largest_difference(torch_params, paddle_params)
    report = {
        "model": str(config.model), "task": task.name, "steps": config.steps, "batch_size": config.batch_size,
        "lr": config.lr, "dropout": config.dropout, "tolerance": config.tolerance, "peft": config.peft,
        "losses": [{"step": step + 1, "torch": a, "paddle": b, "abs_diff": d}
                   for step, (a, b, d) in enumerate(zip(torch_losses, paddle_losses, loss_differences))],
        "max_loss_diff": max(loss_differences),
        "max_param_diff": difference, "max_param_diff_name": name,
        "passed": max(loss_differences) <= config.tolerance,
    }
    if config.json_path:
        write_json(Path(config.json_path), report)
    return report


def format_parity_report(report: dict) -> str:
    lines = [f"{'step':>4}  {'torch loss':>12}  {'paddle loss':>12}  {'|diff|':>10}"]
    lines += [f"{row['step']:>4}  {row['torch']:>12.6f}  {row['paddle']:>12.6f}  {row['abs_diff']:>10.2e}"
              for row in report["losses"]]
    verdict = "PASS" if report["passed"] else "FAIL"
    dropout = "dropout on, shared masks" if report["dropout"] else "dropout off"
    if report.get("peft", "none") != "none":
        dropout += f", {report['peft']} adapter"
    lines.append(f"{dropout}; max |loss diff| {report['max_loss_diff']:.2e} (tolerance {report['tolerance']:.0e}): {verdict}")
    lines.append(f"largest parameter difference after {report['steps']} steps: {report['max_param_diff']:.2e} "
                 f"({report['max_param_diff_name']})")
    return "\n".join(lines)
