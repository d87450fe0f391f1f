"""Inference latency of the same checkpoints in torch and Paddle, on CPU or GPU, in float32 and half precision.

Paths (one row each per model, dtype, batch size and sequence length):

- ``torch eager``: transformers in eval mode under ``inference_mode``; for a half dtype the weights are cast
  (``model.to(torch.bfloat16)``) and, as a second row, ``torch autocast`` keeps float32 weights.
- ``paddle eager``: our Paddle models; half dtypes need Paddle kernels on the device, otherwise the row is
  skipped with the reason (Paddle has no CPU bfloat16 matmul).
- ``paddle inference``: the exported static program (``paddleport export``) through ``paddle.inference``
  with IR optimisation, oneDNN on CPU (``enable_mkldnn_bfloat16`` for bfloat16) and the GPU passes on GPU.
- ``onnxruntime torch.onnx``: the transformers model exported by ``torch.onnx.export`` (dynamo exporter, dynamic
  batch and sequence), run by ONNX Runtime (CPUExecutionProvider with every graph optimisation and the bench's
  threads as intra-op threads; CUDAExecutionProvider on GPU).  float32 only.
- ``onnxruntime paddle2onnx``: the exported Paddle program converted by ``paddle2onnx``, run the same way.

Each path runs in a fresh child process that imports only its own framework and applies only its own runtime
settings (``BenchOptions.isolate``, the default): in one process, a torch row ran about 25 % slower once Paddle,
its MKL / OpenMP runtime and paddleport's kernels were loaded beside it, and every row's peak RSS held the
models of the rows before it.  ``isolate=False`` (``bench --in-process``) times everything in this process:
quicker to start, for smoke tests, not for ratios.

Each row: warm-up, then ``iters`` timed calls with device synchronisation; median and p90 latency,
samples/s, peak memory (process RSS on CPU, max allocated on GPU), threads, device name, and the max |Δ| of
its output (logits, or the last hidden state of a base model) against torch float32 on the same batch.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from paddleport import runtime
from paddleport.core.configuration import max_input_length
from paddleport.core.tensor_io import is_paddle_checkpoint
from paddleport.errors import PaddleportError
from paddleport.parity import devices
from paddleport.parity.loading import CheckpointPair, architecture_of, read_config
from paddleport.parity.onnx_runtime import onnxruntime_supports
from paddleport.parity.metrics import difference, json_number
from paddleport.parity.outputs import HEAD_OUTPUTS, class_layout
from paddleport.registry import input_names_of, model_inputs

MAX_ROW_SECONDS = 60.0  # stop timing a row after this long (at least MIN_ITERS calls)
MIN_ITERS = 3
DEFAULT_SEQ_LENS = (32, 128, 512)


@dataclass(frozen=True)
class BenchOptions:
    device: str = "cpu"
    dtypes: tuple[str, ...] = ("float32",)
    batch_sizes: tuple[int, ...] = (1, 16, 32)
    seq_lens: tuple[int, ...] | None = None  # None: DEFAULT_SEQ_LENS up to the models' max_position_embeddings
    iters: int = 10
    warmup: int = 2
    threads: int | None = None
    end_to_end: int = 0
    paths: tuple[str, ...] = ("torch eager", "torch autocast", "paddle eager", "paddle inference",
                              "onnxruntime torch.onnx", "onnxruntime paddle2onnx")
    seed: int = 0
    isolate: bool = True  # each path in its own process (see the module docstring)


@dataclass
class BenchRow:
    framework: str
    mode: str
    model: str
    architecture: str
    dtype: str
    batch_size: int
    seq_len: int
    device: str
    device_name: str
    threads: int
    scenario: str = "forward"
    median_ms: float | None = None
    p90_ms: float | None = None
    samples_per_s: float | None = None
    peak_mem_mb: float | None = None
    max_abs_diff: float | None = None  # null in JSON when an output value is non-finite (see non_finite)
    non_finite: int = 0  # output positions where either side is NaN/inf, and the first one's index
    first_non_finite: list[int] | None = None
    iters: int = 0
    skipped: str | None = None
    runtime: dict | None = None  # the CPU (model, vendor, ISA flags) and the settings applied (paddleport.runtime)

    @property
    def path(self) -> str:
        return f"{self.framework} {self.mode}"


@dataclass
class BenchModel:
    """One checkpoint in both layouts (the missing one converted into a temporary directory)."""

    name: str
    architecture: str
    model_type: str
    hf_dir: Path
    paddle_dir: Path
    config: dict[str, Any]
    export_dir: Path | None = None
    onnx_files: dict[str, Path] = field(default_factory=dict)  # ONNX exporter -> file

    @property
    def max_positions(self) -> int:
        """The longest input the model takes (RoBERTa's positions start after the padding index)."""
        return max_input_length(self.config)

    @property
    def token_types(self) -> int:
        return int(self.config.get("type_vocab_size", 2))


@dataclass
class BenchResult:
    rows: list[BenchRow]
    options: BenchOptions
    speedups: list[dict] = field(default_factory=list)
    runtime: dict | None = None
    notes: list[str] = field(default_factory=list)  # what was left out, and why (one line each)

    def as_json(self) -> dict:
        return {"options": asdict(self.options), "runtime": self.runtime, "notes": self.notes,
                "rows": [asdict(row) for row in self.rows], "squeezebert_speedup_over_bert": self.speedups}

    def markdown(self) -> str:
        text = "\n".join([runtime.describe(self.runtime), *self.notes, "", format_markdown(self.rows)])
        if self.speedups:
            text += "\n\n" + format_speedups(self.speedups)
        return text

    def plot(self, path: str | Path) -> Path:
        return plot_latency(self.rows, path)


# --- entry point -------------------------------------------------------------------------------

def run_benchmark(model_dirs: Sequence[str | Path], options: BenchOptions = BenchOptions()) -> BenchResult:
    """Benchmark every model on every path, dtype and shape in ``options``."""
    options = _fit_seq_lens(options, [read_config(model_dir) for model_dir in model_dirs])
    _check_options(options)
    devices.require_device(options.device, _frameworks(options))
    # threads and CPU settings: the entry point's runtime.setup, or one for this call, restored after it
    with runtime.ensure(options.device, options.threads, _frameworks(options)) as settings:
        options, notes = _without_emulated_bfloat16(options, settings.cpu)
        rows: list[BenchRow] = []
        with tempfile.TemporaryDirectory(prefix="paddleport-bench-") as workdir:
            for index, model_dir in enumerate(model_dirs):
                model = prepare_model(model_dir, Path(workdir) / str(index))
                rows.extend(benchmark_model(model, options, settings.threads, Path(workdir) / str(index)))
                if options.end_to_end:
                    rows.extend(benchmark_end_to_end(model, options, settings.threads, Path(workdir) / str(index)))
        record = settings.as_json()
    for row in rows:
        row.runtime = row.runtime or record  # a row timed in its own process carries that process's settings
    return BenchResult(rows, options, squeezebert_speedups(rows), record, notes)


def _without_emulated_bfloat16(options: BenchOptions, cpu: runtime.CpuInfo) -> tuple[BenchOptions, list[str]]:
    """On a CPU without bfloat16 arithmetic, bfloat16 is emulated: those rows would time the emulation."""
    if options.device != "cpu" or "bfloat16" not in options.dtypes or cpu.native_bf16:
        return options, []
    note = (f"bfloat16 rows skipped: {cpu.model_name} ({cpu.isa}) has no native bfloat16 (no AVX-512 BF16 or "
            "AMX-BF16), so every framework would time a slow emulation")
    kept = tuple(dtype for dtype in options.dtypes if dtype != "bfloat16")
    return replace(options, dtypes=kept), [note]


def _fit_seq_lens(options: BenchOptions, configs: list[dict[str, Any]]) -> BenchOptions:
    """Sequence lengths the models can take: the defaults are clamped to the largest max_position_embeddings
    (a model with fewer positions skips the longer rows); a length the user asked for must fit every model."""
    limits = [max_input_length(config) for config in configs]
    if options.seq_lens is None:
        fitting = tuple(length for length in DEFAULT_SEQ_LENS if length <= max(limits))
        return replace(options, seq_lens=fitting or (max(limits),))
    if max(options.seq_lens) > min(limits):
        raise PaddleportError("--seq-lens", f"{max(options.seq_lens)} exceeds max_position_embeddings "
                                            f"{min(limits)} of a model given")
    return options


def _check_options(options: BenchOptions) -> None:
    for dtype in options.dtypes:
        if dtype not in devices.DTYPES:
            raise PaddleportError("--dtypes", f"unknown dtype {dtype!r} (choose from {', '.join(devices.DTYPES)})")
    if min(options.batch_sizes) < 1 or min(options.seq_lens) < 2:
        raise PaddleportError("--batch-sizes/--seq-lens", "batch sizes must be >= 1 and sequence lengths >= 2")
    if options.iters < 1 or options.warmup < 0 or options.end_to_end < 0:
        raise PaddleportError("--iters/--warmup/--end-to-end", "iters must be >= 1, warmup and N >= 0")


def _frameworks(options: BenchOptions) -> tuple[str, ...]:
    """torch and Paddle as the paths need them (ONNX Runtime rows are skipped with a reason where it cannot run)."""
    return tuple(dict.fromkeys(path.split()[0] for path in options.paths if not path.startswith("onnxruntime")))


# --- models ------------------------------------------------------------------------------------

def prepare_model(model_dir: str | Path, workdir: Path) -> BenchModel:
    """Find the layout of ``model_dir`` and convert it to the other one (HF <-> Paddle) under ``workdir``."""
    from paddleport.convert import convert_checkpoint

    model_dir = Path(model_dir)
    config = read_config(model_dir)
    architecture = architecture_of(config, model_dir)
    converted = workdir / "converted"
    if is_paddle_checkpoint(model_dir):
        convert_checkpoint(model_dir, converted, to="hf", progress=False)
        hf_dir, paddle_dir = converted, model_dir
    else:
        convert_checkpoint(model_dir, converted, to="paddle", progress=False)
        hf_dir, paddle_dir = model_dir, converted
    return BenchModel(model_dir.name, architecture, config.get("model_type", ""), hf_dir, paddle_dir, config)


def ensure_export(model: BenchModel, workdir: Path) -> Path:
    from paddleport.parity.export import export_model

    if model.export_dir is None:
        model.export_dir = Path(export_model(model.paddle_dir, workdir / f"{model.name}-export").out_dir)
    return model.export_dir


def ensure_onnx(model: BenchModel, exporter: str, torch_model, workdir: Path) -> Path:
    """The model as ONNX from ``exporter`` ("torch.onnx" or "paddle2onnx"), written once under ``workdir``."""
    from paddleport.parity.export import load_eager, save_static
    from paddleport.parity.onnx_runtime import export_paddle_onnx, export_torch_onnx

    if exporter not in model.onnx_files:
        path = workdir / f"{model.name}-{exporter}.onnx"
        if exporter == "torch.onnx":
            head = class_layout(model.config, model.architecture).head
            output_name = next(iter(HEAD_OUTPUTS[head])) if head else "last_hidden_state"  # what main_output picks
            model.onnx_files[exporter] = export_torch_onnx(torch_model, path, output_name)
        else:  # a program traced for ONNX (tanh-GELU as its formula), as `export --format onnx` converts
            program_dir = workdir / f"{model.name}-onnx-program"
            program_dir.mkdir(parents=True, exist_ok=True)
            save_static(load_eager(model.paddle_dir, model.architecture), program_dir, for_onnx=True)
            model.onnx_files[exporter] = export_paddle_onnx(program_dir, path)
    return model.onnx_files[exporter]


# --- runners: callables from a numpy batch to the main output as float32 numpy -------------------

Runner = Callable[[dict[str, np.ndarray]], np.ndarray]


@dataclass
class PathSpec:
    """One benchmarked path, or why it is skipped."""

    framework: str
    mode: str
    dtype: str
    skipped: str | None = None

    @property
    def autocast(self) -> bool:
        return self.mode == "autocast"


def main_output(output) -> Any:
    """logits, the start logits of a span head, the masked-LM logits of a pre-training model, or the last hidden
    state of a base model."""
    for name in ("logits", "start_logits", "prediction_logits", "last_hidden_state"):
        if getattr(output, name, None) is not None:
            return getattr(output, name)
    raise ValueError(f"{type(output).__name__} has no logits or hidden state")


def torch_runner(model, device: str, dtype: str, autocast: bool) -> Runner:
    import torch

    target = devices.torch_device(device)
    if dtype != "float32" and not autocast:
        model = copy.deepcopy(model).to(dtype=getattr(torch, dtype))
    model = model.to(target).eval()
    input_names = input_names_of(model.config)

    def run(batch: dict[str, np.ndarray]) -> np.ndarray:
        inputs = {key: torch.from_numpy(value).to(target) for key, value in model_inputs(batch, input_names).items()}
        with torch.inference_mode(), torch.autocast(target, dtype=getattr(torch, dtype), enabled=autocast):
            output = main_output(model(**inputs))
        return output.float().cpu().numpy()

    return run


def paddle_eager_runner(paddle_dir: Path, architecture: str, device: str, dtype: str) -> Runner:
    import paddle

    import paddleport.models as models

    devices.set_paddle_device(device)
    model = getattr(models, architecture).from_pretrained(paddle_dir)
    if dtype != "float32":
        model.to(dtype=dtype)
    model.eval()

    def run(batch: dict[str, np.ndarray]) -> np.ndarray:
        with paddle.no_grad():
            inputs = model_inputs(batch, model.input_names)
            output = main_output(model(**{key: paddle.to_tensor(value) for key, value in inputs.items()}))
        return output.astype("float32").numpy()

    return run


def paddle_inference_runner(export_dir: Path, device: str, dtype: str, threads: int) -> Runner:
    from paddleport.parity.inference import Predictor, PredictorOptions

    predictor = Predictor(export_dir, PredictorOptions(device=device, dtype=dtype, threads=threads))
    return lambda batch: predictor(batch)[0]


def onnxruntime_runner(path: Path, device: str, threads: int) -> Runner:
    from paddleport.parity.onnx_runtime import OnnxSession

    session = OnnxSession(path, device=device, threads=threads)
    return lambda batch: session(batch)[0]


def path_specs(model: BenchModel, options: BenchOptions, dtype: str) -> list[PathSpec]:
    """Every path of ``options.paths`` for ``dtype``, each with the reason it is skipped, if it is."""
    device = options.device
    torch_reason = devices.torch_supports(dtype, device)
    # Paddle is asked (and imported) only when a Paddle path is selected: torch-only GPU runs need no Paddle build
    runs_paddle = any(path.startswith("paddle") for path in options.paths)
    paddle_reason = devices.paddle_eager_supports(dtype, device) if runs_paddle else "no Paddle path selected"
    inference_reason = None if (device == "gpu" or dtype != "float16") else \
        "paddle.inference on CPU has no float16 kernels (oneDNN runs float32 and bfloat16)"
    mode = "eager" if dtype == "float32" else f"eager ({dtype} weights)"
    onnx_reason = onnxruntime_supports(device) or (
        None if dtype == "float32" else "the ONNX rows run the float32 exports (no half-precision export)")
    specs = [PathSpec("torch", mode, dtype, torch_reason), PathSpec("torch", "autocast", dtype, torch_reason),
             PathSpec("paddle", mode, dtype, paddle_reason), PathSpec("paddle", "inference", dtype, inference_reason),
             *(PathSpec("onnxruntime", exporter, dtype, onnx_reason) for exporter in ("torch.onnx", "paddle2onnx"))]
    selected = [spec for spec in specs if _path_key(spec) in options.paths]
    # autocast at float32 would repeat the eager row
    return [spec for spec in selected if not (spec.autocast and dtype == "float32")]


def prepare_path(model: BenchModel, spec: PathSpec, torch_model, workdir: Path) -> None:
    """Write the files ``spec`` runs from, once per model: the exported program, an ONNX file."""
    if spec.framework == "paddle" and spec.mode == "inference":
        ensure_export(model, workdir)
    elif spec.framework == "onnxruntime":
        ensure_onnx(model, spec.mode, torch_model, workdir)


def build_runner(model: BenchModel, spec: PathSpec, device: str, threads: int, torch_model=None) -> Runner:
    """The runner of a prepared path (torch: ``torch_model``, else the model read from ``model.hf_dir``)."""
    if spec.framework == "torch":
        torch_model = torch_model if torch_model is not None else load_bench_torch_model(model)
        return torch_runner(torch_model, device, spec.dtype, spec.autocast)
    if spec.framework == "paddle" and spec.mode == "inference":
        return paddle_inference_runner(model.export_dir, device, spec.dtype, threads)
    if spec.framework == "paddle":
        return paddle_eager_runner(model.paddle_dir, model.architecture, device, spec.dtype)
    return onnxruntime_runner(model.onnx_files[spec.mode], device, threads)


def load_bench_torch_model(model: BenchModel):
    from paddleport.parity.loading import load_torch_model

    return load_torch_model(CheckpointPair(model.hf_dir, model.paddle_dir, model.architecture, model.config))


def _path_key(spec: PathSpec) -> str:
    return f"{spec.framework} {spec.mode.split()[0]}"


# --- timing ------------------------------------------------------------------------------------

def synthetic_batch(batch_size: int, seq_len: int, vocab_size: int, seed: int,
                    token_types: int = 2) -> dict[str, np.ndarray]:
    """Seeded token ids, full attention, the second half of each row as segment B (segment A only for a model
    with one token type, as RoBERTa's tokenizer gives)."""
    rng = np.random.default_rng(seed)
    segment_b = (np.arange(seq_len)[None, :] >= seq_len // 2) & (token_types > 1)
    return {
        "input_ids": rng.integers(1000, min(vocab_size, 30000), size=(batch_size, seq_len), dtype=np.int64),
        "attention_mask": np.ones((batch_size, seq_len), dtype=np.int64),
        "token_type_ids": segment_b.astype(np.int64).repeat(batch_size, 0),
    }


@dataclass
class Timing:
    latencies_s: list[float]
    peak_mem_mb: float | None
    output: np.ndarray
    runtime: dict | None = None  # the settings of the process that timed it, when that was a child of its own

    @property
    def median_ms(self) -> float:
        return float(np.median(self.latencies_s) * 1e3)

    @property
    def p90_ms(self) -> float:
        return float(np.percentile(self.latencies_s, 90) * 1e3)


def time_runner(run: Runner, batch: dict[str, np.ndarray], *, framework: str, device: str, iters: int,
                warmup: int) -> Timing:
    """Warm up, then time ``iters`` synchronised calls (stopping after MAX_ROW_SECONDS, at least MIN_ITERS)."""
    output = None
    for _ in range(warmup):
        output = run(batch)
    devices.synchronize(framework, device)
    if device == "gpu":
        devices.reset_peak_gpu_memory(framework)
    latencies: list[float] = []
    with devices.PeakRss() as rss:
        started = time.perf_counter()
        while len(latencies) < iters:
            begin = time.perf_counter()
            output = run(batch)
            devices.synchronize(framework, device)
            latencies.append(time.perf_counter() - begin)
            if len(latencies) >= MIN_ITERS and time.perf_counter() - started > MAX_ROW_SECONDS:
                break
    peak = devices.peak_gpu_memory_mb(framework) if device == "gpu" else rss.peak_mb
    return Timing(latencies, peak, output)


def benchmark_model(model: BenchModel, options: BenchOptions, threads: int, workdir: Path) -> list[BenchRow]:
    """All rows of one model: each dtype and path over the batch-size x sequence-length grid."""
    torch_model = load_bench_torch_model(model)
    reference_run = torch_runner(torch_model, options.device, "float32", autocast=False)
    shapes = [(b, s) for b in options.batch_sizes for s in options.seq_lens]
    batches = {shape: synthetic_batch(*shape, int(model.config["vocab_size"]), options.seed, model.token_types)
               for shape in shapes}
    references = {shape: reference_run(batch) for shape, batch in batches.items() if shape[1] <= model.max_positions}
    rows = []
    for dtype in options.dtypes:
        for spec in path_specs(model, options, dtype):
            rows.extend(_benchmark_path(model, spec, torch_model, batches, references, options, threads, workdir))
    return rows


def _benchmark_path(model: BenchModel, spec: PathSpec, torch_model, batches: dict, references: dict,
                    options: BenchOptions, threads: int, workdir: Path) -> list[BenchRow]:
    timings: dict[tuple, Timing] = {}
    if not spec.skipped:
        fitting = {shape: batch for shape, batch in batches.items() if shape in references}
        timings = time_path(model, spec, torch_model, fitting, options, threads, workdir)
    rows = []
    for batch_size, seq_len in batches:
        row = _row(model, spec, batch_size, seq_len, options.device, threads)
        if spec.skipped or (batch_size, seq_len) not in references:
            row.skipped = spec.skipped or f"seq_len {seq_len} > max_position_embeddings {model.max_positions}"
        else:
            timing = timings[(batch_size, seq_len)]
            _fill(row, timing, batch_size, references[(batch_size, seq_len)])
            row.runtime = timing.runtime
        rows.append(row)
    return rows


END_TO_END = ("end-to-end",)  # the key of an end-to-end timing, beside the (batch size, length) keys of batches


def time_path(model: BenchModel, spec: PathSpec, torch_model, batches: dict, options: BenchOptions, threads: int,
              workdir: Path, end_to_end: dict | None = None) -> dict[tuple, Timing]:
    """Prepare ``spec``'s files, then :func:`time_workloads` in a process of its own (``options.isolate``) or here."""
    prepare_path(model, spec, torch_model, workdir)
    if options.isolate:
        return time_in_own_process(model, spec, batches, options, threads, workdir, end_to_end)
    run = build_runner(model, spec, options.device, threads, torch_model)
    return time_workloads(run, model, spec, batches, options, end_to_end)


def time_workloads(run: Runner, model: BenchModel, spec: PathSpec, batches: dict, options: BenchOptions,
                   end_to_end: dict | None = None) -> dict[tuple, Timing]:
    """Time ``run`` on every batch (keyed by shape) and, with ``end_to_end`` (``end_to_end_pipeline``'s keywords),
    the whole tokenize + batch + forward pipeline (keyed END_TO_END), in this process."""
    workloads = [(shape, run, batch) for shape, batch in batches.items()]
    if end_to_end:
        workloads.append((END_TO_END, end_to_end_pipeline(run, model.hf_dir, **end_to_end), {}))
    return {key: time_runner(runner, batch, framework=spec.framework, device=options.device, iters=options.iters,
                             warmup=options.warmup) for key, runner, batch in workloads}


# --- one path in a process of its own ------------------------------------------------------------

def time_in_own_process(model: BenchModel, spec: PathSpec, batches: dict, options: BenchOptions, threads: int,
                        workdir: Path, end_to_end: dict | None = None) -> dict[tuple, Timing]:
    """:func:`time_workloads` in a fresh child process that imports only ``spec``'s framework and applies only its
    runtime settings, from the environment as the user set it (``python -m paddleport.parity.bench_worker JOB_DIR``)."""
    job = Path(tempfile.mkdtemp(prefix="path-", dir=workdir))
    for shape, batch in batches.items():
        np.savez(job / f"{_file_stem(shape)}.npz", **batch)
    request = {"model": _model_record(model), "spec": asdict(spec), "device": options.device, "threads": threads,
               "iters": options.iters, "warmup": options.warmup, "shapes": [list(shape) for shape in batches],
               "end_to_end": end_to_end}
    (job / "request.json").write_text(json.dumps(request))
    package_root = str(Path(__file__).resolve().parents[2])  # the child imports this very paddleport
    environment = runtime.user_environment()
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, environment.get("PYTHONPATH")]))
    child = subprocess.run([sys.executable, "-m", "paddleport.parity.bench_worker", str(job)],
                           capture_output=True, text=True, env=environment)
    if child.returncode != 0:
        raise RuntimeError(f"bench path {spec.framework} {spec.mode} ({spec.dtype}) failed in its own process:\n"
                           f"{child.stderr[-3000:]}")
    result = json.loads((job / "result.json").read_text())
    return {tuple(entry["key"]): Timing(entry["latencies_s"], entry["peak_mem_mb"],
                                        np.load(job / f"{_file_stem(entry['key'])}.out.npy"), result["runtime"])
            for entry in result["timings"]}


