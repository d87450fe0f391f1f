"""CPU fine-tuning benchmark: all-MiniLM-L6-v2 on the embedded 9,000-pair QQP sample, torch vs Paddle.

Full run (the lead's, long on 2 cores): ``.venv/bin/python benchmarks/glue_cpu.py``
(2 epochs, batch 32, lr 5e-5, max length 128, dev = the 1,000-pair sample dev set).
Short check: ``.venv/bin/python benchmarks/glue_cpu.py --max-train-samples 256 --max-eval-samples 100 --epochs 1``.
Targets: dev accuracy >= 0.81 in both, |delta accuracy| <= 1 point, Paddle throughput >= torch.
Both frameworks draw the same dropout masks (``--dropout-masks shared``, asked for explicitly: run-glue's own
default is ``native``, a stock fine-tune); ``--dropout-masks native`` lets each draw its own (the accuracies then
differ by about a point from the masks alone).
``--parity-steps N`` also runs ``train-parity`` on MiniLM (N steps; its run-scaled tolerances).
Each framework trains in its own process, so each ``peak_memory_mb`` (the process's peak RSS) is that framework's
own; the agreement of the two runs (every step's loss from both ``train_log.jsonl``, each epoch's train and dev
loss) is computed and printed with ``paddleport.parity.metrics.difference``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from paddleport import runtime  # noqa: E402
from paddleport.demo import minilm_dir  # noqa: E402
from paddleport.dropout_masks import MODES as DROPOUT_MASK_MODES  # noqa: E402
from paddleport.glue_runners import GlueRunConfig, TrainParityConfig, run_glue, run_train_parity  # noqa: E402
from paddleport.glue_runners.parity import format_parity_report  # noqa: E402
from paddleport.glue_runners.reporting import framework_comparison, write_json  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="default: the bundled all-MiniLM-L6-v2")
    parser.add_argument("--out-dir", type=Path, default=REPO / "bench_out" / "glue_cpu")
    parser.add_argument("--frameworks", nargs="+", default=["torch", "paddle"], choices=["torch", "paddle"])
    parser.add_argument("--max-train-samples", type=int, default=None, help="default: all 8,999 pairs")
    parser.add_argument("--max-eval-samples", type=int, default=None, help="default: all 1,000 dev pairs")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--num-threads", type=int, help="default: the cores this process may use (paddleport.runtime)")
    parser.add_argument("--dropout-masks", choices=DROPOUT_MASK_MODES, default="shared",
                        help="shared (default here): both frameworks draw the same dropout masks, at their cost (torch "
                             "runs eager attention instead of SDPA; int64 temporaries per element)")
    parser.add_argument("--parity-steps", type=int, default=0, help="MiniLM train-parity steps (0: skip)")
    parser.add_argument("--json", type=Path, help="default: OUT_DIR/glue_cpu.json")
    parser.add_argument("--progress", action="store_true", help="tqdm bars")
    parser.add_argument("--in-process", action="store_true",
                        help="train the (single) framework in this process (what each child process does)")
    return parser.parse_args(argv)


def child_arguments(args: argparse.Namespace, framework: str) -> list[str]:
    """This script's arguments for one framework trained in its own process (peak memory of that framework)."""
    options = {"--model": args.model, "--out-dir": args.out_dir, "--max-train-samples": args.max_train_samples,
               "--max-eval-samples": args.max_eval_samples, "--epochs": args.epochs, "--batch-size": args.batch_size,
               "--lr": args.lr, "--max-length": args.max_length, "--seed": args.seed,
               "--num-threads": args.num_threads, "--dropout-masks": args.dropout_masks}
    arguments = [item for key, value in options.items() if value is not None for item in (key, str(value))]
    return [*arguments, *(["--progress"] if args.progress else []), "--frameworks", framework, "--in-process"]


