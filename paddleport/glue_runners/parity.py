"""``train-parity``: the same optimizer steps in torch and Paddle, from the same weights on the same batches.

fp32, dropout off, or on with ``dropout=True``: both frameworks then draw the same masks
(``paddleport.dropout_masks``). The two sides are run-glue's backends (the models, optimizers and shared dropout
masks run-glue fine-tunes with: that is what train-parity certifies), stepped and judged by the porting engine
(``parity.porting.training``: ``run_side``, ``judge_training``), as ``diff --steps`` is. The verdict's rules, and
the measurements behind them, are that module's doc: every step's loss within ``LOSS_NOISE_ULPS`` (32) float32
ulps of the loss scale (or ``tolerance``), every final parameter within ``param_rtol`` (2e-3) x the largest
parameter movement + ``PARAM_NOISE_ULPS`` (16) ulps of its magnitude, the same start, and everything finite.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from paddleport import runtime
from paddleport.glue_runners.backends.base import BackendOptions, OptimizerConfig, make_backend
from paddleport.glue_runners.checkpoint_info import check_head, inspect_model_dir
from paddleport.glue_runners.data import DataSource, load_glue_data
from paddleport.glue_runners.features import (Features, collate, epoch_batches, find_tokenizer_dir, load_tokenizer,
                                              tokenize_split)
from paddleport.glue_runners.reporting import write_json
from paddleport.glue_runners.runner import FRAMEWORKS, load_backend_model
from paddleport.glue_runners.tasks import get_task
from paddleport.parity.metrics import json_number
from paddleport.parity.porting.training import (PARAM_NOISE_ULPS, PARAM_RTOL_OF_MOVEMENT, TrainedRun,
                                                TrainingVerdict, judge_training, run_side)
from paddleport.peft.methods import PeftOptions, plan_for_checkpoint, virtual_tokens

DEFAULT_MAX_LENGTH = 64


@dataclass
class TrainParityConfig(PeftOptions):
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
    tolerance: float | None = None  # largest |loss difference|; None: LOSS_NOISE_ULPS of the loss scale
    param_rtol: float = PARAM_RTOL_OF_MOVEMENT  # parameter difference / largest parameter movement (+ float noise)
    work_dir: Path | None = None  # where the Paddle conversion goes; a temporary directory by default
    json_path: Path | None = None
    num_threads: int | None = None

    def tokenizer_dir(self) -> Path:
        return Path(self.tokenizer or find_tokenizer_dir(self.model))


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
                ) -> TrainedRun:
    """One framework's run: run-glue's backend (model, AdamW, schedule, shared dropout masks) stepped by the
    engine; the loss of each step and the parameters before and after (Hugging Face names and layout)."""
    info = inspect_model_dir(config.model)
    options = BackendOptions(dropout_masks="shared", peft=config.peft_settings())
    backend = load_backend_model(make_backend(framework, options), info, num_labels, config.seed, work_dir)
    backend.set_train_mode(config.dropout)  # dropout off, or on with the same masks in both frameworks
    backend.build_optimizer(OptimizerConfig(
        lr=config.lr, weight_decay=config.weight_decay, warmup_steps=int(config.warmup_ratio * config.steps),
        total_steps=config.steps, max_grad_norm=config.max_grad_norm))
    return run_side(backend, batches, config.steps)


def run_train_parity(config: TrainParityConfig) -> dict:
    """Train both frameworks ``config.steps`` steps; the report says whether losses and parameters agree within
    tolerances scaled to the run (module doc)."""
    task = get_task(config.task)
    info = inspect_model_dir(config.model)
    check_head(info, task.num_labels, task.name)
    if config.peft_settings() is not None:
        plan_for_checkpoint(info.config, task.num_labels, config.peft_settings())
    train = load_glue_data(task, DataSource(data_dir=config.data_dir)).train.head(config.steps * config.batch_size)
    tokenizer = load_tokenizer(config.tokenizer_dir())
    max_length = info.fit_max_length(config.max_length, DEFAULT_MAX_LENGTH,
                                     reserved=virtual_tokens(config.peft_settings()))
    features = tokenize_split(train, tokenizer, max_length)
    batches = parity_batches(features, config.steps, config.batch_size, config.seed, tokenizer.pad_token_id)
    with tempfile.TemporaryDirectory(prefix="paddleport-parity-") as temporary:
        work_dir = Path(config.work_dir or temporary)
        with runtime.ensure("cpu", config.num_threads, FRAMEWORKS):
            runs = {framework: train_steps(framework, config, batches, task.num_labels, work_dir)
                    for framework in FRAMEWORKS}
    report = verdict_json(judge_training(runs["torch"], runs["paddle"], config.tolerance, config.param_rtol))
    report.update({"model": str(config.model), "task": task.name, "steps": config.steps,
                   "batch_size": config.batch_size, "lr": config.lr, "weight_decay": config.weight_decay,
                   "dropout": config.dropout, "peft": config.peft})
    if config.json_path:
        write_json(Path(config.json_path), report)
    return report


def verdict_json(verdict: TrainingVerdict) -> dict:
    """train-parity's report fields of the engine's verdict (JSON-ready: a non-finite number is null, with its
    count and first position)."""
    param = verdict.param
    return {
        "losses": verdict.loss_rows(), "tolerance": verdict.loss_tolerance, "loss_noise_ulps": verdict.loss_noise_ulps,
        "max_loss_diff": json_number(verdict.max_loss_diff),
        "non_finite_losses": sum(diff.non_finite for diff in verdict.steps),
        "max_param_diff": json_number(param.max_abs), "max_param_diff_name": verdict.param_name,
        "param_non_finite": param.non_finite, "param_first_non_finite": (
            list(param.first_non_finite) if param.first_non_finite is not None else None),
        "max_param_movement": json_number(verdict.moved.max_abs), "max_param_movement_name": verdict.moved_name,
        "param_rtol": verdict.param_rtol, "param_noise_ulps": PARAM_NOISE_ULPS,
        "param_worst_vs_tolerance": json_number(verdict.worst_ratio), "param_worst_name": verdict.worst_name,
        "failures": verdict.failures, "passed": verdict.passed,
    }


def format_parity_report(report: dict) -> str:
    lines = [f"{'step':>4}  {'torch loss':>12}  {'paddle loss':>12}  {'|diff|':>10}"]
    lines += [f"{row['step']:>4}  {_number(row['torch'], '12.6f')}  {_number(row['paddle'], '12.6f')}  "
              f"{_number(row['abs_diff'], '10.2e')}" for row in report["losses"]]
    dropout = "dropout on, shared masks" if report["dropout"] else "dropout off"
    if report.get("peft", "none") != "none":
        dropout += f", {report['peft']} adapter"
    lines.append(f"{dropout}; max |loss diff| {_number(report['max_loss_diff'], '.2e')} "
                 f"(tolerance {report['tolerance']:.2e}; {report['non_finite_losses']} non-finite)")
    lines.append(f"largest parameter difference after {report['steps']} steps: "
                 f"{_number(report['max_param_diff'], '.2e')} ({report['max_param_diff_name']}; "
                 f"largest movement {_number(report['max_param_movement'], '.2e')}; worst parameter "
                 f"{report['param_worst_name']} at {_number(report['param_worst_vs_tolerance'], '.2f')} x its tolerance "
                 f"of {report['param_rtol']:g} x movement + {report['param_noise_ulps']} ulps)")
    lines += [f"FAIL: {failure}" for failure in report["failures"]]
    lines.append("PASS" if report["passed"] else "FAIL")
    return "\n".join(lines)


def _number(value: float | None, spec: str) -> str:
    """A JSON number (None: not finite) in a fixed-width column."""
    width = spec.split(".")[0]
    return format(value, spec) if value is not None else format("non-finite", f">{width}" if width else "")
