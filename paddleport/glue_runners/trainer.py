"""The training loop, written once for every backend: batches, accumulation, evaluation, best model,
early stopping, checkpoints and exact resume."""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from paddleport.errors import PaddleportError
from paddleport.glue_runners.backends.base import Backend
from paddleport.glue_runners.checkpoints import (MODEL_SUBDIR, atomic_directory, latest_checkpoint,
                                                 read_trainer_state, write_checkpoint)
from paddleport.glue_runners.features import Features, collate, epoch_batches, sequential_batches
from paddleport.glue_runners.metrics import compute_metrics
from paddleport.glue_runners.tasks import GlueTask


class NonFiniteLossError(PaddleportError):
    """Training diverged (NaN or infinite loss); the last good checkpoint is kept."""

    exit_code = 1


@dataclass(frozen=True)
class TrainingPlan:
    batch_size: int
    epochs: int
    grad_accum: int = 1
    max_steps: int | None = None
    eval_batch_size: int = 64
    eval_steps: int = 0  # 0: evaluate at the end of each epoch only
    save_steps: int = 0  # 0: checkpoint at the end of each epoch only
    save_total_limit: int = 2
    early_stopping_patience: int = 0  # evaluations without improvement; 0: off
    metric_for_best: str = "accuracy"
    group_by_length: bool = False
    pad_to_multiple_of: int = 1
    seed: int = 42
    progress: bool = True
    stop_after_steps: int | None = None  # act as if the process were killed after this many steps


@dataclass
class TrainerState:
    """Everything besides framework state that an exact resume needs (saved as JSON in each checkpoint)."""

    global_step: int = 0
    epoch: int = 0  # index of the epoch in progress
    batch_in_epoch: int = 0  # micro-batches of that epoch already consumed
    epoch_loss_sum: float = 0.0
    epoch_samples: int = 0
    epoch_time_s: float = 0.0
    train_time_s: float = 0.0
    train_samples: int = 0
    history: list[dict] = field(default_factory=list)  # one row per epoch
    evaluations: list[dict] = field(default_factory=list)  # every evaluation (epoch ends and eval_steps)
    loss_log: list[list[float]] = field(default_factory=list)  # [step, mean loss of the step]
    best_metric: float | None = None
    best_step: int | None = None
    evaluations_without_improvement: int = 0
    finished: bool = False
    stopped_early: bool = False


@dataclass(frozen=True)
class EvalSet:
    name: str
    features: Features


def accumulation_windows(batch_count: int, grad_accum: int) -> list[tuple[int, int]]:
    """[start, end) micro-batch ranges of each optimizer step; the last one of an epoch may be shorter."""
    return [(start, min(start + grad_accum, batch_count)) for start in range(0, batch_count, grad_accum)]


