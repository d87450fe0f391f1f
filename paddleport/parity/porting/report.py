"""What ``paddleport diff`` found: per-module, per-gradient and per-step differences, the verdict, a markdown tree."""

from __future__ import annotations

import fnmatch
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from paddleport.parity.metrics import difference, json_number

if TYPE_CHECKING:
    from paddleport.parity.porting.training import TrainingVerdict

# (rtol, atol) per dtype, as torch.testing.assert_close sets them.
DEFAULT_TOLERANCES = {
    "float64": (1e-7, 1e-7), "float32": (1.3e-6, 1e-5), "float16": (1e-3, 1e-5), "bfloat16": (1.6e-2, 1e-5),
}
EXACT = (0.0, 0.0)  # integer and boolean outputs
# Gradients: |Δ| <= atol + rtol * max|torch gradient of that tensor|. A gradient entry is a sum over the batch and
# positions, and its small entries carry the rounding of the large ones (an embedding row summed over 14 tokens
# differs by 3e-5 at magnitude 1.6 between the frameworks), so rtol scales with the tensor's largest entry, as
# ``paddleport compare --grad`` does (1e-5 of the largest entry in float32).
GRADIENT_TOLERANCES = {
    "float64": (1e-7, 1e-7), "float32": (1e-5, 1e-5), "float16": (1e-3, 1e-5), "bfloat16": (1.6e-2, 1e-5),
}


def dtype_name(tensor) -> str:
    """'float32', 'bfloat16', 'int64', ... for a torch or Paddle tensor."""
    return str(tensor.dtype).rsplit(".", 1)[-1]


def tolerance_for(name: str, dtype: str, overrides: dict[str, tuple[float, float]] | None,
                  defaults: dict[str, tuple[float, float]] = DEFAULT_TOLERANCES) -> tuple[float, float]:
    """(rtol, atol): the first override whose fnmatch pattern matches the torch-side name, else the dtype's."""
    for pattern, tolerance in (overrides or {}).items():
        if fnmatch.fnmatchcase(name, pattern):
            return tuple(tolerance)
    return defaults.get(dtype, EXACT)


@dataclass
class TensorStats:
    """One tensor compared: Paddle's (``ours``) against torch's (the reference)."""

    name: str
    dtype: str
    shape: list[int]
    rtol: float
    atol: float
    relative_to: str  # "element" (|Δ| <= atol + rtol * |reference|) or "max" (... * max |reference|)
    max_abs: float = 0.0
    mean_abs: float = 0.0
    max_rel: float = 0.0
    over_tolerance: int = 0  # elements with |Δ| > atol + rtol * |reference|, or not finite on either side
    non_finite: int = 0  # elements NaN or infinite on either side (each a failure)
    first_non_finite: list[int] | None = None
    problem: str | None = None  # a shape mismatch, say
    compared: int = 0  # elements compared (fewer than the tensor's with a position mask)

    @property
    def passed(self) -> bool:
        return self.problem is None and self.over_tolerance == 0

    def as_dict(self) -> dict:
        """Strict JSON: an infinite statistic is null (``non_finite`` and ``first_non_finite`` say why)."""
        data = asdict(self)
        for key in ("max_abs", "mean_abs", "max_rel"):
            data[key] = json_number(data[key])
        return {**data, "passed": self.passed}