def _file_stem(key) -> str:
    return "x".join(map(str, key))


def run_job(job: Path) -> None:
    """The child's side of :func:`time_in_own_process`: set up for one framework, build, time, write back."""
    request = json.loads((job / "request.json").read_text())
    spec, model = PathSpec(**request["spec"]), _model_from_record(request["model"])
    options = BenchOptions(device=request["device"], iters=request["iters"], warmup=request["warmup"])
    batches = {}
    for shape in map(tuple, request["shapes"]):
        with np.load(job / f"{_file_stem(shape)}.npz") as stored:
            batches[shape] = dict(stored)
    frameworks = [spec.framework] if spec.framework in runtime.FRAMEWORKS else []
    with runtime.setup(options.device, request["threads"], frameworks) as settings:
        run = build_runner(model, spec, options.device, request["threads"])
        timed = time_workloads(run, model, spec, batches, options, request["end_to_end"])
        timings = []
        for key, timing in timed.items():
            np.save(job / f"{_file_stem(key)}.out.npy", timing.output)
            timings.append({"key": list(key), "latencies_s": timing.latencies_s, "peak_mem_mb": timing.peak_mem_mb})
        record = {**settings.as_json(), "own_process": True,
                  "imported": [name for name in ("torch", "paddle", "onnxruntime") if name in sys.modules]}
    (job / "result.json").write_text(json.dumps({"runtime": record, "timings": timings}))


