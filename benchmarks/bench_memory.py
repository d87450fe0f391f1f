"""Peak RSS of each CPU inference path on its own: bert-base-uncased size (seeded random weights), batch 16 x 128.

``paddleport bench`` times every path in one process, so a row's peak RSS also holds what earlier rows left
(the torch reference model, the Paddle eager model, the export's traced model: Paddle's and glibc's allocators
keep freed memory).  Here the files are prepared first (conversion, ``paddleport export``, both ONNX exports),
then each path runs in a fresh child process that imports only its framework, builds the path exactly as
``bench`` does (``paddleport.parity.bench``'s runners), runs warm-up + timed calls, and reports its
``ru_maxrss``.  Prints peak RSS per path and its ratio to torch eager (target for the fastest Paddle path:
<= 1.3).

    .venv/bin/python benchmarks/bench_memory.py [--threads N] [--iters 3] [--json OUT] [--tiny]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[1])
sys.path.insert(0, ROOT)

PATHS = ("torch eager", "paddle eager", "paddle inference", "paddle inference (glibc malloc)",
         "onnxruntime torch.onnx", "onnxruntime paddle2onnx")
# The same path with glibc's default malloc thresholds: a user's MALLOC_* value makes runtime.setup leave malloc
# alone, so this row shows what paddleport's kept freed blocks (runtime.setup, for eager speed) cost in RSS.
GLIBC_MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "131072"}

CHILD = """
import json, resource, sys
from pathlib import Path
import numpy as np
from paddleport import runtime
from paddleport.parity import bench
path, files, batch_size, seq_len, threads, iters = sys.argv[1], json.loads(sys.argv[2]), *map(int, sys.argv[3:7])
framework = path.split()[0]
# the settings bench applies (CPU-specific environment, threads, allocator), for this path's framework only
runtime.setup("cpu", threads, [framework] if framework in runtime.FRAMEWORKS else [])
if framework == "torch":
    from paddleport.parity.loading import load_torch_model, CheckpointPair, read_config
    model = load_torch_model(CheckpointPair(Path(files["hf"]), Path(files["paddle"]), "BertModel",
                                            read_config(Path(files["hf"]))))
    run = bench.torch_runner(model, "cpu", "float32", autocast=False)
elif path == "paddle eager":
    run = bench.paddle_eager_runner(Path(files["paddle"]), "BertModel", "cpu", "float32")
elif path.startswith("paddle inference"):
    run = bench.paddle_inference_runner(Path(files["export"]), "cpu", "float32", threads)
else:
    run = bench.onnxruntime_runner(Path(files[path.split()[1]]), "cpu", threads)
batch = bench.synthetic_batch(batch_size, seq_len, 30522, 0)
run(batch)  # the first call sets up (oneDNN primitives, reordered weights); later calls are the steady state
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
timing = bench.time_runner(run, batch, framework=framework, device="cpu", iters=iters, warmup=1)
faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / (len(timing.latencies_s) + 1)
print(json.dumps({"path": path, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "median_ms": timing.median_ms, "page_faults_per_call": faults}))
"""


PREPARE = """
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[3])
from bench_inference import TINY, write_random_checkpoint
from paddleport.convert import convert_checkpoint
from paddleport.models.presets import BERT_BASE_UNCASED
from paddleport.parity.export import export_model
from paddleport.parity.loading import load_torch_model, CheckpointPair, read_config
from paddleport.parity.onnx_runtime import export_paddle_onnx, export_torch_onnx
root, tiny = Path(sys.argv[1]), sys.argv[2] == "1"
write_random_checkpoint(root / "hf", "BertModel", {**BERT_BASE_UNCASED, **(TINY if tiny else {})})
convert_checkpoint(root / "hf", root / "paddle", to="paddle", progress=False)
export_model(root / "paddle", root / "export")
export_paddle_onnx(root / "export", root / "paddle2onnx.onnx")
model = load_torch_model(CheckpointPair(root / "hf", root / "paddle", "BertModel", read_config(root / "hf")))
export_torch_onnx(model, root / "torch.onnx", "last_hidden_state")
"""


def prepare(workdir: Path, tiny: bool) -> dict[str, str]:
    """The checkpoint in both layouts, the exported program and both ONNX files, all made by a child process:
    a child's ru_maxrss starts at its parent's RSS when forked, so this parent stays small."""
    subprocess.run([sys.executable, "-c", PREPARE, str(workdir), "1" if tiny else "0",
                    str(Path(__file__).resolve().parent)], check=True, stdout=subprocess.DEVNULL, env=_child_env())
    return {"hf": str(workdir / "hf"), "paddle": str(workdir / "paddle"), "export": str(workdir / "export"),
            "torch.onnx": str(workdir / "torch.onnx"), "paddle2onnx": str(workdir / "paddle2onnx.onnx")}


def _child_env() -> dict[str, str]:
    """This checkout first on the children's path (they import paddleport from it)."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))}


def measure(path: str, files: dict[str, str], batch_size: int, seq_len: int, threads: int, iters: int) -> dict:
    output = subprocess.run([sys.executable, "-c", CHILD, path, json.dumps(files), str(batch_size), str(seq_len),
                             str(threads), str(iters)], check=True, capture_output=True, text=True,
                            env={**_child_env(), **(GLIBC_MALLOC_ENV if "glibc malloc" in path else {})}).stdout
    return json.loads(output.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    from paddleport.runtime import default_threads

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--tiny", action="store_true", help="2-layer model (smoke test)")
    args = parser.parse_args(argv)
    threads = args.threads or default_threads()
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as workdir:
        files = prepare(Path(workdir), args.tiny)
        results = [measure(path, files, args.batch_size, args.seq_len, threads, args.iters) for path in PATHS]
    torch_peak = results[0]["peak_rss_mb"]
    print(f"bert-base-uncased{' (tiny)' if args.tiny else ''}, batch {args.batch_size} x {args.seq_len}, "
          f"{threads} threads, each path in a fresh process")
    print("| path | peak RSS MiB | / torch eager | median ms | minor page faults per call |")
    print("|---|---|---|---|---|")
    for result in results:
        result["ratio_to_torch_eager"] = result["peak_rss_mb"] / torch_peak
        print(f"| {result['path']} | {result['peak_rss_mb']:.0f} | {result['ratio_to_torch_eager']:.2f} | "
              f"{result['median_ms']:.0f} | {result['page_faults_per_call']:.0f} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