def agreement_lines(out_dir: Path, results: dict[str, dict]) -> list[str]:
    """max |Δ| of every step's loss (both train_log.jsonl) and of each epoch's train and dev loss, torch vs Paddle."""
    from paddleport.parity.metrics import difference

    def step_losses(framework: str) -> list[float]:
        rows = [json.loads(line) for line in (out_dir / framework / "train_log.jsonl").read_text().splitlines()
                if line.strip()]
        return [row["loss"] for row in rows if "loss" in row and "step" in row]

    steps = {framework: step_losses(framework) for framework in ("torch", "paddle")}
    if len(steps["torch"]) != len(steps["paddle"]):
        return [f"step losses: torch logged {len(steps['torch'])} steps, Paddle {len(steps['paddle'])}"]
    lines = []
    step = difference(steps["paddle"], steps["torch"])
    lines.append(f"step losses: max |delta| {step.max_abs:.2e} over {len(steps['torch'])} steps"
                 + (f" ({step.describe_non_finite()})" if not step.finite else ""))
    for key in ("train_loss", "eval_loss"):
        values = {name: [row[key] for row in results[name]["epochs"]] for name in ("torch", "paddle")}
        epoch = difference(values["paddle"], values["torch"])
        lines.append(f"epoch {key.replace('_', ' ')}: max |delta| {epoch.max_abs:.2e} over {len(values['torch'])} "
                     "epochs" + (f" ({epoch.describe_non_finite()})" if not epoch.finite else ""))
    return lines


def target_lines(results: dict[str, dict]) -> list[str]:
    accuracy = {name: metrics["epochs"][-1]["eval_accuracy"] for name, metrics in results.items()}
    lines = [f"target dev accuracy >= 0.81, {name}: {value:.4f} {'ok' if value >= 0.81 else 'MISSED'}"
             for name, value in accuracy.items()]
    if {"torch", "paddle"} <= set(results):
        delta = abs(accuracy["paddle"] - accuracy["torch"]) * 100
        ratio = results["paddle"]["train_samples_per_s"] / results["torch"]["train_samples_per_s"]
        lines.append(f"target |delta accuracy| <= 1 point: {delta:.2f} {'ok' if delta <= 1 else 'MISSED'}")
        lines.append(f"target Paddle/torch throughput >= 1: {ratio:.2f} {'ok' if ratio >= 1 else 'MISSED'}")
    return lines


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with runtime.setup("cpu", args.num_threads):  # before paddle is imported
        return run(args)


def train_here(args: argparse.Namespace, framework: str) -> dict:
    model = args.model or minilm_dir()
    print(f"== {framework}: fine-tuning {model} ==", flush=True)
    return run_glue(GlueRunConfig(
        framework=framework, model=model, output_dir=args.out_dir / framework, cache_dir=args.out_dir / "cache",
        max_train_samples=args.max_train_samples, max_eval_samples=args.max_eval_samples, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, max_length=args.max_length, seed=args.seed,
        num_threads=args.num_threads, dropout_masks=args.dropout_masks, overwrite=True, progress=args.progress))


def run(args: argparse.Namespace) -> int:
    if args.in_process:
        train_here(args, args.frameworks[0])
        return 0
    model = args.model or minilm_dir()
    results = {}
    for framework in args.frameworks:  # one process each: peak memory is that framework's own
        subprocess.run([sys.executable, __file__, *child_arguments(args, framework)], check=True)
        results[framework] = json.loads((args.out_dir / framework / "metrics.json").read_text())
    print("\n== QQP sample: all-MiniLM-L6-v2, CPU ==")
    print(framework_comparison(results))
    print("\n".join(target_lines(results)))
    print("peak RSS, each framework in its own process: " + ", ".join(
        f"{name} {metrics['peak_memory_mb']:.0f} MiB" for name, metrics in results.items()))
    if {"torch", "paddle"} <= set(results):
        print("\n".join(agreement_lines(args.out_dir, results)))
    report = {"results": {name: {key: metrics[key] for key in ("epochs", "total_train_time_s", "train_samples_per_s",
                                                               "peak_memory_mb", "train_samples", "eval_samples")}
                          for name, metrics in results.items()},
              "targets": target_lines(results), "settings": {k: str(v) for k, v in vars(args).items()},
              "runtime": runtime.active().as_json()}
    if args.parity_steps:
        parity = run_train_parity(TrainParityConfig(model=model, steps=args.parity_steps, num_threads=args.num_threads))
        print("\n== train-parity, MiniLM ==\n" + format_parity_report(parity))
        report["train_parity"] = parity
    write_json(args.json or args.out_dir / "glue_cpu.json", report)
    print(f"report: {args.json or args.out_dir / 'glue_cpu.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
