"""``run_glue``: fine-tune and evaluate a BERT-family model on a GLUE task with torch or Paddle, in one process
or under ``torchrun`` / ``python -m paddle.distributed.launch`` (data parallel, optionally sharded)."""

from __future__ import annotations

import json
import shutil
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Callable, Iterator, TypeVar

from paddleport import runtime
from paddleport.dropout_masks import MODES as DROPOUT_MASK_MODES
from paddleport.errors import PaddleportError
from paddleport.glue_runners.backends.base import AMP_MODES, Backend, BackendOptions, OptimizerConfig, make_backend
from paddleport.fsutil import atomic_directory, check_output_target, exclusive_lock
from paddleport.glue_runners.checkpoint_info import ModelDirInfo, check_head, fresh_parameters, inspect_model_dir
from paddleport.glue_runners.data import DataSource, GlueData, GlueSplit, load_glue_data
from paddleport.glue_runners.distributed import (LaunchInfo, check_distributed_options, describe_global_batch,
                                                 detect_launch, quiet_other_ranks)
from paddleport.glue_runners.features import (Features, LoadedTokenizer, find_tokenizer_dir, load_tokenizer,
                                              tokenize_split)
from paddleport.glue_runners.metrics import predictions_from_logits
from paddleport.glue_runners.reporting import peak_rss_mb, plot_curves, summary_text, write_json
from paddleport.glue_runners.tasks import GlueTask, get_task
from paddleport.glue_runners.trainer import TRAIN_LOG_FILE, EvalSet, Trainer, TrainingPlan
from paddleport.peft.methods import PeftOptions, initialised_from_model, plan_for_checkpoint, virtual_tokens

FRAMEWORKS = ("torch", "paddle")
RUN_CONFIG_FILE = "run_config.json"
METRICS_FILE = "metrics.json"
RUN_LOCK_FILE = ".run-glue.lock"  # held (fcntl.flock) by rank 0 while a run writes the output directory
RUN_ARTIFACTS = ("checkpoints", "best_model", "final_model", "predictions", "paddle_init", "torch_init",
                 METRICS_FILE, "curves.png", RUN_CONFIG_FILE, TRAIN_LOG_FILE)
Result = TypeVar("Result")
# Settings a resumed run must share with the run it continues.
RESUME_KEYS = ("framework", "task", "model", "max_train_samples", "max_length", "batch_size", "lr", "epochs",
               "max_steps", "warmup_ratio", "weight_decay", "seed", "grad_accum", "max_grad_norm", "amp",
               "group_by_length", "dropout_masks", "peft", "lora_r", "lora_alpha", "lora_dropout",
               "lora_target_modules", "lora_bias", "num_virtual_tokens", "encoder_reparameterization_type",
               "encoder_hidden_size", "prompt_tuning_init", "prompt_tuning_init_text", "adapter_config",
               "reduction_factor")


DEFAULT_MAX_LENGTH = 128


@dataclass
class GlueRunConfig(PeftOptions):
    """Every option of ``paddleport run-glue`` (see the CLI help for each)."""

    framework: str
    model: Path
    output_dir: Path
    task: str = "qqp"
    data_dir: Path | None = None
    train_file: Path | None = None
    validation_file: Path | None = None
    test_file: Path | None = None
    from_hub: bool = False
    tokenizer: Path | None = None
    cache_dir: Path | None = None  # tokenized features; default OUTPUT_DIR/cache
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    max_length: int | None = None  # None: DEFAULT_MAX_LENGTH, clamped to the model's max_position_embeddings
    batch_size: int = 32  # the global micro-batch: split between the processes of a distributed launch
    eval_batch_size: int | None = None
    lr: float = 5e-5
    epochs: int = 3
    max_steps: int | None = None
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    seed: int = 42
    grad_accum: int = 1
    max_grad_norm: float = 1.0
    amp: str = "none"
    device: str = "cpu"
    sharding: str = "none"  # none, zero1, zero2, fsdp (needs a distributed launch)
    gradient_checkpointing: bool = False
    dropout_masks: str = "native"  # each framework's own generator; "shared": the masks the other one draws
    group_by_length: bool = False
    eval_steps: int = 0
    save_steps: int = 0
    save_total_limit: int = 2
    early_stopping_patience: int = 0
    metric_for_best: str | None = None
    do_predict: bool = False
    overwrite: bool = False
    resume: bool = False
    num_threads: int | None = None
    progress: bool = True
    verbose: bool = True
    stop_after_steps: int | None = None  # testing hook: behave as if killed after this many optimizer steps

    def tokenizer_dir(self) -> Path:
        return Path(self.tokenizer or find_tokenizer_dir(self.model))

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if isinstance(value, str) and "Path" in str(item.type) and value:
                setattr(self, item.name, Path(value))

    def to_json(self) -> dict:
        return {key: str(value) if isinstance(value, Path) else value for key, value in asdict(self).items()}