def _model_record(model: BenchModel) -> dict:
    record = asdict(model)
    return {**record, **{key: str(record[key]) for key in ("hf_dir", "paddle_dir", "export_dir")
                         if record[key] is not None},
            "onnx_files": {name: str(path) for name, path in model.onnx_files.items()}}


def _model_from_record(record: dict) -> BenchModel:
    paths = {key: Path(record[key]) for key in ("hf_dir", "paddle_dir", "export_dir") if record[key] is not None}
    return BenchModel(**{**record, **paths, "onnx_files": {name: Path(path)
                                                            for name, path in record["onnx_files"].items()}})


def _row(model: BenchModel, spec: PathSpec, batch_size: int, seq_len: int, device: str, threads: int) -> BenchRow:
    return BenchRow(framework=spec.framework, mode=spec.mode, model=model.name, architecture=model.architecture,
                    dtype=spec.dtype, batch_size=batch_size, seq_len=seq_len, device=device,
                    device_name=devices.device_name(device), threads=threads)


def _fill(row: BenchRow, timing: Timing, samples: int, reference: np.ndarray | None) -> None:
    row.median_ms, row.p90_ms = timing.median_ms, timing.p90_ms
    row.samples_per_s = samples / (timing.median_ms / 1e3)
    row.peak_mem_mb = timing.peak_mem_mb
    row.iters = len(timing.latencies_s)
    if reference is not None and timing.output is not None and timing.output.shape == reference.shape:
        diff = difference(timing.output, reference)
        row.max_abs_diff = json_number(diff.max_abs)
        row.non_finite = diff.non_finite
        row.first_non_finite = list(diff.first_non_finite) if diff.first_non_finite is not None else None


