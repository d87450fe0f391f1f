#!/usr/bin/env bash
# Full GPU comparison: torch eager (fp32, bf16/fp16 weights, autocast), Paddle eager and paddle.inference
# (GPU passes, IR optimisation) on bert-base-uncased and squeezebert-uncased sized encoders.
#
# Needs a CUDA build of both frameworks in the environment (e.g. paddlepaddle-gpu==3.3.1 and a CUDA torch).
# Usage: benchmarks/gpu_bench.sh [OUT_DIR]   (writes OUT_DIR/gpu_bench.json, .png and .md)
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PY:-$ROOT/.venv/bin/python}"
OUT="${1:-$ROOT/bench_out}"
mkdir -p "$OUT"

"$PY" - <<'PY'
import sys
import paddle, torch
problems = []
if not (torch.cuda.is_available() and torch.cuda.device_count()):
    problems.append("torch has no CUDA device (install a CUDA build of torch)")
if not (paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count()):
    problems.append("paddle has no CUDA device (install paddlepaddle-gpu)")
if problems:
    sys.exit("gpu_bench.sh: " + "; ".join(problems))
print(f"torch {torch.__version__} on {torch.cuda.get_device_name(0)}, paddle {paddle.__version__}")
PY

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cd "$ROOT"
"$PY" - "$WORK" <<'PY'
import sys
from pathlib import Path
sys.path.insert(0, "benchmarks")
from bench_inference import BERT_BASE_UNCASED, SQUEEZEBERT_UNCASED, write_random_checkpoint
work = Path(sys.argv[1])
write_random_checkpoint(work / "bert-base-uncased", "BertModel", BERT_BASE_UNCASED)
write_random_checkpoint(work / "squeezebert-uncased", "SqueezeBertModel", SQUEEZEBERT_UNCASED)
PY

"$PY" -m paddleport bench "$WORK/bert-base-uncased" "$WORK/squeezebert-uncased" \
    --device gpu --dtypes float32,float16,bfloat16 --batch-sizes 1,16,32 --seq-lens 32,128,512 \
    --iters 50 --warmup 5 --end-to-end 1000 \
    --json "$OUT/gpu_bench.json" --plot "$OUT/gpu_bench.png" | tee "$OUT/gpu_bench.md"
