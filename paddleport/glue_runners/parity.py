"""``train-parity``: the same optimizer steps in torch and Paddle, from the same weights on the same batches.

fp32, dropout off, or on with ``dropout=True``: both frameworks then draw the same masks
(``paddleport.dropout_masks``). Two criteria, both scaled to what the run did, and a NaN or infinity anywhere
is a failure (``parity.metrics.difference``):

- **Parameters**: after the last step, every |p_paddle - p_torch| must stay within
  ``param_rtol`` (2e-3) x the largest distance any parameter moved from its start (torch's run), plus
  ``PARAM_NOISE_ULPS`` (16) float32 ulps of that parameter's own magnitude.  The ulp term is there because float32
  cannot hold a weight of magnitude |p| closer than |p| x 2**-24 and each step rounds again: on tiny BERT at lr 1e-4
  a padding-row embedding of magnitude ~3 ends 1.4e-6 apart while the largest movement is 9.2e-4 (ratio 1.6e-3),
  so 1e-3 x movement alone would fail a correct port; 2e-3 rather than 1e-3 because tiny SqueezeBERT's classifier
  bias (magnitude ~0, so no ulp term) ends at 0.64 of a 1e-3 bound.  Measured worst parameter against this bound
  (20 steps, lr 1e-4, tests/test_glue_parity.py's models): 0.15-0.32 with dropout off and on.  An optimizer that
  drops weight decay, or decays LayerNorm weights, moves a parameter by lr x weight_decay x |p| a step: 3.1e-5 and
  1.2e-5 on tiny BERT, 4.0x and 2.9x its bound.
- **Losses**: every step's |loss_torch - loss_paddle| must stay within ``LOSS_NOISE_ULPS`` float32 ulps of the
  loss scale (max(1, |loss_torch|)): the two frameworks sum the same numbers in different orders, so a loss carries
  rounding noise of a few ulps per reduction, and the drift of the parameters (bounded above) adds a few more.
  Measured: 1 ulp on tiny BERT, 4.5 on the real MiniLM over 20 steps.
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
from paddleport.peft.lora import LoraOptions, plan_for_checkpoint
from paddleport.parity.metrics import json_number, largest, named_differences, scalar_difference

# Parameter tolerance: PARAM_RTOL_OF_MOVEMENT x the largest parameter movement + PARAM_NOISE_ULPS float32 ulps of
# the parameter's magnitude; loss tolerance: LOSS_NOISE_ULPS ulps of max(1, |loss|). See the module doc.
PARAM_RTOL_OF_MOVEMENT = 2e-3
PARAM_NOISE_ULPS = 16
LOSS_NOISE_ULPS = 32
FLOAT32_EPS = 2.0 ** -23


DEFAULT_MAX_LENGTH = 64


@dataclass
class TrainParityConfig(LoraOptions):
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


def parity_batches(features: Features, steps: int, batch_size: int, seed: int, pad_token_id: int) -> list[dict]:
    """``steps`` padded batches in seeded order, cycling through the data as often as needed."""
    batches: list[dict] = []
    epoch = 0
    while len(batches) < steps:
        for indices in epoch_batches(features.lengths, batch_size, seed, epoch)[: steps - len(batches)]:
            batches.append(collate(features, indices, pad_token_id))
        epoch += 1
    return batches


@dataclass
class TrainedRun:
    losses: list[float]  # each step's loss, before its update
    initial: dict[str, np.ndarray]  # parameters before the first step and after the last (Hugging Face layout)
    final: dict[str, np.ndarray]


def train_steps(framework: str, config: TrainParityConfig, batches: list[dict], num_labels: int, work_dir: Path
                ) -> TrainedRun:
    """One framework's run: the loss of each step and the parameters before and after."""
    info = inspect_model_dir(config.model)
    options = BackendOptions(dropout_masks="shared", lora=config.lora_settings())
    backend = load_backend_model(make_backend(framework, options), info, num_labels, config.seed, work_dir)
    backend.set_train_mode(config.dropout)  # dropout off, or on with the same masks in both frameworks
    backend.build_optimizer(OptimizerConfig(
        lr=config.lr, weight_decay=config.weight_decay, warmup_steps=int(config.warmup_ratio * config.steps),
        total_steps=config.steps, max_grad_norm=config.max_grad_norm))
    initial = {name: np.array(value, copy=True) for name, value in backend.get_parameters().items()}  # not views
    losses = []
    for batch in batches:
        losses.append(backend.forward_backward(batch, 1.0))
        backend.optimizer_step()
    return TrainedRun(losses, initial, backend.get_parameters())