class Trainer:
    def __init__(self, backend: Backend, task: GlueTask, train: Features, evals: list[EvalSet], plan: TrainingPlan,
                 output_dir: Path, pad_token_id: int):
        self.backend = backend
        self.task = task
        self.train_features = train
        self.train_lengths = train.lengths
        self.evals = evals
        self.plan = plan
        self.output_dir = Path(output_dir)
        self.pad_token_id = pad_token_id
        self.state = TrainerState()
        self.interrupted = False

    # -- sizes ---------------------------------------------------------------------------------
    @property
    def batches_per_epoch(self) -> int:
        return math.ceil(len(self.train_features) / self.plan.batch_size)

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.batches_per_epoch / self.plan.grad_accum)

    @property
    def total_steps(self) -> int:
        planned = self.steps_per_epoch * self.plan.epochs
        return min(planned, self.plan.max_steps) if self.plan.max_steps else planned

    @property
    def checkpoints_root(self) -> Path:
        return self.output_dir / "checkpoints"

    @property
    def best_model_dir(self) -> Path:
        return self.output_dir / "best_model"

    # -- resume --------------------------------------------------------------------------------
    def resume(self) -> Path:
        """Load the newest checkpoint (model, optimizer, schedule, scaler, RNG, data position)."""
        checkpoint = latest_checkpoint(self.checkpoints_root)
        if checkpoint is None:
            raise PaddleportError("--resume", f"no checkpoint in {self.checkpoints_root} to resume from")
        self.backend.load_model_weights(checkpoint / MODEL_SUBDIR)
        self.backend.load_training_state(checkpoint)
        self.state = TrainerState(**read_trainer_state(checkpoint))
        return checkpoint

    # -- loop ----------------------------------------------------------------------------------
    def train(self) -> TrainerState:
        """Train until the planned epochs/steps, early stopping, or the simulated kill of ``stop_after_steps``."""
        state = self.state
        while not state.finished and state.epoch < self.plan.epochs:
            self._train_epoch()
            if self.interrupted:
                break
        return state

    def _train_epoch(self) -> None:
        state, plan = self.state, self.plan
        batches = epoch_batches(self.train_lengths, plan.batch_size, plan.seed, state.epoch, plan.group_by_length)
        windows = [window for window in accumulation_windows(len(batches), plan.grad_accum)
                   if window[1] > state.batch_in_epoch]
        bar = tqdm(total=len(batches), initial=state.batch_in_epoch, disable=not plan.progress, unit="batch",
                   desc=f"{self.backend.name} epoch {state.epoch + 1}/{plan.epochs}", leave=False)
        self.backend.set_train_mode(True)
        with bar:
            for start, end in windows:
                self._train_step(batches[start:end])
                state.batch_in_epoch = end
                bar.update(end - start)
                bar.set_postfix(loss=f"{state.loss_log[-1][1]:.4f}",
                                samples_per_s=f"{state.epoch_samples / max(state.epoch_time_s, 1e-9):.1f}")
                if self._after_step(epoch_done=end == len(batches)):
                    return

    def _train_step(self, micro_batches: list[np.ndarray]) -> None:
        state = self.state
        started = time.perf_counter()
        loss_sum, samples = 0.0, 0
        for indices in micro_batches:
            batch = collate(self.train_features, indices, self.pad_token_id, self.plan.pad_to_multiple_of)
            loss = self.backend.forward_backward(batch, loss_divisor=len(micro_batches))
            if not math.isfinite(loss):
                self._diverged(loss)
            loss_sum += loss * len(indices)
            samples += len(indices)
        self.backend.optimizer_step()
        elapsed = time.perf_counter() - started
        state.global_step += 1
        state.epoch_loss_sum += loss_sum
        state.epoch_samples += samples
        state.epoch_time_s += elapsed
        state.train_time_s += elapsed
        state.train_samples += samples
        state.loss_log.append([state.global_step, loss_sum / samples])

    def _diverged(self, loss: float) -> None:
        checkpoint = latest_checkpoint(self.checkpoints_root)
        kept = f"last good checkpoint: {checkpoint}" if checkpoint else "no checkpoint was saved yet"
        raise NonFiniteLossError(f"step {self.state.global_step + 1}",
                                 f"training loss is {loss} (epoch {self.state.epoch + 1}); training stopped, {kept}")

    def _after_step(self, epoch_done: bool) -> bool:
        """Evaluate / checkpoint / stop after an optimizer step; True when the epoch loop must end."""
        state, plan = self.state, self.plan
        out_of_steps = bool(plan.max_steps) and state.global_step >= plan.max_steps
        if epoch_done or out_of_steps:
            self._finish_epoch(self._evaluate_and_track())
        elif plan.eval_steps and state.global_step % plan.eval_steps == 0:
            metrics = self._evaluate_and_track()
            if state.finished:  # early stop mid-epoch: the partial epoch still gets its row
                self._finish_epoch(metrics)
        state.finished = state.finished or out_of_steps
        if epoch_done or state.finished or (plan.save_steps and state.global_step % plan.save_steps == 0):
            self.save_checkpoint()
        if plan.stop_after_steps and state.global_step >= plan.stop_after_steps and not state.finished:
            self.interrupted = True
        return epoch_done or state.finished or self.interrupted

    def _finish_epoch(self, metrics: dict) -> None:
        state = self.state
        state.history.append({
            "epoch": state.epoch + 1,
            "train_loss": state.epoch_loss_sum / max(1, state.epoch_samples),
            "eval_loss": metrics["eval_loss"],
            "eval_accuracy": metrics.get("eval_accuracy"),
            "eval_f1": metrics.get("eval_f1"),
            f"eval_{self.plan.metric_for_best}": metrics[f"eval_{self.plan.metric_for_best}"],
            "epoch_time_s": state.epoch_time_s,
            "train_samples_per_s": state.epoch_samples / max(state.epoch_time_s, 1e-9),
            "eval_time_s": metrics["eval_time_s"],
            "learning_rate": self.backend.current_lr(),
            "global_step": state.global_step,
        })
        state.epoch += 1
        state.batch_in_epoch = 0
        state.epoch_loss_sum, state.epoch_samples, state.epoch_time_s = 0.0, 0, 0.0

    # -- evaluation ----------------------------------------------------------------------------
    def predict_logits(self, features: Features) -> tuple[float, np.ndarray]:
        """(mean loss, logits) over ``features`` in their order, dropout off."""
        self.backend.set_train_mode(False)
        losses, logits = [], []
        for indices in sequential_batches(len(features), self.plan.eval_batch_size):
            loss, batch_logits = self.backend.predict(collate(features, indices, self.pad_token_id,
                                                              self.plan.pad_to_multiple_of))
            losses.append(loss * len(indices))
            logits.append(batch_logits)
        self.backend.set_train_mode(True)
        return float(np.sum(losses) / len(features)), np.concatenate(logits)

    def evaluate(self) -> dict:
        started = time.perf_counter()
        results: dict = {"step": self.state.global_step}
        for position, eval_set in enumerate(self.evals):
            prefix = "eval_" if position == 0 else f"eval_{eval_set.name}_"
            loss, logits = self.predict_logits(eval_set.features)
            results[prefix + "loss"] = loss
            for name, value in compute_metrics(self.task, logits, eval_set.features.labels).items():
                results[prefix + name] = value
        results["eval_time_s"] = time.perf_counter() - started
        return results

    def _evaluate_and_track(self) -> dict:
        state = self.state
        results = self.evaluate()
        value = results[f"eval_{self.plan.metric_for_best}"]
        improved = state.best_metric is None or value > state.best_metric
        results["improved"] = improved
        state.evaluations.append(results)
        if improved:
            state.best_metric, state.best_step = value, state.global_step
            state.evaluations_without_improvement = 0
            with atomic_directory(self.best_model_dir) as temporary:
                self.backend.save_model(temporary)
        else:
            state.evaluations_without_improvement += 1
            patience = self.plan.early_stopping_patience
            if patience and state.evaluations_without_improvement >= patience:
                state.finished = state.stopped_early = True
        return results

    # -- checkpoints ---------------------------------------------------------------------------
    def save_checkpoint(self) -> Path:
        def write_framework_files(directory: Path) -> None:
            self.backend.save_model(directory / MODEL_SUBDIR)
            self.backend.save_training_state(directory)

        return write_checkpoint(self.checkpoints_root, self.state.global_step, asdict(self.state),
                                write_framework_files, self.plan.save_total_limit)