# --- end to end --------------------------------------------------------------------------------

def benchmark_end_to_end(model: BenchModel, options: BenchOptions, threads: int, workdir: Path) -> list[BenchRow]:
    """Tokenize + batch + forward over the first N QQP pairs, for each float32 and half-precision path (each in
    its own process unless ``options.isolate`` is off, as the forward rows)."""
    from paddleport.parity.inputs import read_examples

    workload = {"pairs": options.end_to_end, "batch_size": max(options.batch_sizes),
                "max_length": min(max(options.seq_lens), model.max_positions)}
    pairs = len(read_examples(None, limit=options.end_to_end))
    timed = replace(options, iters=max(1, min(options.iters, 3)), warmup=1)  # whole passes: a few suffice
    torch_model = load_bench_torch_model(model)
    rows = []
    for dtype in options.dtypes:
        for spec in path_specs(model, options, dtype):
            row = _row(model, spec, workload["batch_size"], workload["max_length"], options.device, threads)
            row.scenario = f"end-to-end {pairs} QQP pairs"
            if spec.skipped:
                row.skipped = spec.skipped
            else:
                timing = time_path(model, spec, torch_model, {}, timed, threads, workdir, workload)[END_TO_END]
                _fill(row, timing, pairs, None)
                row.runtime = timing.runtime
            rows.append(row)
    return rows


