"""Data-parallel fine-tuning benchmark: throughput and peak memory against processes, precision and sharding.

Every cell is a real ``paddleport run-glue`` launch (a plain process for 1, else ``torchrun`` /
``python -m paddle.distributed.launch``) of all-MiniLM-L6-v2 on the embedded QQP sample, short and bounded by
``--max-train-samples``; the numbers come from each run's metrics.json (training time only, without evaluation
and start-up). Each process is one "device": on CPU it gets ``--threads-per-process`` threads (default 1), so
N processes use N cores, as N processes use N GPUs. Paddle has no bf16 autocast on CPU: those cells are recorded
as skipped, with the reason.

CPU (2 cores): ``.venv/bin/python benchmarks/bench_distributed.py``
GPU: ``benchmarks/gpu_distributed.sh`` (NCCL, all visible GPUs, also the sharded modes).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from paddleport import runtime  # noqa: E402
from paddleport.demo import minilm_dir  # noqa: E402
from paddleport.glue_runners.distributed import environment_without_launch, launch_command, run_launch  # noqa: E402


@dataclass(frozen=True)
class Cell:
    framework: str
    processes: int
    precision: str  # "fp32" or an --amp mode
    sharding: str = "none"

    @property
    def name(self) -> str:
        return f"{self.framework}-{self.processes}p-{self.precision}-{self.sharding}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="default: the bundled all-MiniLM-L6-v2")
    parser.add_argument("--out-dir", type=Path, default=REPO / "bench_out" / "distributed")
    parser.add_argument("--frameworks", nargs="+", default=["torch", "paddle"], choices=["torch", "paddle"])
    parser.add_argument("--processes", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--sharding", nargs="+", default=["none"], choices=["none", "zero1", "zero2", "fsdp"],
                        help="modes to measure (a sharded mode only with more than one process)")
    parser.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument("--max-train-samples", type=int, default=256)
    parser.add_argument("--max-eval-samples", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32, help="global micro-batch (split between processes)")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--threads-per-process", type=int, default=1, help="CPU threads of each process")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per launch")
    parser.add_argument("--json", type=Path, help="default: OUT_DIR/bench_distributed.json")
    return parser.parse_args(argv)


def plan_cells(args: argparse.Namespace) -> list[Cell]:
    return [Cell(framework, processes, precision, sharding)
            for framework in args.frameworks for processes in args.processes for precision in args.precisions
            for sharding in args.sharding if sharding == "none" or processes > 1]


def skip_reason(cell: Cell, device: str) -> str | None:
    """Why a cell cannot run here (decided before launching anything)."""
    if cell.framework == "paddle" and device == "cpu" and cell.precision != "fp32":
        return f"Paddle has no {cell.precision} autocast on CPU"
    if cell.framework == "paddle" and cell.sharding == "fsdp":
        return "Paddle sharding offers zero1/zero2 only"
    if cell.framework == "paddle" and cell.sharding != "none" and device == "cpu":
        return "Paddle's group_sharded_parallel needs GPUs"
    if cell.processes > 1 and device == "gpu":
        return _gpu_shortage(cell)
    return None


def _gpu_shortage(cell: Cell) -> str | None:
    import torch

    available = torch.cuda.device_count()
    return None if available >= cell.processes else f"{cell.processes} processes need {cell.processes} GPUs, " \
                                                     f"{available} visible"


def run_arguments(cell: Cell, args: argparse.Namespace, model: Path, out: Path) -> list[str]:
    arguments = ["--framework", cell.framework, "--model", str(model), "--output-dir", str(out),
                 "--max-train-samples", str(args.max_train_samples), "--max-eval-samples", str(args.max_eval_samples),
                 "--batch-size", str(args.batch_size), "--max-length", str(args.max_length), "--epochs", "1",
                 "--device", args.device, "--num-threads", str(args.threads_per_process), "--sharding", cell.sharding,
                 "--cache-dir", str(args.out_dir / "cache"), "--no-progress", "--overwrite",
                 "--dropout-masks", "shared"]  # the setting of the README's figures (then run-glue's default)
    return arguments + (["--amp", cell.precision] if cell.precision != "fp32" else [])


def measure(cell: Cell, args: argparse.Namespace, model: Path) -> dict:
    """Run one cell; a row of the results table."""
    row = asdict(cell)
    reason = skip_reason(cell, args.device)
    if reason:
        return row | {"status": "skipped", "reason": reason}
    out = args.out_dir / cell.name
    command = launch_command(cell.framework, cell.processes, run_arguments(cell, args, model, out), sys.executable,
                             str(args.out_dir / "logs" / cell.name))
    started = time.perf_counter()
    code, output = run_launch(command, environment_without_launch(os.environ, args.threads_per_process),
                              args.timeout, cwd=str(REPO))
    wall = time.perf_counter() - started
    if code != 0:
        lines = [line for line in output.splitlines() if "error" in line.lower()]
        fallback = f"timed out after {args.timeout} s" if code is None else f"exit code {code}"
        return row | {"status": "failed", "reason": (lines or [fallback])[-1][:300]}
    metrics = json.loads((out / "metrics.json").read_text())
    return row | {
        "status": "ok",
        "samples_per_s": metrics["train_samples_per_s"],
        "train_time_s": metrics["total_train_time_s"],
        "wall_time_s": wall,
        "peak_rss_mb_per_process": max(metrics["peak_memory_mb_per_rank"]),
        "peak_rss_mb_total": sum(metrics["peak_memory_mb_per_rank"]),
        "peak_device_mb_per_process": max(metrics["peak_device_memory_mb_per_rank"], key=lambda v: v or 0),
        "global_batch_size": metrics["global_batch_size"],
        "train_loss": metrics["epochs"][-1]["train_loss"],
        "eval_accuracy": metrics["epochs"][-1]["eval_accuracy"],
    }


def markdown_table(rows: list[dict]) -> str:
    header = ("| framework | processes | precision | sharding | samples/s | peak RSS / process (MiB) | "
              "peak RSS total (MiB) | peak GPU / process (MiB) | train loss | note |")
    lines = [header, "|" + "---|" * 10]
    for row in rows:
        if row["status"] != "ok":
            lines.append(f"| {row['framework']} | {row['processes']} | {row['precision']} | {row['sharding']} | - | - "
                         f"| - | - | - | {row['status']}: {row['reason']} |")
            continue
        device = row["peak_device_mb_per_process"]
        lines.append(f"| {row['framework']} | {row['processes']} | {row['precision']} | {row['sharding']} | "
                     f"{row['samples_per_s']:.1f} | {row['peak_rss_mb_per_process']:.0f} | "
                     f"{row['peak_rss_mb_total']:.0f} | {'-' if device is None else f'{device:.0f}'} | "
                     f"{row['train_loss']:.4f} | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    model = args.model or minilm_dir()
    rows = []
    for cell in plan_cells(args):
        rows.append(measure(cell, args, model))
        print(f"{cell.name}: {rows[-1]['status']}", file=sys.stderr, flush=True)
    settings = {key: str(value) for key, value in vars(args).items()} | {"model": str(model)}
    # each launched process applies paddleport.runtime.setup itself (with --num-threads); this is the CPU
    report = {"settings": settings, "cpu": runtime.detect_cpu().as_json(), "results": rows}
    json_path = args.json or args.out_dir / "bench_distributed.json"
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    print(markdown_table(rows))
    return 0 if all(row["status"] != "failed" for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
