"""Conversion speed and memory on a bert-base-uncased-size checkpoint (seeded random weights, ~440 MB).

Prints, measured side by side in one run (median of --repeats):
  - conversion wall time / a plain safetensors read-and-write of the same file (target <= 1.2)
  - conversion peak RSS / checkpoint size (target <= 1.2)
Each measurement runs in a fresh child process; peak RSS is the child's ru_maxrss (the checkpoint is
written by another child, so that no child inherits a large parent's RSS).

    .venv/bin/python benchmarks/bench_convert.py [--repeats 3] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from paddleport import runtime
from paddleport.models.presets import BERT_BASE_UNCASED

BERT_BASE_CONFIG = dict(BERT_BASE_UNCASED, architectures=["BertForMaskedLM"], model_type="bert")

PLAIN_COPY = """
import sys, safetensors.numpy as st
st.save_file(st.load_file(sys.argv[1]), sys.argv[2], metadata={"format": "pt"})
"""
CONVERT = """
import sys
from paddleport.convert import convert_checkpoint
convert_checkpoint(sys.argv[1], sys.argv[2], progress=False)
"""


def write_checkpoint(directory: Path, seed: int = 0) -> Path:
    """The bert-base-uncased parameter set (the table's HF names and shapes), seeded normal(0, 0.02)."""
    import numpy as np
    import safetensors.numpy

    from paddleport.convert import parameter_specs

    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(BERT_BASE_CONFIG))
    tensors = {spec.hf_name: (rng.standard_normal(spec.hf_shape, dtype=np.float32) * 0.02)
               for spec in parameter_specs(BERT_BASE_CONFIG, "BertForMaskedLM")}
    safetensors.numpy.save_file(tensors, str(directory / "model.safetensors"), metadata={"format": "pt"})
    return directory / "model.safetensors"


def run_child(code: str, *args: str) -> tuple[float, int]:
    """(wall seconds, peak RSS bytes) of ``python -c code args``."""
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-c", code, *args])
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"child failed with status {status}: {code.strip().splitlines()[-1]}")
    return elapsed, usage.ru_maxrss * 1024  # ru_maxrss is in KiB on Linux


WRITE_CHECKPOINT = """
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from bench_convert import write_checkpoint
write_checkpoint(Path(sys.argv[1]))
"""


def measure(workdir: Path, repeats: int) -> dict:
    # Written by a child: a child's ru_maxrss starts at its parent's RSS when forked (it survives exec), so the
    # parent must not hold the ~440 MB of arrays it wrote when it starts the measured children.
    run_child(WRITE_CHECKPOINT, str(workdir / "hf"), str(Path(__file__).resolve().parent))
    weights = workdir / "hf" / "model.safetensors"
    size = weights.stat().st_size
    copies, conversions = [], []
    for index in range(repeats):
        copies.append(run_child(PLAIN_COPY, str(weights), str(workdir / f"copy{index}.safetensors")))
        conversions.append(run_child(CONVERT, str(workdir / "hf"), str(workdir / f"paddle{index}")))
    copy_time = statistics.median(t for t, _ in copies)
    convert_time = statistics.median(t for t, _ in conversions)
    convert_rss = max(rss for _, rss in conversions)
    return {
        "checkpoint_mb": size / 2**20,
        "plain_read_write_s": copy_time,
        "plain_read_write_peak_rss_mb": max(rss for _, rss in copies) / 2**20,
        "convert_s": convert_time,
        "convert_peak_rss_mb": convert_rss / 2**20,
        "time_ratio": convert_time / copy_time,
        "rss_ratio": convert_rss / size,
        "repeats": repeats,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    with runtime.setup("cpu", frameworks=()) as settings:  # conversion runs no framework: records the CPU
        with tempfile.TemporaryDirectory(dir=args.workdir) as workdir:
            result = measure(Path(workdir), args.repeats) | {"runtime": settings.as_json()}
    print(runtime.describe(settings))
    print(f"checkpoint: bert-base-uncased size, {result['checkpoint_mb']:.0f} MiB float32 safetensors")
    print("| step | median wall s | peak RSS MiB |")
    print("|---|---|---|")
    print(f"| plain safetensors read + write | {result['plain_read_write_s']:.2f} | "
          f"{result['plain_read_write_peak_rss_mb']:.0f} |")
    print(f"| paddleport convert | {result['convert_s']:.2f} | {result['convert_peak_rss_mb']:.0f} |")
    print(f"time ratio convert / plain read+write: {result['time_ratio']:.2f} (target <= 1.2)")
    print(f"peak RSS / checkpoint size: {result['rss_ratio']:.2f} (target <= 1.2)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