# ---------------------------------------------------------------------------------------- checks


def validate_options(config: GlueRunConfig, launch: LaunchInfo | None = None) -> GlueTask:
    """Option values that need no file access (and their fit with the launch); returns the task."""
    if config.framework not in FRAMEWORKS:
        raise PaddleportError("--framework", f"unknown framework {config.framework!r}; choose torch or paddle")
    task = get_task(config.task)
    if config.amp not in AMP_MODES:
        raise PaddleportError("--amp", f"unknown mode {config.amp!r}; choose one of {', '.join(AMP_MODES)}")
    if config.dropout_masks not in DROPOUT_MASK_MODES:
        raise PaddleportError("--dropout-masks", f"unknown mode {config.dropout_masks!r}; "
                                                 f"choose one of {', '.join(DROPOUT_MASK_MODES)}")
    if config.device not in ("cpu", "gpu"):
        raise PaddleportError("--device", f"unknown device {config.device!r}; choose cpu or gpu")
    positive = {"--batch-size": config.batch_size, "--epochs": config.epochs, "--grad-accum": config.grad_accum,
                "--lr": config.lr}
    optional_positive = {"--max-length": config.max_length, "--max-train-samples": config.max_train_samples,
                         "--max-steps": config.max_steps,
                         "--max-eval-samples": config.max_eval_samples, "--eval-batch-size": config.eval_batch_size}
    for option, value in {**positive, **{k: v for k, v in optional_positive.items() if v is not None}}.items():
        if value <= 0:
            raise PaddleportError(option, f"must be positive, got {value}")
    if not 0 <= config.warmup_ratio < 1:
        raise PaddleportError("--warmup-ratio", f"must be in [0, 1), got {config.warmup_ratio}")
    if config.overwrite and config.resume:
        raise PaddleportError("--resume", "cannot be combined with --overwrite")
    if config.metric_for_best and config.metric_for_best not in _task_metrics(task):
        raise PaddleportError("--metric-for-best", f"{config.metric_for_best!r} is not a metric of {task.name} "
                                                   f"({', '.join(_task_metrics(task))})")
    check_distributed_options(config.framework, launch or detect_launch(), config.sharding, config.device,
                              config.amp, config.batch_size)
    config.peft_settings()
    return task


def _task_metrics(task: GlueTask) -> tuple[str, ...]:
    if task.is_regression:
        return ("pearson", "spearmanr", "corr")
    return ("accuracy",) + ((task.main_metric, "f1") if task.main_metric == "acc_and_f1" else
                            (task.main_metric,) if task.main_metric != "accuracy" else ())


def prepare_output_dir(config: GlueRunConfig) -> None:
    """Refuse a directory that holds another run unless --overwrite (clears it) or --resume (same settings)."""
    check_output_dir(config)
    if not config.resume:
        clear_output_dir(config)


def check_output_dir(config: GlueRunConfig) -> None:
    """The checks of :func:`prepare_output_dir`, without touching the directory."""
    out = Path(config.output_dir)
    run_config = out / RUN_CONFIG_FILE
    if config.resume:
        if not run_config.is_file():
            raise PaddleportError("--resume", f"{out} holds no run to resume ({RUN_CONFIG_FILE} missing)")
        _check_resume_settings(config, json.loads(run_config.read_text()), run_config)
    elif run_config.is_file() and not config.overwrite:
        raise PaddleportError(out, "already holds another run; "
                                   "pass --overwrite to replace it or --resume to continue it")
    if not config.resume:  # what clear_output_dir removes must hold nothing this run reads
        reads_from = [config.model, config.tokenizer, config.data_dir, config.train_file, config.validation_file,
                      config.test_file]
        for name in RUN_ARTIFACTS:
            check_output_target(out / name, reads_from)


@contextmanager
def output_dir_lock(config: GlueRunConfig, launch: LaunchInfo) -> Iterator[None]:
    """Rank 0 holds an exclusive lock on ``OUTPUT_DIR/.run-glue.lock`` for the whole run: a second run into the
    same directory is refused (one line, exit 2) before it reads or changes anything there. The kernel releases
    the lock when the process ends, also on kill -9. An output directory created only to hold the lock is
    removed again if the run leaves it empty."""
    if not launch.is_main:
        yield
        return
    out = Path(config.output_dir)
    if out.exists() and not out.is_dir():
        raise PaddleportError("--output-dir", f"{out} exists and is not a directory")
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        with exclusive_lock(out / RUN_LOCK_FILE, out):
            yield
    finally:
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()


