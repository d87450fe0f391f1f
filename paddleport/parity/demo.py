"""One step of ``make demo``: the compare verdict for a converted pair and a small latency table."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from paddleport.parity.bench import BenchOptions, run_benchmark
from paddleport.parity.compare import compare_models
from paddleport.parity.report import ParityReport

DEMO_BENCH = BenchOptions(batch_sizes=(8,), seq_lens=(64,), iters=5, warmup=1,
                          paths=("torch eager", "paddle eager", "paddle inference"))


@dataclass
class DemoParity:
    report: ParityReport  # the verdicts (report.passed, report.verdict_lines())
    text: str  # what the demo prints for this pair


def demo_step(hf_dir: str | Path, paddle_dir: str | Path, *, bench: BenchOptions | None = DEMO_BENCH) -> DemoParity:
    """Compare (forward + gradients) ``hf_dir`` with ``paddle_dir``; add a small bench table unless bench=None."""
    report = compare_models(hf_dir, paddle_dir, grad=True)
    lines = [f"parity {Path(hf_dir).name} vs {Path(paddle_dir).name}:", report.verdict()]
    last_layer = [diff for diff in report.tensors if diff.name.startswith("layer.")][-1]
    logits = [diff for diff in report.tensors if diff.name == "logits"]
    for label, diff in (("last hidden state", last_layer), *(("logits", diff) for diff in logits)):
        lines.append(f"  {label} ({diff.name}): max |Δ| {diff.max_abs:.3g}, mean |Δ| {diff.mean_abs:.3g}")
    if not report.passed:
        failures = [diff for diff in report.tensors if not diff.passed]
        lines += [f"  {diff.name}: max |Δ| {diff.max_abs:.3g}" for diff in failures[:3]]
    if bench is not None and report.passed:  # a model that fails parity is not timed (nor exported for it)
        lines += ["", run_benchmark([paddle_dir], bench).markdown()]
    elif bench is not None:
        lines.append("  (not benchmarked: parity failed)")
    return DemoParity(report, "\n".join(lines))
