"""paddleport's CPU kernels against Paddle's own ops: forward + backward time of one call, side by side.

``.venv/bin/python benchmarks/bench_cpu_kernels.py [--batch 32] [--seq 80] [--threads N]`` — shapes of
all-MiniLM-L6-v2 fine-tuning (hidden 384, 12 heads, intermediate 1536). Prints the CPU and instruction set it ran
on (``paddleport.runtime.detect_cpu``), then a markdown table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def median_ms(fn, iters: int) -> float:
    """``paddleport bench``'s timing (3 warm-up calls, then ``iters`` timed ones) of a no-argument call."""
    from paddleport.parity.bench import time_runner

    return time_runner(lambda _batch: fn(), {}, framework="paddle", device="cpu", iters=iters, warmup=3).median_ms


def cases(batch: int, seq: int):
    """(name, paddle-ops fn, kernel fn), each a forward + backward of one call."""
    import paddle

    from paddleport.models.kernels import cpu_kernels
    from paddleport.models.layers import _LinearFunction

    functional, kernels = paddle.nn.functional, cpu_kernels()
    rng = np.random.default_rng(0)

    def leaf(*shape):
        tensor = paddle.to_tensor(rng.standard_normal(shape).astype("float32"))
        tensor.stop_gradient = False
        return tensor

    scores, mask = leaf(batch, 12, seq, seq), paddle.zeros([batch, 1, 1, seq])
    # Without the kernels the model adds a same-shape mask, materialised once per forward for all its layers
    # (layers.attention_mask_for_layers), never the ~30x slower broadcast add: the Paddle-ops row does the same.
    full_mask = mask.expand([batch, 12, seq, seq])
    hidden, weight, bias = leaf(batch, seq, 384), leaf(384), leaf(384)
    wide = leaf(batch, seq, 1536)
    rows, dense_weight, dense_bias = leaf(batch * seq, 384), leaf(384, 1536), leaf(1536)

    def step(fn, *inputs):
        return lambda: paddle.grad(fn().sum(), list(inputs))

    return [
        (f"softmax(scores * scale + mask), {batch}x12x{seq}x{seq}",
         step(lambda: functional.softmax(scores * 0.17 + full_mask, axis=-1), scores),
         step(lambda: kernels.pp_softmax_mask(scores, mask, 0.17), scores)),
        (f"layer norm, {batch}x{seq}x384",
         step(lambda: functional.layer_norm(hidden, [384], weight, bias, 1e-12), hidden, weight, bias),
         step(lambda: kernels.pp_layer_norm(hidden, weight, bias, 1e-12)[0], hidden, weight, bias)),
        (f"GELU (erf), {batch}x{seq}x1536", step(lambda: functional.gelu(wide), wide),
         step(lambda: kernels.pp_gelu(wide), wide)),
        (f"dropout p=0.1, {batch}x{seq}x1536", step(lambda: functional.dropout(wide, 0.1), wide),
         step(lambda: kernels.pp_dropout(wide, 0.1, 7), wide)),
        (f"Linear 384->1536 on {batch * seq} rows (bias gradient)",
         step(lambda: paddle.matmul(rows, dense_weight) + dense_bias, rows, dense_weight, dense_bias),
         step(lambda: _LinearFunction.apply(rows, dense_weight, dense_bias), rows, dense_weight, dense_bias)),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq", type=int, default=80)
    parser.add_argument("--threads", type=int, help="default: the cores this process may use (paddleport.runtime)")
    parser.add_argument("--iters", type=int, default=20)
    args = parser.parse_args(argv)
    from paddleport import runtime
    from paddleport.models.kernels import cpu_kernels

    with runtime.setup("cpu", args.threads, frameworks=("paddle",)) as settings:  # builds the kernels
        if cpu_kernels() is None:
            print("paddleport's CPU kernels could not be built here", file=sys.stderr)
            return 1
        print(f"{runtime.describe(settings)}\n")
        print_table(args)
    return 0


def print_table(args: argparse.Namespace) -> None:
    print("| op (forward + backward) | Paddle ops ms | paddleport ms | speed-up |\n|---|---|---|---|")
    for name, paddle_fn, kernel_fn in cases(args.batch, args.seq):
        reference, ours = median_ms(paddle_fn, args.iters), median_ms(kernel_fn, args.iters)
        print(f"| {name} | {reference:.2f} | {ours:.2f} | {reference / ours:.1f}x |")


if __name__ == "__main__":
    raise SystemExit(main())
