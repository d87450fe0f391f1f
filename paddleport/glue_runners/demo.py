"""The fine-tuning step of ``make demo``: MiniLM on the QQP sample, briefly, in both frameworks."""

from __future__ import annotations

from pathlib import Path

from paddleport.glue_runners.reporting import framework_comparison
from paddleport.glue_runners.runner import GlueRunConfig, run_glue

DEMO_SETTINGS = dict(task="qqp", max_train_samples=1024, max_eval_samples=200, epochs=1, max_length=64, batch_size=16,
                     lr=1e-4, warmup_ratio=0.1, seed=42, overwrite=True, verbose=False,
                     dropout_masks="shared")  # the parity device, asked for: both runs draw the same masks


def demo_step(minilm_paddle_dir: str | Path, minilm_hf_dir: str | Path, out_dir: str | Path) -> str:
    """Fine-tune all-MiniLM-L6-v2 (1,024 train pairs, 200 dev pairs, 1 epoch, max length 64) with torch from the
    Hugging Face directory and with Paddle from the converted one; returns the two runs side by side."""
    out_dir = Path(out_dir)
    models = {"torch": Path(minilm_hf_dir), "paddle": Path(minilm_paddle_dir)}
    results = {}
    for framework, model in models.items():
        results[framework] = run_glue(GlueRunConfig(framework=framework, model=model, output_dir=out_dir / framework,
                                                    cache_dir=out_dir / "cache", **DEMO_SETTINGS))
    settings = ", ".join(f"{key}={DEMO_SETTINGS[key]}" for key in ("max_train_samples", "max_eval_samples", "epochs",
                                                                   "max_length", "batch_size", "lr"))
    return f"QQP sample fine-tuning ({settings}); reports in {out_dir}/<framework>/metrics.json\n" + \
        framework_comparison(results)
