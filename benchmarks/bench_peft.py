"""LoRA vs full fine-tuning, torch and Paddle side by side: all-MiniLM-L6-v2 on the embedded QQP sample.

Full run (the defaults; long on 2 cores, the lead's on a quiet machine): ``.venv/bin/python benchmarks/bench_peft.py``
(2 epochs, batch 32, max length 128, shared dropout masks; LoRA r 8, alpha 16, query,value, dropout 0.1, lr 2e-3;
full fine-tuning lr 5e-5). Short check: ``--max-train-samples 64 --max-eval-samples 32 --epochs 1``.

Each (method, framework) trains in its own process (run-glue), so its peak RSS is its own. Printed per row:
trainable parameters, peak RSS, train samples/s, dev accuracy; then the targets (LoRA dev accuracy within 3 points
of full fine-tuning in each framework, and equal between the frameworks), and ``estimate-memory``'s estimate beside
its measured step (``--measure``, batch ``--memory-batch-size`` x ``--memory-max-length``) for full and LoRA in both
frameworks (target: within 15 %).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from paddleport.demo import minilm_dir  # noqa: E402

FRAMEWORKS = ("torch", "paddle")
METHODS = ("full", "lora")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="default: the bundled all-MiniLM-L6-v2")
    parser.add_argument("--out-dir", type=Path, default=REPO / "bench_out" / "peft")
    parser.add_argument("--frameworks", nargs="+", default=list(FRAMEWORKS), choices=FRAMEWORKS)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--max-train-samples", type=int, default=None, help="default: all 8,999 pairs")
    parser.add_argument("--max-eval-samples", type=int, default=None, help="default: all 1,000 dev pairs")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--full-lr", type=float, default=5e-5)
    parser.add_argument("--lora-lr", type=float, default=2e-3,
                        help="LoRA trains few parameters: a larger rate (5e-4, 1e-3 left 1,024 pairs at the majority class)")
    parser.add_argument("--lora-r", type=int, default=8)
    parser.add_argument("--lora-alpha", type=float, default=16.0)
    parser.add_argument("--lora-dropout", type=float, default=0.1)
    parser.add_argument("--lora-target-modules", default="query,value")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--num-threads", type=int, help="default: the cores this process may use")
    parser.add_argument("--memory-batch-size", type=int, default=8, help="estimate-memory --measure batch")
    parser.add_argument("--memory-max-length", type=int, default=128)
    parser.add_argument("--skip-memory", action="store_true", help="no estimate-memory rows")
    parser.add_argument("--json", type=Path, help="default: OUT_DIR/bench_peft.json")
    return parser.parse_args(argv)


def run_glue_command(args: argparse.Namespace, method: str, framework: str) -> list[str]:
    """``paddleport run-glue`` for one row, in its own process."""
    command = [sys.executable, "-m", "paddleport", "run-glue", "--framework", framework,
               "--model", str(args.model or minilm_dir()), "--output-dir", str(args.out_dir / f"{method}-{framework}"),
               "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--max-length", str(args.max_length),
               "--seed", str(args.seed), "--dropout-masks", "shared", "--overwrite",
               "--lr", str(args.full_lr if method == "full" else args.lora_lr)]
    for option, value in (("--max-train-samples", args.max_train_samples),
                          ("--max-eval-samples", args.max_eval_samples), ("--num-threads", args.num_threads)):
        if value is not None:
            command += [option, str(value)]
    if method == "lora":
        command += ["--peft", "lora", "--lora-r", str(args.lora_r), "--lora-alpha", str(args.lora_alpha),
                    "--lora-dropout", str(args.lora_dropout), "--lora-target-modules", args.lora_target_modules]
    return command


def memory_row(args: argparse.Namespace, method: str, framework: str) -> dict:
    """``estimate-memory --measure`` for one (method, framework), in its own process."""
    report = args.out_dir / f"memory-{method}-{framework}.json"
    command = [sys.executable, "-m", "paddleport", "estimate-memory", "--model", str(args.model or minilm_dir()),
               "--batch-size", str(args.memory_batch_size), "--max-length", str(args.memory_max_length),
               "--measure", "--framework", framework, "--num-threads", str(args.num_threads or 1),
               "--json", str(report)]
    if method == "lora":
        command += ["--peft", "lora", "--lora-r", str(args.lora_r), "--lora-alpha", str(args.lora_alpha),
                    "--lora-dropout", str(args.lora_dropout), "--lora-target-modules", args.lora_target_modules]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    data = json.loads(report.read_text())
    return {"estimate_mib": data["total"] / 2**20, "measured_mib": data["measured"]["peak_bytes"] / 2**20}


def table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)) for row in rows]
    return "\n".join([lines[0], "  ".join("-" * width for width in widths), *lines[1:]])


def target_lines(results: dict[tuple[str, str], dict]) -> list[str]:
    accuracy = {key: metrics["epochs"][-1]["eval_accuracy"] for key, metrics in results.items()}
    lines = []
    for framework in FRAMEWORKS:
        if ("full", framework) in accuracy and ("lora", framework) in accuracy:
            gap = (accuracy[("full", framework)] - accuracy[("lora", framework)]) * 100
            lines.append(f"target LoRA within 3 points of full ({framework}): {gap:+.2f} points "
                         f"{'ok' if gap <= 3 else 'MISSED'}")
    for method in METHODS:
        if (method, "torch") in accuracy and (method, "paddle") in accuracy:
            delta = abs(accuracy[(method, "torch")] - accuracy[(method, "paddle")]) * 100
            lines.append(f"{method}: |dev accuracy torch - Paddle| {delta:.2f} points")
    return lines


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    results = {}
    for method in args.methods:
        for framework in args.frameworks:
            print(f"== {method} fine-tuning, {framework} ==", flush=True)
            subprocess.run(run_glue_command(args, method, framework), check=True)
            results[(method, framework)] = json.loads(
                (args.out_dir / f"{method}-{framework}" / "metrics.json").read_text())
    rows = [["method", "framework", "trainable params", "peak RSS MiB", "samples/s", "dev accuracy"]]
    for (method, framework), metrics in results.items():
        rows.append([method, framework, f"{metrics['trainable_parameters']:,}", f"{metrics['peak_memory_mb']:.0f}",
                     f"{metrics['train_samples_per_s']:.1f}", f"{metrics['epochs'][-1]['eval_accuracy']:.4f}"])
    print("\n== all-MiniLM-L6-v2, QQP sample, shared dropout masks ==")
    print(table(rows))
    targets = target_lines(results)
    print("\n".join(targets))
    memory = {}
    if not args.skip_memory:
        memory_rows = [["method", "framework", "estimate MiB", "measured MiB", "estimate / measured", "within 15 %"]]
        for method in args.methods:
            for framework in args.frameworks:
                row = memory[f"{method}-{framework}"] = memory_row(args, method, framework)
                ratio = row["estimate_mib"] / row["measured_mib"]
                memory_rows.append([method, framework, f"{row['estimate_mib']:.1f}", f"{row['measured_mib']:.1f}",
                                    f"{ratio:.3f}", "yes" if abs(ratio - 1) <= 0.15 else "NO"])
        print(f"\n== estimate-memory, batch {args.memory_batch_size} x {args.memory_max_length}, one step measured ==")
        print(table(memory_rows))
    report = {"results": {f"{method}-{framework}": {key: metrics[key] for key in (
                  "trainable_parameters", "peak_memory_mb", "train_samples_per_s", "epochs", "train_samples",
                  "eval_samples")} for (method, framework), metrics in results.items()},
              "targets": targets, "memory": memory, "settings": {key: str(value) for key, value in vars(args).items()}}
    path = args.json or args.out_dir / "bench_peft.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"report: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
