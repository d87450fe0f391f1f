"""The training loop, written once for every backend: batches, accumulation, evaluation, best model,
early stopping, checkpoints and exact resume — in one process or as one rank of a data-parallel launch.

Data parallelism (see :mod:`paddleport.glue_runners.distributed`): every rank walks the same seeded global
micro-batches and computes its slice of each; the loss is weighted so that the engines' gradient average equals
the single-process gradient; evaluation shards each global eval batch and gathers the predictions, so metrics
(and therefore best-model and early-stopping decisions) are identical on all ranks. Rank 0 alone logs, shows
progress and writes files; the trainer state counts global micro-batches and optimizer steps only.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, TypeVar

import numpy as np
from tqdm.auto import tqdm

from paddleport.errors import PaddleportError
from paddleport.fsutil import atomic_directory
from paddleport.glue_runners.backends.base import Backend
from paddleport.glue_runners.checkpoints import (MODEL_SUBDIR, latest_checkpoint,
                                                 read_trainer_state, write_checkpoint)
from paddleport.glue_runners.distributed import gradient_weight, rank_slice
from paddleport.glue_runners.features import Features, collate, epoch_batches, sequential_batches
from paddleport.glue_runners.metrics import compute_metrics
from paddleport.glue_runners.training_state import read_json, rng_state_file, write_json
from paddleport.glue_runners.tasks import GlueTask

TRAIN_LOG_FILE = "train_log.jsonl"  # one JSON line per optimizer step: the globally averaged loss
Result = TypeVar("Result")


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
    batch_in_epoch: int = 0  # global micro-batches (of batch_size samples) of that epoch already consumed
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
        self.is_main = backend.is_main

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

    @property
    def train_log_path(self) -> Path:
        return self.output_dir / TRAIN_LOG_FILE

    # -- ranks ---------------------------------------------------------------------------------
    def write_on_main(self, write: Callable[[], Result], with_training_state: bool = False) -> Result | None:
        """*Collective*: let the backend gather sharded state, rank 0 runs ``write``, the others wait for it."""
        self.backend.prepare_to_save(with_training_state)
        result = write() if self.is_main else None
        self.backend.barrier()
        return result

    def _local_part(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(this rank's slice of a global batch, the indices it runs): a rank whose slice is empty still runs
        one example, with zero weight, so that every rank takes part in each collective of forward/backward."""
        local = rank_slice(indices, self.backend.rank, self.backend.world_size)
        return local, (local if len(local) else indices[:1])

    # -- resume --------------------------------------------------------------------------------
    def resume(self) -> Path:
        """Load the newest checkpoint (model, optimizer, schedule, scaler, this rank's RNG, data position)."""
        checkpoint = latest_checkpoint(self.checkpoints_root)
        if checkpoint is None:
            raise PaddleportError("--resume", f"no checkpoint in {self.checkpoints_root} to resume from")
        self.backend.load_model_weights(checkpoint / MODEL_SUBDIR)
        self.state = read_trainer_state(checkpoint, TrainerState)
        self.backend.load_training_state(checkpoint)
        self._restore_rng(checkpoint)
        if self.is_main:
            self._truncate_train_log(self.state.global_step)
        self.backend.barrier()
        return checkpoint

    def _restore_rng(self, checkpoint: Path) -> None:
        """Rank r restores ``rng_state_rank{r}.json``. A rank the checkpoint has no file for (resumed with more
        processes than it was saved with) re-derives its state from (seed + rank, step): see
        :meth:`Backend.rederive_rng`. Files of ranks beyond this run's process count are not used (with fewer
        processes each example lands on another rank anyway, so their masks cannot carry over). A checkpoint of
        an older paddleport has no such files: the backend restored rank 0's state from its pickled state."""
        rank = self.backend.rank
        own, first = checkpoint / rng_state_file(rank), checkpoint / rng_state_file(0)
        if own.is_file():
            self.backend.load_rng_state(read_json(own), own)
        elif first.is_file():
            self.backend.rederive_rng(self.plan.seed + rank, self.state.global_step, read_json(first), first)

    def _truncate_train_log(self, last_step: int) -> None:
        """Drop the lines of steps after the checkpoint (they are trained again). A torn last line (the process
        was killed while writing it) is dropped with a warning; a damaged line before it is an error."""
        if not self.train_log_path.is_file():
            return
        lines = self.train_log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        kept = []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                step = json.loads(line)["step"]
            except (ValueError, KeyError, TypeError):
                if number < len(lines):
                    raise PaddleportError(self.train_log_path, f"line {number} is not a log record") from None
                warnings.warn(f"{self.train_log_path}: dropped its torn last line {number} "
                              f"(written when the run was stopped)", stacklevel=2)
                continue
            if step <= last_step:
                kept.append(line)
        self.train_log_path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")

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
        bar = tqdm(total=len(batches), initial=state.batch_in_epoch, unit="batch", leave=False,
                   disable=not (plan.progress and self.is_main),
                   desc=f"{self.backend.name} epoch {state.epoch + 1}/{plan.epochs}")
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
        """One optimizer step over global micro-batches; gradients are synchronised on the last one only."""
        state = self.state
        started = time.perf_counter()
        totals = np.zeros(2)  # this rank's loss sum and sample count
        for position, indices in enumerate(micro_batches):
            local, run = self._local_part(indices)
            weight = gradient_weight(len(local), len(indices), len(micro_batches), self.backend.world_size)
            batch = collate(self.train_features, run, self.pad_token_id, self.plan.pad_to_multiple_of)
            with self.backend.gradient_sync(position == len(micro_batches) - 1):
                loss = self.backend.forward_backward(batch, weight)
            if len(local):
                totals += (loss * len(local), len(local))
        loss_sum, samples = (float(value) for value in self.backend.all_reduce_sum(totals))
        mean_loss = loss_sum / samples
        if not math.isfinite(mean_loss):
            self._diverged(mean_loss)
        self.backend.optimizer_step()
        elapsed = time.perf_counter() - started
        state.global_step += 1
        state.epoch_loss_sum += loss_sum
        state.epoch_samples += int(samples)
        state.epoch_time_s += elapsed
        state.train_time_s += elapsed
        state.train_samples += int(samples)
        state.loss_log.append([state.global_step, mean_loss])
        if self.is_main:
            self._append_train_log(mean_loss, int(samples))

    def _append_train_log(self, loss: float, samples: int) -> None:
        row = {"step": self.state.global_step, "epoch": self.state.epoch + 1, "loss": loss, "samples": samples,
               "lr": self.backend.current_lr(), "world_size": self.backend.world_size}
        with self.train_log_path.open("a") as stream:
            stream.write(json.dumps(row) + "\n")

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
        """*Collective*: (mean loss, logits) over ``features`` in their order, dropout off. Each rank predicts
        its slice of every eval batch; the slices are gathered, so every example counts exactly once."""
        self.backend.set_train_mode(False)
        indices, losses, logits = [], [], []
        for batch_indices in sequential_batches(len(features), self.plan.eval_batch_size):
            local, run = self._local_part(batch_indices)
            loss, batch_logits = self.backend.predict(collate(features, run, self.pad_token_id,
                                                              self.plan.pad_to_multiple_of))
            if len(local):
                indices.append(local)
                losses.append(loss * len(local))
                logits.append(batch_logits)
        self.backend.set_train_mode(True)
        shards = self.backend.all_gather_object((indices, float(np.sum(losses)), logits))
        all_indices = np.concatenate([part for shard in shards for part in shard[0]])
        all_logits = np.concatenate([part for shard in shards for part in shard[2]])
        return float(sum(shard[1] for shard in shards) / len(features)), all_logits[np.argsort(all_indices)]

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
            self.write_on_main(self._save_best_model)
        else:
            state.evaluations_without_improvement += 1
            patience = self.plan.early_stopping_patience
            if patience and state.evaluations_without_improvement >= patience:
                state.finished = state.stopped_early = True
        return results

    # -- checkpoints ---------------------------------------------------------------------------
    def _save_best_model(self) -> None:
        with atomic_directory(self.best_model_dir, replace=True) as temporary:
            self.backend.save_model(temporary)

    def save_checkpoint(self) -> Path | None:
        """*Collective*: the checkpoint directory (on rank 0; None on the others). Every rank's RNG state goes
        in, one ``rng_state_rank{r}.json`` each."""
        rng_states = self.backend.all_gather_object(self.backend.rng_state())

        def write_framework_files(directory: Path) -> None:
            self.backend.save_model(directory / MODEL_SUBDIR)
            self.backend.save_training_state(directory)
            for rank, rng_state in enumerate(rng_states):
                write_json(directory / rng_state_file(rank), rng_state)

        return self.write_on_main(lambda: write_checkpoint(self.checkpoints_root, self.state.global_step,
                                                           asdict(self.state), write_framework_files,
                                                           self.plan.save_total_limit), with_training_state=True)
