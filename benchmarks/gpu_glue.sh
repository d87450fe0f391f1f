#!/usr/bin/env bash
# GPU fine-tuning comparison: bert-base-uncased on the full GLUE QQP (364k train / 40k dev pairs), 3 epochs,
# batch 32, lr 2e-5, max length 128, bf16 autocast (AMP=fp16 for loss scaling), torch then Paddle, same pipeline.
#
# Needs: a CUDA torch, paddlepaddle-gpu==3.3.1 for the Paddle half (skipped with a message otherwise),
#        a local bert-base-uncased directory (MODEL_DIR; config.json, model.safetensors, tokenizer files), and QQP
#        either as GLUE TSVs (QQP_DIR with train.tsv/dev.tsv) or in the datasets cache / hub (load_dataset("glue","qqp")).
# Usage: MODEL_DIR=/models/bert-base-uncased [QQP_DIR=/data/glue/QQP] [AMP=bf16] benchmarks/gpu_glue.sh [OUT_DIR]
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PY:-$ROOT/.venv/bin/python}"
OUT="${1:-$ROOT/bench_out/gpu_glue}"
MODEL_DIR="${MODEL_DIR:?set MODEL_DIR to a local bert-base-uncased checkpoint directory}"
AMP="${AMP:-bf16}"
EPOCHS="${EPOCHS:-3}"
mkdir -p "$OUT"
cd "$ROOT"

if [[ -n "${QQP_DIR:-}" ]]; then DATA=(--data-dir "$QQP_DIR"); else DATA=(--from-hub); fi
COMMON=(--task qqp --model "$MODEL_DIR" "${DATA[@]}" --epochs "$EPOCHS" --batch-size 32 --lr 2e-5 --max-length 128
        --warmup-ratio 0.06 --device gpu --amp "$AMP" --group-by-length --eval-steps 0 --save-steps 5000
        --cache-dir "$OUT/cache" --overwrite)

"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'gpu_glue.sh: torch has no CUDA device')"
"$PY" -m paddleport run-glue --framework torch --output-dir "$OUT/torch" "${COMMON[@]}"

if "$PY" -c "import paddle, sys; sys.exit(0 if paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() else 1)"; then
    "$PY" -m paddleport run-glue --framework paddle --output-dir "$OUT/paddle" "${COMMON[@]}"
else
    echo "gpu_glue.sh: paddle has no CUDA device (pip install paddlepaddle-gpu==3.3.1); Paddle half skipped" >&2
fi

"$PY" - "$OUT" <<'PY'
import json, sys
from pathlib import Path
from paddleport.glue_runners.reporting import framework_comparison
out = Path(sys.argv[1])
results = {name: json.loads((out / name / "metrics.json").read_text())
           for name in ("torch", "paddle") if (out / name / "metrics.json").is_file()}
table = framework_comparison(results)
print(table)
(out / "gpu_glue.md").write_text("```\n" + table + "\n```\n")
PY
