"""The fine-tuning step of ``make demo``: MiniLM on the QQP sample, briefly, in both frameworks."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from paddleport.glue_runners.reporting import framework_comparison
from paddleport.glue_runners.runner import GlueRunConfig, run_glue

DEMO_SETTINGS = dict(task="qqp", max_train_samples=1024, max_eval_samples=200, epochs=1, max_length=64, batch_size=16,
                     lr=1e-4, warmup_ratio=0.1, seed=42, overwrite=True, verbose=False,
                     dropout_masks="shared")  # the parity device, asked for: both runs draw the same masks


# README's fine-tuning target: the two frameworks' dev accuracies within 1 point.
MAX_ACCURACY_GAP = 0.01


@dataclass
class DemoFineTune:
    results: dict[str, dict]  # each framework's metrics.json
    accuracy_gap: float  # |dev accuracy paddle - torch|, last epoch (nan when a run has none)
    text: str

    @property
    def passed(self) -> bool:
        return self.accuracy_gap <= MAX_ACCURACY_GAP  # False for nan

    def verdict(self) -> str:
        state = "PASS" if self.passed else "FAIL"
        return (f"fine-tune {state}: |dev accuracy paddle - torch| {100 * self.accuracy_gap:.1f} points "
                f"(target <= {100 * MAX_ACCURACY_GAP:.0f})")


def demo_step(minilm_paddle_dir: str | Path, minilm_hf_dir: str | Path, out_dir: str | Path) -> DemoFineTune:
    """Fine-tune all-MiniLM-L6-v2 (1,024 train pairs, 200 dev pairs, 1 epoch, max length 64) with torch from the
    Hugging Face directory and with Paddle from the converted one; the two runs side by side and their verdict."""
    out_dir = Path(out_dir)
    models = {"torch": Path(minilm_hf_dir), "paddle": Path(minilm_paddle_dir)}
    results = {}
    for framework, model in models.items():
        results[framework] = run_glue(GlueRunConfig(framework=framework, model=model, output_dir=out_dir / framework,
                                                    cache_dir=out_dir / "cache", **DEMO_SETTINGS))
    settings = ", ".join(f"{key}={DEMO_SETTINGS[key]}" for key in ("max_train_samples", "max_eval_samples", "epochs",
                                                                   "max_length", "batch_size", "lr"))
    accuracies = [results[framework]["epochs"][-1].get("eval_accuracy") for framework in models]
    gap = abs(accuracies[1] - accuracies[0]) if None not in accuracies else math.nan
    text = (f"QQP sample fine-tuning ({settings}); reports in {out_dir}/<framework>/metrics.json\n"
            + framework_comparison(results))
    return DemoFineTune(results, gap, text)