def compare_arrays(name: str, ours: np.ndarray, reference: np.ndarray, dtype: str,
                   tolerance: tuple[float, float], relative_to: str = "element",
                   keep: np.ndarray | None = None) -> TensorStats:
    """Paddle's array against torch's: the statistics of ``parity.metrics.difference`` (a NaN or infinity on
    either side is counted, never hidden), and how many elements exceed atol + rtol * |torch value| (or * the
    largest |torch value| with ``relative_to="max"``), every non-finite one included. ``keep``: a boolean mask
    over the leading axes (the positions compared, e.g. the tokens an attention mask keeps); all when None."""
    rtol, atol = tolerance
    keep = None if keep is None else np.asarray(keep, dtype=bool)
    stats = TensorStats(name, dtype, list(reference.shape), rtol, atol, relative_to)
    if ours.shape != reference.shape:
        stats.problem = f"shape {list(ours.shape)} in Paddle vs {list(reference.shape)} in torch"
        return stats
    try:
        measured = difference(ours, reference, keep)
    except ValueError as error:  # a position mask that does not fit the output
        stats.problem = str(error)
        return stats
    stats.max_abs, stats.mean_abs, stats.max_rel = measured.max_abs, measured.mean_abs, measured.max_rel
    stats.non_finite = measured.non_finite
    stats.first_non_finite = list(measured.first_non_finite) if measured.first_non_finite is not None else None
    stats.compared = measured.numel
    ours, reference = ours.astype(np.float64), reference.astype(np.float64)
    if keep is not None:  # positions not compared count as equal
        selected = np.broadcast_to(np.reshape(keep, keep.shape + (1,) * (ours.ndim - keep.ndim)), ours.shape)
        ours, reference = np.where(selected, ours, 0.0), np.where(selected, reference, 0.0)
    finite = np.isfinite(ours) & np.isfinite(reference)
    magnitude = np.abs(np.where(finite, reference, 0.0))
    delta = np.abs(np.where(finite, ours - reference, 0.0))
    scale = magnitude.max(initial=0.0) if relative_to == "max" else magnitude
    stats.over_tolerance = int((delta > atol + rtol * scale).sum()) + measured.non_finite
    return stats


@dataclass
class ModuleDiff:
    """One call of a matched module pair: its outputs and its own buffers after the call."""

    name: str  # torch side
    paddle_name: str
    call: int  # 0 for the first call of this module in the forward pass, 1 for the second, ...
    torch_type: str
    paddle_type: str
    outputs: list[TensorStats] = field(default_factory=list)
    buffers: list[TensorStats] = field(default_factory=list)
    problem: str | None = None  # "not called in Paddle", "outputs: 3 in torch, 1 in Paddle", a call error

    @property
    def passed(self) -> bool:
        return self.problem is None and all(stats.passed for stats in self.outputs + self.buffers)

    @property
    def label(self) -> str:
        return self.name if self.call == 0 else f"{self.name} (call {self.call + 1})"

    def worst(self) -> TensorStats | None:
        compared = self.outputs + self.buffers
        return max(compared, key=lambda stats: stats.max_abs) if compared else None

    def as_dict(self) -> dict:
        return {"name": self.name, "paddle_name": self.paddle_name, "call": self.call, "torch_type": self.torch_type,
                "paddle_type": self.paddle_type, "problem": self.problem, "passed": self.passed,
                "outputs": [stats.as_dict() for stats in self.outputs],
                "buffers": [stats.as_dict() for stats in self.buffers]}


@dataclass
class TrainingReport:
    optimizer: str
    scheduler: str | None
    verdict: TrainingVerdict  # the losses and the start judged (parameters reported, not judged, by diff)
    parameters: list[TensorStats]
    known_differences: list[str]

    @property
    def losses(self) -> list[dict]:  # {"step", "torch", "paddle", "abs_diff"}
        return self.verdict.loss_rows()

    @property
    def loss_tolerance(self) -> float:
        return self.verdict.loss_tolerance

    @property
    def max_loss_diff(self) -> float:
        return self.verdict.max_loss_diff

    @property
    def passed(self) -> bool:
        """Losses within tolerance and the runs started from the same weights. Parameter differences are reported
        but not judged: Adam turns a gradient that is pure rounding noise (a conv bias followed by BatchNorm) into
        learning-rate-sized steps of either sign."""
        return self.verdict.passed

    def as_dict(self) -> dict:
        return {"optimizer": self.optimizer, "scheduler": self.scheduler, "losses": self.losses,
                "loss_tolerance": self.loss_tolerance, "max_loss_diff": json_number(self.max_loss_diff),
                "passed": self.passed, "failures": self.verdict.failures,
                "known_differences": self.known_differences,
                "parameters": [stats.as_dict() for stats in self.parameters]}