def end_to_end_pipeline(run: Runner, hf_dir: Path, pairs: int, batch_size: int, max_length: int) -> Runner:
    """One call: tokenize the first ``pairs`` QQP pairs with ``hf_dir``'s tokenizer, batch and run them all."""
    from paddleport.parity.inputs import load_tokenizer, read_examples

    tokenizer, examples = load_tokenizer(hf_dir), read_examples(None, limit=pairs)

    def whole_pass(_unused: dict) -> np.ndarray:
        last = None
        for start in range(0, len(examples), batch_size):
            encoded = tokenizer(examples.first[start:start + batch_size],
                                examples.second[start:start + batch_size] if examples.second else None,
                                padding=True, truncation=True, max_length=max_length,
                                return_token_type_ids=True, return_tensors="np")
            last = run({key: value.astype(np.int64) for key, value in encoded.items()})
        return last

    return whole_pass


# --- summaries ---------------------------------------------------------------------------------

def squeezebert_speedups(rows: list[BenchRow]) -> list[dict]:
    """BERT median / SqueezeBERT median for each path and shape where both were timed."""
    timed = [row for row in rows if row.median_ms is not None]
    bert = {_key(row): row for row in timed if row.architecture.startswith("Bert")}
    speedups = []
    for row in timed:
        match = bert.get(_key(row)) if row.architecture.startswith("SqueezeBert") else None
        if match is not None:
            speedups.append({"framework": row.framework, "mode": row.mode, "dtype": row.dtype,
                             "scenario": row.scenario, "batch_size": row.batch_size, "seq_len": row.seq_len,
                             "bert": match.model, "squeezebert": row.model,
                             "speedup": match.median_ms / row.median_ms})
    return speedups