def clear_output_dir(config: GlueRunConfig) -> None:
    """Remove a previous run's artifacts (the feature cache stays)."""
    out = Path(config.output_dir)
    for name in RUN_ARTIFACTS:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    out.mkdir(parents=True, exist_ok=True)


def _check_resume_settings(config: GlueRunConfig, previous: dict, where: Path) -> None:
    current = config.to_json()
    # a setting added after the previous run was written (a new PEFT method's option) had its default there
    defaults = GlueRunConfig(framework=config.framework, model=config.model, output_dir=config.output_dir).to_json()
    previous = {key: previous.get(key, defaults.get(key)) for key in RESUME_KEYS}
    changed = [key for key in RESUME_KEYS if previous.get(key) != current.get(key)]
    if changed:
        details = ", ".join(f"{key} {previous.get(key)!r} -> {current.get(key)!r}" for key in changed)
        raise PaddleportError("--resume", f"settings differ from the run in {where}: {details}")


# ---------------------------------------------------------------------------------------- pieces


def load_run_data(config: GlueRunConfig, task: GlueTask) -> GlueData:
    source = DataSource(config.data_dir, config.train_file, config.validation_file, config.test_file,
                        config.from_hub, config.cache_dir)
    data = load_glue_data(task, source, with_test=config.do_predict)
    return GlueData(train=data.train.head(config.max_train_samples),
                    evals=[split.head(config.max_eval_samples) for split in data.evals], tests=data.tests)


def tokenize_all(data: GlueData, tokenizer: LoadedTokenizer, config: GlueRunConfig
                 ) -> tuple[Features, list[EvalSet], list[tuple[GlueSplit, Features]]]:
    cache_dir = config.cache_dir or Path(config.output_dir) / "cache"

    def tokenize(split: GlueSplit) -> Features:
        return tokenize_split(split, tokenizer, config.max_length, cache_dir)

    return (tokenize(data.train), [EvalSet(split.name, tokenize(split)) for split in data.evals],
            [(split, tokenize(split)) for split in data.tests])


def load_backend_model(backend: Backend, info: ModelDirInfo, num_labels: int, seed: int, work_dir: Path) -> Backend:
    """Load the model into ``backend``; parameters the checkpoint lacks (a new head) are set from the
    shared seeded numpy initialisation, so both frameworks start from the same weights."""
    backend.seed(seed)
    backend.load_model(info.path, num_labels, work_dir)
    kept = initialised_from_model(backend.peft)  # e.g. a TEXT-initialised prompt: the model's word embeddings
    shapes = {name: shape for name, shape in backend.parameter_shapes().items() if name not in kept}
    backend.set_parameters(fresh_parameters(shapes, info, seed))
    return backend


def main_rank_first(backend: Backend, action: Callable[[], Result]) -> Result:
    """*Collective*: rank 0 runs ``action`` (filling caches, converting checkpoints), then the other ranks do."""
    if backend.is_main:
        result = action()
    backend.barrier()
    if not backend.is_main:
        result = action()
    return result


def load_model_on_ranks(backend: Backend, info: ModelDirInfo, num_labels: int, seed: int, out: Path) -> None:
    """Every rank loads the model; a conversion goes to a work directory of its own (no two processes write
    the same files), rank 0's into the output directory."""
    work_dir = out if backend.is_main else out / "cache" / f"rank{backend.rank}"
    load_backend_model(backend, info, num_labels, seed, work_dir)
    if backend.world_size > 1:
        backend.seed(seed + backend.rank)  # different dropout masks on different ranks


def build_plan(config: GlueRunConfig, task: GlueTask) -> TrainingPlan:
    return TrainingPlan(
        batch_size=config.batch_size, epochs=config.epochs, grad_accum=config.grad_accum, max_steps=config.max_steps,
        eval_batch_size=config.eval_batch_size or 2 * config.batch_size, eval_steps=config.eval_steps,
        save_steps=config.save_steps, save_total_limit=config.save_total_limit,
        early_stopping_patience=config.early_stopping_patience,
        metric_for_best=config.metric_for_best or task.main_metric, group_by_length=config.group_by_length,
        pad_to_multiple_of=8 if config.device == "gpu" and config.amp != "none" else 1, seed=config.seed,
        progress=config.progress, stop_after_steps=config.stop_after_steps)


