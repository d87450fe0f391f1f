"""Full CPU comparison of published encoder configs (seeded random weights): bert-base-uncased and squeezebert-uncased
by default, ``--models all`` adds roberta-base, xlm-roberta-base, distilbert-base-uncased, electra-base-discriminator,
albert-base-v2 and ernie-3.0-base-zh.

Times torch eager, Paddle eager, paddle.inference and ONNX Runtime (torch.onnx and paddle2onnx exports) at
batch 16 x 128 tokens in float32 and bfloat16, each path in a fresh process that loads only its framework, and
prints, side by side, fastest-Paddle / torch-eager (float32, target <= 0.9), fastest-Paddle / ONNX Runtime's
torch.onnx row (float32, target <= 1.0) and fastest-Paddle-bf16 / fastest-torch-bf16 (target <= 1.0).

Usage:  .venv/bin/python benchmarks/bench_inference.py [--iters 10] [--json OUT]
[--plot OUT.png] [--tiny] [--in-process] [--models all|NAME,...]   (--tiny: 2-layer models, for a smoke test;
--in-process: every path in this process, quicker, not for ratios).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from paddleport.models import presets  # noqa: E402

MODELS = presets.PUBLISHED
DEFAULT_MODELS = ("bert-base-uncased", "squeezebert-uncased")

TINY = dict(num_hidden_layers=2, hidden_size=64, num_attention_heads=4, intermediate_size=128, embedding_size=64)
TINY_DISTILBERT = dict(n_layers=2, dim=64, n_heads=4, hidden_dim=128)  # DistilBERT's own key names


def tiny(config: dict) -> dict:
    return TINY_DISTILBERT if "dim" in config else TINY


def write_random_checkpoint(out_dir: Path, architecture: str, config: dict, seed: int = 0) -> Path:
    """A transformers checkpoint with seeded random weights (+ a BERT uncased tokenizer when one is installed)."""
    import torch
    import transformers

    model_type = getattr(transformers, architecture).config_class.model_type
    torch.manual_seed(seed)
    model = getattr(transformers, architecture)(
        transformers.AutoConfig.for_model(model_type, architectures=[architecture], **config)).eval()
    model.save_pretrained(out_dir)
    _copy_tokenizer(out_dir)
    return out_dir


def _copy_tokenizer(out_dir: Path) -> None:
    try:
        from tests.fixtures import copy_tokenizer
    except ImportError:  # the MiniLM package is optional here: only --end-to-end needs a tokenizer
        return
    copy_tokenizer(out_dir)


def ratios(rows) -> list[dict]:
    """Per model: fastest Paddle fp32 / torch eager fp32, fastest Paddle fp32 / ONNX Runtime (torch.onnx export)
    and fastest Paddle bf16 / fastest torch bf16."""
    results = []
    for model in dict.fromkeys(row.model for row in rows):
        timed = [r for r in rows if r.model == model and r.median_ms is not None and r.scenario == "forward"]
        best = lambda framework, dtype, modes=None: min(  # noqa: E731
            (r for r in timed if r.framework == framework and r.dtype == dtype
             and (modes is None or r.mode in modes)), key=lambda r: r.median_ms, default=None)
        torch_fp32 = best("torch", "float32", ("eager",))
        paddle_fp32, torch_bf16, paddle_bf16 = best("paddle", "float32"), best("torch", "bfloat16"), best("paddle", "bfloat16")
        results.append({
            "model": model,
            "fp32": _ratio(paddle_fp32, torch_fp32),
            "fp32_vs_onnxruntime": _ratio(paddle_fp32, best("onnxruntime", "float32", ("torch.onnx",))),
            "bf16": _ratio(paddle_bf16, torch_bf16),
        })
    return results


def _ratio(paddle_row, torch_row) -> dict | None:
    if paddle_row is None or torch_row is None:
        return None
    return {"paddle": f"{paddle_row.mode} {paddle_row.median_ms:.1f} ms", "torch": f"{torch_row.mode} "
            f"{torch_row.median_ms:.1f} ms", "ratio": paddle_row.median_ms / torch_row.median_ms}


def format_ratios(results: list[dict]) -> str:
    lines = ["| model | fastest Paddle fp32 / torch eager fp32 (target <= 0.9) "
             "| fastest Paddle fp32 / ONNX Runtime fp32 (target <= 1.0) "
             "| fastest Paddle bf16 / fastest torch bf16 (target <= 1.0) |",
             "|---|---|---|---|"]
    for result in results:
        cells = [f"{c['ratio']:.2f} ({c['paddle']} vs {c['torch']})" if c else "n/a"
                 for c in (result["fp32"], result["fp32_vs_onnxruntime"], result["bf16"])]
        lines.append(f"| {result['model']} | {' | '.join(cells)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from paddleport import runtime

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--plot", type=Path)
    parser.add_argument("--tiny", action="store_true", help="2-layer models (smoke test)")
    parser.add_argument("--in-process", action="store_true",
                        help="time every path in this process (smoke test; the default gives each path a fresh "
                             "process that loads only its framework)")
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS),
                        help=f"comma list of {', '.join(MODELS)}, or all (default: {', '.join(DEFAULT_MODELS)})")
    args = parser.parse_args(argv)
    with runtime.setup("cpu", args.threads):  # before paddle is imported
        return run(args)


def run(args: argparse.Namespace) -> int:
    import json

    from paddleport.parity.bench import BenchOptions, run_benchmark

    options = BenchOptions(dtypes=tuple(args.dtypes.split(",")), batch_sizes=(args.batch_size,),
                           seq_lens=(args.seq_len,), iters=args.iters, warmup=2, threads=args.threads,
                           isolate=not args.in_process)
    names = list(MODELS) if args.models == "all" else args.models.split(",")
    unknown = [name for name in names if name not in MODELS]
    if unknown:
        raise SystemExit(f"--models: unknown {', '.join(unknown)} (choose from {', '.join(MODELS)} or all)")
    with tempfile.TemporaryDirectory(prefix="bench-inference-") as workdir:
        dirs = [write_random_checkpoint(Path(workdir) / name, MODELS[name][0],
                                        {**MODELS[name][1], **(tiny(MODELS[name][1]) if args.tiny else {})})
                for name in names]
        result = run_benchmark(dirs, options)
    summary = ratios(result.rows)
    print(result.markdown())
    print()
    print(format_ratios(summary))
    if args.json:
        args.json.write_text(json.dumps({**result.as_json(), "ratios": summary}, indent=2) + "\n")
    if args.plot:
        result.plot(args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
