#!/usr/bin/env bash
# Data-parallel / sharded fine-tuning on GPUs (NCCL): torchrun and python -m paddle.distributed.launch, 1 and N
# processes (one per GPU), fp32 and bf16, and the sharded modes (torch: zero1, zero2, fsdp; Paddle: zero1, zero2).
# Every cell is one `paddleport run-glue` launch through benchmarks/bench_distributed.py; results as JSON and a
# markdown table in OUT_DIR.
#
# Needs: a CUDA torch; paddlepaddle-gpu==3.3.1 for the Paddle half (skipped with a message otherwise).
# Usage: [MODEL_DIR=/models/bert-base-uncased] [NPROC=8] [SAMPLES=20000] [MAX_LENGTH=128] [BATCH=256] \
#        benchmarks/gpu_distributed.sh [OUT_DIR]
# Default model: the bundled all-MiniLM-L6-v2; default NPROC: every visible GPU. BATCH is the *global* micro-batch
# (BATCH / NPROC per GPU), so every process count trains the same steps.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PY:-$ROOT/.venv/bin/python}"
OUT="${1:-$ROOT/bench_out/gpu_distributed}"
SAMPLES="${SAMPLES:-20000}"
MAX_LENGTH="${MAX_LENGTH:-128}"
BATCH="${BATCH:-256}"
mkdir -p "$OUT"
cd "$ROOT"

"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'gpu_distributed.sh: torch has no CUDA device')"
NPROC="${NPROC:-$("$PY" -c 'import torch; print(torch.cuda.device_count())')}"
PROCESSES=(1)
if (( NPROC > 1 )); then PROCESSES+=("$NPROC"); fi
MODEL=()
if [[ -n "${MODEL_DIR:-}" ]]; then MODEL=(--model "$MODEL_DIR"); fi
COMMON=(--device gpu --processes "${PROCESSES[@]}" --max-train-samples "$SAMPLES" --max-eval-samples 2000
        --max-length "$MAX_LENGTH" --batch-size "$BATCH" "${MODEL[@]}")

"$PY" benchmarks/bench_distributed.py "${COMMON[@]}" --frameworks torch --precisions fp32 bf16 \
    --sharding none zero1 zero2 fsdp --out-dir "$OUT/torch" --json "$OUT/torch.json" | tee "$OUT/torch.txt"

if "$PY" -c "import paddle, sys; sys.exit(0 if paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() else 1)"; then
    "$PY" benchmarks/bench_distributed.py "${COMMON[@]}" --frameworks paddle --precisions fp32 bf16 \
        --sharding none zero1 zero2 --out-dir "$OUT/paddle" --json "$OUT/paddle.json" | tee "$OUT/paddle.txt"
else
    echo "gpu_distributed.sh: paddle has no CUDA device (pip install paddlepaddle-gpu==3.3.1); Paddle half skipped" >&2
fi
echo "tables: $OUT/torch.txt $OUT/paddle.txt"
