"""Difference statistics, the parity report and its table / JSON renderings (numpy only)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from paddleport.parity.metrics import REL_FLOOR, Difference, difference  # noqa: F401 (REL_FLOOR re-exported)

@dataclass
class TensorDiff:
    """Differences of one named tensor, reduced over every batch it was seen in (see ``metrics.difference``)."""

    name: str
    stats: Difference = field(default_factory=Difference)
    passed: bool = True
    # Where the first non-finite value was seen: {"batch": index or None, "index": [..]} (None when all finite).
    first_non_finite: dict | None = None

    def update(self, ours: np.ndarray, reference: np.ndarray, keep: np.ndarray | None = None,
               batch: int | None = None) -> None:
        """Fold one more pair of arrays (same shape; ``keep`` selects the compared positions) into the statistics."""
        try:
            more = difference(ours, reference, keep)
        except ValueError as error:
            raise ValueError(f"{self.name}: {error}") from None
        if self.first_non_finite is None and more.first_non_finite is not None:
            self.first_non_finite = {"batch": batch, "index": list(more.first_non_finite)}
        self.stats = self.stats.merged(more)

    @property
    def max_abs(self) -> float:
        return self.stats.max_abs

    @property
    def mean_abs(self) -> float:
        return self.stats.mean_abs

    @property
    def max_rel(self) -> float:
        return self.stats.max_rel

    @property
    def ref_max_abs(self) -> float:
        return self.stats.ref_max_abs

    @property
    def numel(self) -> int:
        return self.stats.numel

    @property
    def non_finite(self) -> int:
        return self.stats.non_finite

    def check_atol(self, atol: float) -> bool:
        self.passed = self.stats.within(atol)
        return self.passed

    def check_atol_or_scaled(self, atol: float, rtol_of_max: float) -> bool:
        """Gradient criterion: all finite, and max |Δ| <= atol or <= rtol_of_max * (largest |reference| entry)."""
        self.passed = self.stats.finite and (self.max_abs <= atol or self.max_abs <= rtol_of_max * self.ref_max_abs)
        return self.passed

    @property
    def scaled_error(self) -> float:
        """max |Δ| relative to the tensor's largest magnitude (how gradients are ranked; non-finite ranks first)."""
        if not self.stats.finite:
            return math.inf
        return self.max_abs / self.ref_max_abs if self.ref_max_abs > 0 else (0.0 if self.max_abs == 0 else math.inf)

    def non_finite_text(self) -> str:
        """'' when finite, else e.g. '3 non-finite, first at batch 0 index (2, 5)'."""
        if self.stats.finite:
            return ""
        where = self.first_non_finite or {}
        batch = f"batch {where['batch']} " if where.get("batch") is not None else ""
        return f"{self.non_finite} non-finite, first at {batch}index {tuple(where.get('index', []))}"

    def as_json(self) -> dict:
        stats = self.stats.as_json()
        return {
            "name": self.name, "max_abs": stats["max_abs"], "mean_abs": stats["mean_abs"], "max_rel": stats["max_rel"],
            "ref_max_abs": stats["ref_max_abs"], "numel": self.numel, "non_finite": self.non_finite,
            "first_non_finite": self.first_non_finite, "passed": self.passed,
        }


@dataclass
class GradReport:
    """Gradient comparison of one forward + backward pass."""

    passed: bool
    atol: float
    rtol_of_max: float
    loss: TensorDiff
    tensors: list[TensorDiff]
    first_failure: str | None = None
    criterion: str = "max_abs <= atol or max_abs <= rtol_of_max * max|grad_hf|"

    def diff(self, name: str) -> TensorDiff:
        return next(diff for diff in [self.loss, *self.tensors] if diff.name == name)

    def worst(self, count: int = 5) -> list[TensorDiff]:
        return sorted(self.tensors, key=lambda diff: diff.scaled_error, reverse=True)[:count]

    def as_json(self) -> dict:
        return {
            "passed": self.passed, "atol": self.atol, "rtol_of_max": self.rtol_of_max, "criterion": self.criterion,
            "first_failure": self.first_failure, "loss": self.loss.as_json(),
            "worst": [diff.name for diff in self.worst()], "tensors": [diff.as_json() for diff in self.tensors],
        }


@dataclass
class ParityReport:
    """Forward (and optionally gradient) parity between a Hugging Face and a Paddle checkpoint."""

    passed: bool
    atol: float
    dtype: str
    device: str
    architecture: str
    hf_dir: str
    paddle_dir: str
    tensors: list[TensorDiff]
    first_failure: str | None = None
    positions: str = ("per-token outputs at the positions kept by the attention mask (padding is not compared); "
                      "per-sequence outputs (pooled output, classification logits) on every row")
    inputs: dict = field(default_factory=dict)
    grad: GradReport | None = None

    def as_json(self) -> dict:
        data = {key: value for key, value in asdict(self).items() if key not in ("tensors", "grad")}
        data["tensors"] = [diff.as_json() for diff in self.tensors]
        data["grad"] = self.grad.as_json() if self.grad is not None else None
        return data

    def write_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.as_json(), indent=2) + "\n", encoding="utf-8")
        return path

    def verdict(self) -> str:
        return "\n".join(self.verdict_lines())

    def verdict_lines(self) -> list[str]:
        """The forward verdict, and the gradient verdict when gradients were compared."""
        forward = (
            f"PASS: {len(self.tensors)} tensors within atol {self.atol:g} ({self.architecture}, {self.dtype}, "
            f"{self.device}); largest max |Δ| {max(diff.max_abs for diff in self.tensors):.3g}"
            if self.first_failure is None
            else f"FAIL: first tensor over atol {self.atol:g} is {self.first_failure} "
            f"({_failure_text(self._diff(self.first_failure))})"
        )
        lines = [f"forward {forward}"]
        if self.grad is not None:
            worst = self.grad.worst(1)
            worst_text = f"worst {worst[0].name} max |Δ| {worst[0].max_abs:.3g}" if worst else "no gradients"
            verdict = "PASS" if self.grad.passed else (
                f"FAIL at {self.grad.first_failure} ({_failure_text(self.grad.diff(self.grad.first_failure))})")
            lines.append(f"grad    {verdict}: {len(self.grad.tensors)} parameter gradients, {worst_text}")
        return lines

    def _diff(self, name: str) -> TensorDiff:
        return next(diff for diff in self.tensors if diff.name == name)

    def table(self) -> str:
        sections = [format_table(self.tensors, "forward tensor")]
        if self.grad is not None:
            sections.append(format_table([self.grad.loss], "loss"))
            sections.append(format_table(self.grad.worst(10), "gradient (worst 10)"))
        return "\n\n".join(sections)


def _failure_text(diff: TensorDiff) -> str:
    return diff.non_finite_text() or f"max |Δ| {diff.max_abs:.3g}"


def format_table(diffs: list[TensorDiff], title: str) -> str:
    """One row per tensor; a tensor holding NaN/inf says how many and where the first is, in a last column."""
    width = max([len(title)] + [len(diff.name) for diff in diffs])
    header = f"{title:<{width}}  {'max_abs':>10}  {'mean_abs':>10}  {'max_rel':>10}  ok   non-finite"
    rows = [
        f"{diff.name:<{width}}  {diff.max_abs:>10.3e}  {diff.mean_abs:>10.3e}  {diff.max_rel:>10.3e}  "
        f"{'yes' if diff.passed else 'NO ':<3}  {diff.non_finite_text() or '-'}".rstrip()
        for diff in diffs
    ]
    return "\n".join([header, "-" * len(header), *rows])