def say(backend: Backend, config: GlueRunConfig, text: str) -> None:
    if config.verbose and backend.is_main:
        print(text, flush=True)


def write_predictions(trainer: Trainer, task: GlueTask, tests: list[tuple[GlueSplit, Features]], out_dir: Path
                      ) -> list[str]:
    """*Collective*: GLUE submission files (``index<TAB>prediction``; label strings, or scores for STS-B),
    written by rank 0."""
    written = []
    for position, (split, features) in enumerate(tests):
        _, logits = trainer.predict_logits(features)
        predictions = predictions_from_logits(task, logits)
        names = task.submission_names or (task.name,)
        path = out_dir / f"{names[min(position, len(names) - 1)]}.tsv"
        values = [f"{float(value):.3f}" for value in predictions] if task.is_regression else \
            [task.labels[int(value)] for value in predictions]
        rows = "".join(f"{index}\t{value}\n" for index, value in zip(split.ids, values))
        if trainer.is_main:
            out_dir.mkdir(parents=True, exist_ok=True)
            path.write_text("index\tprediction\n" + rows)
        written.append(str(path))
    return written


def build_metrics(config: GlueRunConfig, task: GlueTask, trainer: Trainer, backend: Backend,
                  predictions: list[str]) -> dict:
    """*Collective* (peak memory of every rank)."""
    state = trainer.state
    memory = backend.all_gather_object((peak_rss_mb(), backend.peak_device_memory_mb()))
    best = None
    if state.best_metric is not None:
        best = {"metric": trainer.plan.metric_for_best, "value": state.best_metric, "step": state.best_step,
                "model_dir": str(trainer.best_model_dir)}
    return {
        "framework": config.framework,
        "task": task.name,
        "model": str(config.model),
        "device": config.device,
        "amp": config.amp,
        "dropout_masks": config.dropout_masks,
        "peft": config.peft,
        "trainable_parameters": backend.trainable_parameter_count(),
        "world_size": backend.world_size,
        "sharding": config.sharding,
        "per_device_batch_size": config.batch_size // backend.world_size,
        "global_batch_size": config.batch_size * config.grad_accum,
        "train_samples": len(trainer.train_features),
        "eval_samples": len(trainer.evals[0].features),
        "epochs": state.history,
        "evaluations": state.evaluations,
        "global_steps": state.global_step,
        "total_train_time_s": state.train_time_s,
        "train_samples_per_s": state.train_samples / max(state.train_time_s, 1e-9),
        "peak_memory_mb": memory[0][0],  # rank 0's; every rank's in the *_per_rank lists
        "peak_device_memory_mb": memory[0][1],
        "peak_memory_mb_per_rank": [rss for rss, _ in memory],
        "peak_device_memory_mb_per_rank": [device for _, device in memory],
        "best": best,
        "final_eval": state.evaluations[-1] if state.evaluations else None,
        "stopped_early": state.stopped_early,
        "final_model_dir": str(Path(config.output_dir) / "final_model"),
        "predictions": predictions,
        "config": config.to_json(),
        "runtime": runtime.active().as_json(),  # CPU model, vendor, ISA flags and the settings applied
    }


# ---------------------------------------------------------------------------------------- entry point


def run_glue(config: GlueRunConfig) -> dict:
    """Fine-tune ``config.model`` on ``config.task`` and evaluate it; returns what ``metrics.json`` holds.

    All bad input is reported as :class:`PaddleportError` before training starts. A run stopped by
    ``stop_after_steps`` returns ``{"status": "interrupted", ...}`` and writes no final reports.
    """
    launch = detect_launch()
    with quiet_other_ranks(launch):
        return _run_glue(config, launch)


def _run_glue(config: GlueRunConfig, launch: LaunchInfo) -> dict:
    task = validate_options(config, launch)
    info = inspect_model_dir(config.model)
    check_head(info, task.num_labels, task.name)
    config = replace(config, max_length=info.fit_max_length(config.max_length, DEFAULT_MAX_LENGTH,
                                                            reserved=virtual_tokens(config.peft_settings())))
    if config.peft_settings() is not None:  # what the method needs of the model: checked before training
        plan_for_checkpoint(info.config, task.num_labels, config.peft_settings())
    if config.gradient_checkpointing and config.framework == "torch":
        check_torch_checkpointing(info.config)
    data = load_run_data(config, task)
    tokenizer = load_tokenizer(config.tokenizer_dir())
    with output_dir_lock(config, launch):
        check_output_dir(config)
        # threads and CPU settings: the entry point's runtime.setup, or one for this call, restored after it
        with runtime.ensure(config.device, config.num_threads, (config.framework,)):
            return _train_and_report(config, launch, task, info, data, tokenizer)