def _key(row: BenchRow) -> tuple:
    return row.framework, row.mode, row.dtype, row.scenario, row.batch_size, row.seq_len, row.device


def format_markdown(rows: list[BenchRow]) -> str:
    header = ("| model | framework | mode | dtype | scenario | batch | seq | median ms | p90 ms | samples/s "
              "| peak MB | max abs diff | threads | device |")
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for row in rows:
        if row.skipped:
            numbers = f"skipped: {row.skipped} | | | | |"
        else:
            diff = (f"{row.non_finite} non-finite, first at {tuple(row.first_non_finite)}" if row.non_finite
                    else f"{row.max_abs_diff:.2e}" if row.max_abs_diff is not None else "-")
            peak = f"{row.peak_mem_mb:.0f}" if row.peak_mem_mb is not None else "-"
            numbers = f"{row.median_ms:.1f} | {row.p90_ms:.1f} | {row.samples_per_s:.1f} | {peak} | {diff}"
        lines.append(f"| {row.model} | {row.framework} | {row.mode} | {row.dtype} | {row.scenario} | "
                     f"{row.batch_size} | {row.seq_len} | {numbers} | {row.threads} | {row.device_name} |")
    return "\n".join(lines)


def format_speedups(speedups: list[dict]) -> str:
    lines = ["| SqueezeBERT speed-up over BERT | dtype | scenario | batch | seq | speed-up |", "|---|---|---|---|---|---|"]
    lines += [f"| {s['framework']} {s['mode']} | {s['dtype']} | {s['scenario']} | {s['batch_size']} | "
              f"{s['seq_len']} | {s['speedup']:.2f}x |" for s in speedups]
    return "\n".join(lines)


