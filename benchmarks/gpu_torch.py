"""The torch half of the GPU comparison, for a machine with a CUDA torch and no Paddle GPU build.

1. Inference: torch eager (float32, bf16 weights, bf16 autocast) and ONNX Runtime (the torch.onnx export; CUDA
   provider when onnxruntime-gpu is installed, else the row is skipped with the reason) on bert-base-uncased
   and squeezebert-uncased configs with seeded weights, through ``paddleport.parity.bench`` (same warm-up,
   median/p90, peak memory and max |Δ| vs torch float32 as the CPU table).
2. Fine-tuning: ``run-glue --framework torch --device gpu`` on the embedded QQP sample with bf16 autocast,
   once with each dropout-mask mode, to measure what shared masks cost on a GPU (they replace SDPA attention by
   eager attention and draw the masks with int64 counter hashes).

Usage: python benchmarks/gpu_torch.py OUT_DIR [--tokenizer DIR] [--train-samples N] [--iters N] [--repeats N]
(--tokenizer: a BERT uncased tokenizer directory for the fine-tune; default: the one the tests use).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from paddleport import runtime  # noqa: E402


def _checkpoints(work: Path, tokenizer: Path | None, tiny: bool) -> dict[str, Path]:
    import shutil

    from bench_inference import TINY, write_random_checkpoint

    from paddleport.models.presets import BERT_BASE_UNCASED, SQUEEZEBERT_UNCASED

    size = TINY if tiny else {}
    dirs = {"bert-base-uncased": write_random_checkpoint(work / "bert-base-uncased", "BertModel",
                                                         {**BERT_BASE_UNCASED, **size}),
            "squeezebert-uncased": write_random_checkpoint(work / "squeezebert-uncased", "SqueezeBertModel",
                                                           {**SQUEEZEBERT_UNCASED, **size})}
    if tokenizer is not None:
        for path in tokenizer.iterdir():
            if path.is_file():
                shutil.copy(path, dirs["bert-base-uncased"] / path.name)
    return dirs


def inference(dirs: dict[str, Path], out: Path, iters: int, device: str) -> None:
    from paddleport.parity.bench import BenchOptions, run_benchmark

    options = BenchOptions(device=device, dtypes=("float32", "bfloat16"), batch_sizes=(16, 32), seq_lens=(128, 512),
                           iters=iters, warmup=3,
                           paths=("torch eager", "torch autocast", "onnxruntime torch.onnx"))
    result = run_benchmark(list(dirs.values()), options)
    table = result.markdown()
    print(table, flush=True)
    (out / "gpu_torch_bench.md").write_text(table + "\n")
    (out / "gpu_torch_bench.json").write_text(json.dumps(result.as_json(), indent=1))


def fine_tune(model: Path, out: Path, train_samples: int, device: str, repeats: int) -> None:
    from paddleport.glue_runners.runner import GlueRunConfig, run_glue

    rows = []
    # alternated and repeated: the first run of a process also pays CUDA's and the caches' warm-up
    for index, masks in enumerate(("native", "shared") * repeats):
        config = GlueRunConfig(framework="torch", model=model, output_dir=out / f"glue_{index}_{masks}", device=device,
                               amp="bf16" if device == "gpu" else "none", dropout_masks=masks, epochs=1, batch_size=32, max_length=128,
                               max_train_samples=train_samples, max_eval_samples=512, progress=False,
                               verbose=False, overwrite=True)
        started = time.perf_counter()
        run_glue(config)
        metrics = json.loads((config.output_dir / "metrics.json").read_text())
        rows.append((masks, metrics["train_samples_per_s"], metrics["epochs"][-1]["train_loss"],
                     metrics["epochs"][-1].get("eval_accuracy"), metrics.get("peak_memory_mb"),
                     time.perf_counter() - started))
    lines = ["| dropout masks | train samples/s | train loss | dev accuracy | peak memory MiB | wall s |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {m} | {s:.1f} | {loss:.4f} | {acc:.3f} | {mem:.0f} | {wall:.1f} |"
              for m, s, loss, acc, mem, wall in rows]
    table = "\n".join(lines)
    print(table, flush=True)
    (out / "gpu_torch_glue.md").write_text(table + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--tokenizer", type=Path)
    parser.add_argument("--train-samples", type=int, default=4096)
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=2, help="fine-tunes per dropout-mask mode, alternated")
    parser.add_argument("--skip-inference", action="store_true")
    parser.add_argument("--device", default="gpu", help="cpu: a smoke test of this script (with --tiny)")
    parser.add_argument("--tiny", action="store_true", help="2-layer models instead of the full-size configs")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with runtime.setup(device=args.device, frameworks=("torch",)):
        import torch

        where = torch.cuda.get_device_name(0) if args.device == "gpu" else runtime.detect_cpu().model_name
        print(f"torch {torch.__version__} on {where}", flush=True)
        dirs = _checkpoints(args.out / "models", args.tokenizer, args.tiny)
        if not args.skip_inference:
            inference(dirs, args.out, args.iters, args.device)
        fine_tune(dirs["bert-base-uncased"], args.out, args.train_samples, args.device, args.repeats)


if __name__ == "__main__":
    main()