def check_torch_checkpointing(model_config: dict) -> None:
    """transformers' ALBERT and SqueezeBERT cannot checkpoint (``supports_gradient_checkpointing`` False)."""
    import transformers

    from paddleport.peft.methods import sequence_classification_class

    name = sequence_classification_class(model_config)
    if not getattr(transformers, name).supports_gradient_checkpointing:
        raise PaddleportError("--gradient-checkpointing", f"transformers' {name} does not support it (paddleport's "
                                                          "Paddle model does: --framework paddle)")


def _train_and_report(config: GlueRunConfig, launch: LaunchInfo, task: GlueTask, info: ModelDirInfo,
                      data: GlueData, tokenizer: LoadedTokenizer) -> dict:
    backend = start_backend(config, launch)
    trainer, tests = build_trainer(config, task, info, data, tokenizer, backend)
    if config.resume:
        trainer.resume()
    elif backend.is_main:
        write_json(Path(config.output_dir) / RUN_CONFIG_FILE, config.to_json())
    trainer.train()
    if trainer.interrupted:
        result = {"status": "interrupted", "framework": config.framework, "global_steps": trainer.state.global_step}
    else:
        result = finish_run(config, task, trainer, backend, tests)
    backend.shutdown()
    return result


def start_backend(config: GlueRunConfig, launch: LaunchInfo) -> Backend:
    """The backend (it joins the launch's process group); rank 0 clears the output directory once every rank
    has checked it; the global batch is announced."""
    options = BackendOptions(config.device, config.amp, config.gradient_checkpointing,
                             launch=launch, sharding=config.sharding, dropout_masks=config.dropout_masks,
                             peft=config.peft_settings())
    backend = make_backend(config.framework, options)  # checks the device
    backend.barrier()
    if backend.is_main and not config.resume:
        clear_output_dir(config)
    backend.barrier()
    sharding = f", sharding {config.sharding}" if config.sharding != "none" else ""
    say(backend, config, f"{config.framework}: "
                         f"{describe_global_batch(config.batch_size, config.grad_accum, backend.world_size)}{sharding}")
    return backend


def build_trainer(config: GlueRunConfig, task: GlueTask, info: ModelDirInfo, data: GlueData,
                  tokenizer: LoadedTokenizer, backend: Backend) -> tuple[Trainer, list[tuple[GlueSplit, Features]]]:
    """Model (wrapped for parallel training by build_optimizer), features, optimizer; and the test sets."""
    out = Path(config.output_dir)
    load_model_on_ranks(backend, info, task.num_labels, config.seed, out)
    train, evals, tests = main_rank_first(backend, lambda: tokenize_all(data, tokenizer, config))
    trainer = Trainer(backend, task, train, evals, build_plan(config, task), out, tokenizer.pad_token_id)
    backend.build_optimizer(OptimizerConfig(
        lr=config.lr, weight_decay=config.weight_decay, warmup_steps=int(config.warmup_ratio * trainer.total_steps),
        total_steps=trainer.total_steps, max_grad_norm=config.max_grad_norm))
    return trainer, tests


def finish_run(config: GlueRunConfig, task: GlueTask, trainer: Trainer, backend: Backend,
               tests: list[tuple[GlueSplit, Features]]) -> dict:
    """Final model, predictions (with the best model), metrics.json, curves and the printed summary."""
    out = Path(config.output_dir)

    def save_final_model() -> None:
        with atomic_directory(out / "final_model", replace=True) as temporary:
            backend.save_model(temporary)

    trainer.write_on_main(save_final_model)
    predictions = []
    if tests:
        if trainer.best_model_dir.is_dir():
            backend.load_model_weights(trainer.best_model_dir)
        predictions = write_predictions(trainer, task, tests, out / "predictions")
    metrics = build_metrics(config, task, trainer, backend, predictions) | {"status": "completed"}
    trainer.write_on_main(lambda: write_reports(config, trainer, metrics))
    return metrics


def write_reports(config: GlueRunConfig, trainer: Trainer, metrics: dict) -> None:
    out = Path(config.output_dir)
    write_json(out / METRICS_FILE, metrics)
    if trainer.state.history:
        plot_curves(trainer.state.history, trainer.state.loss_log, trainer.steps_per_epoch, out / "curves.png")
    if config.verbose:
        print(summary_text(metrics))