@dataclass
class DiffReport:
    mode: str  # "full" (both models run whole) or "single-step" (each Paddle layer fed torch's inputs)
    train_mode: bool
    weights: dict  # WeightMap.as_dict()
    modules: list[ModuleDiff]  # matched pairs in the order torch finished their forward calls
    unmatched_torch: list[str]  # torch modules with no Paddle layer of the mapped name
    unmatched_paddle: list[str]
    tree: list[tuple[str, str, int]]  # (torch name, type, depth) of every torch module, in definition order
    gradients: list[TensorStats] | None = None
    training: TrainingReport | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def first_divergence(self) -> str | None:
        """The torch-side name of the first module (in forward order) whose output or state diverges."""
        return next((module.name for module in self.modules if not module.passed), None)

    @property
    def first_gradient_divergence(self) -> str | None:
        return next((stats.name for stats in self.gradients or () if not stats.passed), None)

    @property
    def passed(self) -> bool:
        return (self.first_divergence is None and self.first_gradient_divergence is None
                and (self.training is None or self.training.passed))

    def to_dict(self) -> dict:
        return {
            "passed": self.passed, "first_divergence": self.first_divergence,
            "first_gradient_divergence": self.first_gradient_divergence, "mode": self.mode,
            "train_mode": self.train_mode, "weights": self.weights,
            "modules": [module.as_dict() for module in self.modules],
            "unmatched_torch": self.unmatched_torch, "unmatched_paddle": self.unmatched_paddle,
            "gradients": None if self.gradients is None else [stats.as_dict() for stats in self.gradients],
            "training": None if self.training is None else self.training.as_dict(), "notes": self.notes,
        }

    def write_json(self, path: str | Path) -> Path:
        """Written whole or not at all (a temporary file renamed into place)."""
        from paddleport.glue_runners.reporting import write_json

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, self.to_dict())
        return path

    def markdown(self) -> str:
        """The torch model as a tree: each module's Paddle counterpart and largest |Δ|, the first divergence marked."""
        by_name: dict[str, list[ModuleDiff]] = {}
        for module in self.modules:
            by_name.setdefault(module.name, []).append(module)
        first = self.first_divergence
        lines = [f"### paddleport diff ({self.mode}, {'train' if self.train_mode else 'eval'} mode): "
                 f"{'PASS' if self.passed else 'FAIL'}", ""]
        for name, type_name, depth in self.tree:
            label = name or "(model)"
            calls = by_name.get(name)
            if calls is None:
                status = "not matched" if name in self.unmatched_torch else "not called"
            else:
                status = "; ".join(_call_status(call) for call in calls) + f" → `{calls[0].paddle_name or '(model)'}`"
            marker = "  **← first divergence**" if name == first else ""
            lines.append(f"{'  ' * depth}- `{label}` ({type_name}): {status}{marker}")
        return "\n".join(lines)

    def summary(self) -> str:
        lines = [f"{len(self.modules)} module calls compared ({self.mode}, {'train' if self.train_mode else 'eval'} "
                 f"mode); {len(self.weights['pairs'])} tensors mapped"]
        for side in ("torch", "paddle"):
            if self.weights[f"unmapped_{side}"]:
                lines.append(f"unmapped {side} tensors: {', '.join(self.weights[f'unmapped_{side}'])}")
        first = self.first_divergence
        if first is None:
            lines.append("forward: PASS")
        else:
            module = next(module for module in self.modules if module.name == first)
            lines.append(f"forward: FAIL, first divergence {first} ({module.torch_type} -> Paddle "
                         f"{module.paddle_name} {module.paddle_type}): {_call_status(module)}")
        if self.gradients is not None:
            grad_first = self.first_gradient_divergence
            lines.append(f"gradients: {len(self.gradients)} compared, "
                         + ("PASS" if grad_first is None else f"FAIL, first {grad_first}"))
        if self.training is not None:
            lines.append(f"training: {len(self.training.losses)} steps ({self.training.optimizer}), max |loss Δ| "
                         f"{self.training.max_loss_diff:.2e}: {'PASS' if self.training.passed else 'FAIL'}")
        lines += [f"note: {note}" for note in self.notes]
        lines.append("PASS" if self.passed else "FAIL")
        return "\n".join(lines)


def _call_status(module: ModuleDiff) -> str:
    if module.problem is not None:
        return module.problem
    worst = module.worst()
    if worst is None:
        return "no tensor outputs"
    verdict = "ok" if module.passed else "DIVERGES"
    failing = next((stats for stats in module.outputs + module.buffers if not stats.passed), worst)
    return (f"{verdict} ({failing.name}: max |Δ| {failing.max_abs:.2e}, mean |Δ| {failing.mean_abs:.2e}, "
            f"max rel {failing.max_rel:.2e}, {failing.over_tolerance} over tolerance)")
