"""Difference statistics, the parity report and its table / JSON renderings (numpy only)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

# |a - b| / max(|b|, REL_FLOOR): keeps the relative difference finite where the reference is ~0.
REL_FLOOR = 1e-6


@dataclass
class TensorDiff:
    """Differences of one named tensor, reduced over every batch it was seen in."""

    name: str
    max_abs: float = 0.0
    mean_abs: float = 0.0
    max_rel: float = 0.0
    ref_max_abs: float = 0.0
    numel: int = 0
    passed: bool = True

    def update(self, ours: np.ndarray, reference: np.ndarray) -> None:
        """Fold one more pair of arrays (same shape) into the running statistics."""
        if ours.shape != reference.shape:
            raise ValueError(f"{self.name}: shape {ours.shape} vs reference {reference.shape}")
        ours, reference = ours.astype(np.float64), reference.astype(np.float64)
        delta = np.abs(ours - reference)
        if delta.size == 0:
            return
        total = self.mean_abs * self.numel + float(delta.sum())
        self.numel += delta.size
        self.mean_abs = total / self.numel
        self.max_abs = max(self.max_abs, float(delta.max()))
        self.max_rel = max(self.max_rel, float((delta / np.maximum(np.abs(reference), REL_FLOOR)).max()))
        self.ref_max_abs = max(self.ref_max_abs, float(np.abs(reference).max()))

    def check_atol(self, atol: float) -> bool:
        self.passed = bool(self.max_abs <= atol)
        return self.passed

    def check_atol_or_scaled(self, atol: float, rtol_of_max: float) -> bool:
        """Gradient criterion: max |Δ| <= atol, or max |Δ| <= rtol_of_max * (largest |reference| entry)."""
        self.passed = bool(self.max_abs <= atol or self.max_abs <= rtol_of_max * self.ref_max_abs)
        return self.passed

    @property
    def scaled_error(self) -> float:
        """max |Δ| relative to the tensor's largest magnitude (how gradients are ranked)."""
        return self.max_abs / self.ref_max_abs if self.ref_max_abs > 0 else (0.0 if self.max_abs == 0 else np.inf)

    def as_json(self) -> dict:
        return {
            "name": self.name, "max_abs": self.max_abs, "mean_abs": self.mean_abs, "max_rel": self.max_rel,
            "ref_max_abs": self.ref_max_abs, "passed": self.passed,
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
    positions: str = "positions kept by the attention mask (padding positions are not compared)"
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
        forward = (
            f"PASS: {len(self.tensors)} tensors within atol {self.atol:g} ({self.architecture}, {self.dtype}, "
            f"{self.device}); largest max |Δ| {max(diff.max_abs for diff in self.tensors):.3g}"
            if self.first_failure is None
            else f"FAIL: first tensor over atol {self.atol:g} is {self.first_failure} "
            f"(max |Δ| {self._diff(self.first_failure).max_abs:.3g})"
        )
        lines = [f"forward {forward}"]
        if self.grad is not None:
            worst = self.grad.worst(1)
            worst_text = f"worst {worst[0].name} max |Δ| {worst[0].max_abs:.3g}" if worst else "no gradients"
            verdict = "PASS" if self.grad.passed else f"FAIL at {self.grad.first_failure}"
            lines.append(f"grad    {verdict}: {len(self.grad.tensors)} parameter gradients, {worst_text}")
        return "\n".join(lines)

    def _diff(self, name: str) -> TensorDiff:
        return next(diff for diff in self.tensors if diff.name == name)

    def table(self) -> str:
        sections = [format_table(self.tensors, "forward tensor")]
        if self.grad is not None:
            sections.append(format_table([self.grad.loss], "loss"))
            sections.append(format_table(self.grad.worst(10), "gradient (worst 10)"))
        return "\n\n".join(sections)


def format_table(diffs: list[TensorDiff], title: str) -> str:
    width = max([len(title)] + [len(diff.name) for diff in diffs])
    header = f"{title:<{width}}  {'max_abs':>10}  {'mean_abs':>10}  {'max_rel':>10}  ok"
    rows = [
        f"{diff.name:<{width}}  {diff.max_abs:>10.3e}  {diff.mean_abs:>10.3e}  {diff.max_rel:>10.3e}  "
        f"{'yes' if diff.passed else 'NO'}"
        for diff in diffs
    ]
    return "\n".join([header, "-" * len(header), *rows])