def plot_latency(rows: list[BenchRow], path: str | Path) -> Path:
    """Grouped bars: median latency of each path (framework, mode, dtype) per model and shape."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    timed = [row for row in rows if row.median_ms is not None]
    groups = list(dict.fromkeys((r.model, r.scenario, r.batch_size, r.seq_len) for r in timed))
    paths = list(dict.fromkeys((r.framework, r.mode, r.dtype) for r in timed))
    by_key = {((r.model, r.scenario, r.batch_size, r.seq_len), (r.framework, r.mode, r.dtype)): r.median_ms
              for r in timed}
    width = 0.8 / max(1, len(paths))
    figure, axis = plt.subplots(figsize=(max(6.0, 1.2 * len(groups) * max(1, len(paths)) * 0.35 + 3), 4.5))
    for index, key in enumerate(paths):
        heights = [by_key.get((group, key), 0.0) for group in groups]
        axis.bar(np.arange(len(groups)) + index * width, heights, width, label=" ".join(key))
    axis.set_xticks(np.arange(len(groups)) + width * (len(paths) - 1) / 2)
    axis.set_xticklabels([f"{m}\n{'e2e ' if s != 'forward' else ''}bs{b} len{n}" for m, s, b, n in groups],
                         fontsize=7)
    axis.set_ylabel("median latency (ms)")
    axis.set_title("Latency by framework and model (lower is better)")
    axis.legend(fontsize=7)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
