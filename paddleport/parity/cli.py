"""``paddleport compare | export | bench``: argparse only; the work happens in the library functions."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from paddleport.errors import PaddleportError
from paddleport.registry import help_epilog


def tolerance(text: str) -> float:
    """argparse type of a tolerance: a finite number >= 0 (NaN would make every comparison pass or fail)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, not {text}")
    return value


def register(subparsers) -> None:
    _register_compare(subparsers)
    _register_export(subparsers)
    _register_bench(subparsers)


def _register_compare(subparsers) -> None:
    parser = subparsers.add_parser("compare", epilog=help_epilog(),
                                   help="forward (and gradient) parity of a Hugging Face checkpoint and its Paddle port",
        description="Compare embeddings, every layer's hidden state, the pooled output and the logits "
                    "(every position the attention mask keeps). Exit 0 on pass, 1 on fail, 2 on bad input.")
    parser.add_argument("hf_dir", type=Path, help="Hugging Face checkpoint directory (with its tokenizer)")
    parser.add_argument("paddle_dir", type=Path, help="Paddle checkpoint directory (paddleport convert output)")
    parser.add_argument("--inputs", type=Path, help="GLUE pair TSV or one sentence a line (default: QQP sample)")
    parser.add_argument("--limit", type=int, default=32, help="examples read from the inputs (default 32)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, help="tokens per sequence (default min(128, max positions))")
    parser.add_argument("--atol", type=tolerance, help="max |Δ| allowed (default 1e-5; 5e-2 float16; 0.25 bfloat16)")
    parser.add_argument("--grad", action="store_true", help="also compare every parameter's gradient")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16"))
    parser.add_argument("--device", default="cpu", choices=("cpu", "gpu"))
    parser.add_argument("--json", type=Path, dest="json_path", help="write the report as JSON here")
    parser.add_argument("--hf-adapter", type=Path,
                        help="peft adapter directory (LoRA, prompt tuning, p-tuning) applied to HF_DIR (transformers + "
                             "peft)")
    parser.add_argument("--paddle-adapter", type=Path,
                        help="the same kind of adapter directory (either layout) applied to PADDLE_DIR (paddleport's "
                             "adapter layers)")
    parser.set_defaults(func=run_compare)


def run_compare(args: argparse.Namespace) -> int:
    from paddleport.parity.compare import compare_models

    _check_positive(("--batch-size", args.batch_size), ("--limit", args.limit))
    report = compare_models(
        args.hf_dir, args.paddle_dir, inputs=args.inputs, batch_size=args.batch_size, max_length=args.max_length,
        atol=args.atol, grad=args.grad, dtype=args.dtype, device=args.device, limit=args.limit,
        hf_adapter=args.hf_adapter, paddle_adapter=args.paddle_adapter)
    print(report.table())
    print()
    print(report.verdict())
    if args.json_path:
        print(f"report written to {report.write_json(args.json_path)}")
    return 0 if report.passed else 1


def _register_export(subparsers) -> None:
    parser = subparsers.add_parser("export", epilog=help_epilog(),
                                   help="export a Paddle checkpoint as a verified static inference program",
        description="paddle.jit.to_static (dynamic batch and sequence length) + paddle.jit.save, checked "
                    "against eager before OUT is written.")
    parser.add_argument("paddle_dir", type=Path)
    parser.add_argument("out", type=Path, help="output directory (model.json + model.pdiparams + config)")
    parser.add_argument("--format", choices=("paddle", "onnx"), default="paddle",
                        help="paddle: the static program for paddle.inference; onnx: model.onnx through "
                             "paddle2onnx, checked in ONNX Runtime (default: paddle)")
    parser.add_argument("--force", action="store_true", help="replace OUT if it exists")
    parser.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:
    from paddleport.parity.export import export_model

    print(export_model(args.paddle_dir, args.out, force=args.force, fmt=args.format).summary())
    return 0


def _register_bench(subparsers) -> None:
    parser = subparsers.add_parser("bench", epilog=help_epilog(),
                                   help="latency of torch eager, Paddle eager and paddle.inference on the same models",
        description="Each MODEL_DIR is a Hugging Face or a Paddle checkpoint (the other layout is converted).")
    parser.add_argument("model_dirs", type=Path, nargs="+", metavar="MODEL_DIR")
    parser.add_argument("--device", default="cpu", choices=("cpu", "gpu"))
    parser.add_argument("--dtypes", default="float32", help="comma list of float32, bfloat16, float16")
    parser.add_argument("--batch-sizes", default="1,16,32")
    parser.add_argument("--seq-lens", help="comma list (default 32,128,512, those the models' "
                                           "max_position_embeddings allow)")
    parser.add_argument("--iters", type=int, default=10, help="timed iterations per row (after warm-up)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, help="CPU threads for every framework (default: the cores this process may use: "
                             "affinity, cgroup quota, physical cores; or OMP_NUM_THREADS)")
    parser.add_argument("--end-to-end", type=int, default=0, metavar="N",
                        help="also time tokenize + batch + forward over the first N QQP pairs")
    parser.add_argument("--in-process", action="store_true",
                        help="time every path in this process (quicker to start; default: each path in a fresh "
                             "process that loads only its framework, as the ratios need)")
    parser.add_argument("--json", type=Path, dest="json_path", help="write the rows as JSON here")
    parser.add_argument("--plot", type=Path, help="write a latency plot (PNG) here")
    parser.set_defaults(func=run_bench)


def run_bench(args: argparse.Namespace) -> int:
    from paddleport.parity.bench import BenchOptions, run_benchmark

    _check_positive(("--iters", args.iters))
    options = BenchOptions(
        device=args.device, dtypes=_split(args.dtypes, str, "--dtypes"),
        batch_sizes=_split(args.batch_sizes, int, "--batch-sizes"),
        seq_lens=None if args.seq_lens is None else _split(args.seq_lens, int, "--seq-lens"),
        iters=args.iters, warmup=args.warmup, threads=args.threads, end_to_end=args.end_to_end,
        isolate=not args.in_process)
    result = run_benchmark(args.model_dirs, options)
    print(result.markdown())
    if args.json_path:
        args.json_path.parent.mkdir(parents=True, exist_ok=True)
        args.json_path.write_text(json.dumps(result.as_json(), indent=2) + "\n", encoding="utf-8")
        print(f"rows written to {args.json_path}")
    if args.plot:
        print(f"plot written to {result.plot(args.plot)}")
    return 0


def _split(text: str, kind: type, option: str) -> tuple:
    try:
        values = tuple(kind(part.strip()) for part in text.split(",") if part.strip())
    except ValueError:
        raise PaddleportError(option, f"{text!r} is not a comma-separated list of {kind.__name__}") from None
    if not values:
        raise PaddleportError(option, "is empty")
    return values


def _check_positive(*options: tuple[str, int]) -> None:
    for name, value in options:
        if value is not None and value < 1:
            raise PaddleportError(name, f"must be at least 1, got {value}")