def loss_tolerance(losses: list[float]) -> float:
    """LOSS_NOISE_ULPS float32 ulps of the loss scale (the largest finite |loss|, at least 1)."""
    finite = [abs(loss) for loss in losses if np.isfinite(loss)]
    return LOSS_NOISE_ULPS * FLOAT32_EPS * max([1.0, *finite])


def worst_parameter(ours: dict[str, np.ndarray], reference: dict[str, np.ndarray], movement_tolerance: float
                    ) -> tuple[str, float]:
    """The parameter whose |ours - reference| is largest relative to its element-wise tolerance (movement_tolerance
    + PARAM_NOISE_ULPS ulps of |reference|), and that ratio (<= 1 passes; inf when not finite)."""
    ratios = {}
    for name, want in reference.items():
        want64, got64 = want.astype(np.float64), ours[name].astype(np.float64)
        bound = movement_tolerance + PARAM_NOISE_ULPS * FLOAT32_EPS * np.abs(want64)
        delta = np.abs(got64 - want64)
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = np.where(delta == 0, 0.0, delta / bound)  # equal values pass even where the bound is 0
        ratios[name] = float(np.max(np.where(np.isnan(ratio), np.inf, ratio), initial=0.0))
    name = max(ratios, key=ratios.get)
    return name, ratios[name]


def run_train_parity(config: TrainParityConfig) -> dict:
    """Train both frameworks ``config.steps`` steps; the report says whether losses and parameters agree within
    tolerances scaled to the run (module doc)."""
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
            runs = {framework: train_steps(framework, config, batches, task.num_labels, work_dir)
                    for framework in FRAMEWORKS}
    report = compare_runs(runs["torch"], runs["paddle"], config)
    report.update({"model": str(config.model), "task": task.name, "steps": config.steps,
                   "batch_size": config.batch_size, "lr": config.lr, "weight_decay": config.weight_decay,
                   "dropout": config.dropout, "peft": config.peft})
    if config.json_path:
        write_json(Path(config.json_path), report)
    return report


def compare_runs(reference: TrainedRun, ours: TrainedRun, config: TrainParityConfig) -> dict:
    """Loss of every step and final parameters of ``ours`` (Paddle) against ``reference`` (torch); JSON-ready
    (a non-finite number is null, with its count and first position)."""
    tolerance = loss_tolerance(reference.losses) if config.tolerance is None else config.tolerance
    steps = [scalar_difference(b, a) for a, b in zip(reference.losses, ours.losses, strict=True)]
    start = named_differences(ours.initial, reference.initial)
    moved_name, moved = largest(named_differences(reference.final, reference.initial))
    param_name, param = largest(named_differences(ours.final, reference.final))
    movement_tolerance = config.param_rtol * moved.max_abs
    worst_name, worst_ratio = worst_parameter(ours.final, reference.final, movement_tolerance)
    failures = [f"step {index + 1}: loss {'not finite' if not diff.finite else f'differs by {diff.max_abs:.3g}'}"
                for index, diff in enumerate(steps) if not diff.within(tolerance)]
    start_name, start_diff = largest(start)
    if not start_diff.within(0.0):
        failures.append(f"the runs start from different weights ({start_name} differs by {start_diff.max_abs:.3g})")
    if not moved.finite:
        failures.append(f"torch's parameters are not finite ({moved_name}: {moved.describe_non_finite()})")
    if not param.finite:
        failures.append(f"parameter {param_name}: {param.describe_non_finite()}")
    elif worst_ratio > 1.0:
        failures.append(f"parameter {worst_name} differs by {worst_ratio:.3g} x its tolerance ({config.param_rtol:g} "
                        f"x largest movement {moved.max_abs:.3g} + {PARAM_NOISE_ULPS} ulps of its magnitude)")
    return {
        "losses": [{"step": step + 1, "torch": json_number(a), "paddle": json_number(b),
                    "abs_diff": json_number(diff.max_abs)}
                   for step, (a, b, diff) in enumerate(zip(reference.losses, ours.losses, steps))],
        "tolerance": tolerance, "loss_noise_ulps": LOSS_NOISE_ULPS if config.tolerance is None else None,
        "max_loss_diff": json_number(max(diff.max_abs for diff in steps)),
        "non_finite_losses": sum(diff.non_finite for diff in steps),
        "max_param_diff": json_number(param.max_abs), "max_param_diff_name": param_name,
        "param_non_finite": param.non_finite, "param_first_non_finite": (
            list(param.first_non_finite) if param.first_non_finite is not None else None),
        "max_param_movement": json_number(moved.max_abs), "max_param_movement_name": moved_name,
        "param_rtol": config.param_rtol, "param_noise_ulps": PARAM_NOISE_ULPS,
        "param_worst_vs_tolerance": json_number(worst_ratio), "param_worst_name": worst_name,
        "failures": failures, "passed": not failures,
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
