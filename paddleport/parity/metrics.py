"""The one difference function of paddleport: |ours - reference| where a non-finite value is a failure (numpy only).

Every place that measures a difference (``compare`` forward and gradients, ``export`` verification,
``train-parity``, ``bench``'s max |Δ| column, the tests) goes through :func:`difference`.  A NaN or an
infinity on either side never reads as "no difference": ``max(0.0, nan)`` is 0.0 in Python and
``np.abs(nan - x) <= atol`` is False but ``max()`` over it can still hide it, so a position where either side
is non-finite is counted, its first index is kept, and ``max_abs`` becomes ``inf`` (which every ``max`` and
``<=`` propagates correctly).  :meth:`Difference.within` is the pass criterion.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# |a - b| / max(|b|, REL_FLOOR): keeps the relative difference finite where the reference is ~0.
REL_FLOOR = 1e-6


@dataclass(frozen=True)
class Difference:
    """Statistics of |ours - reference| over the compared positions.

    ``non_finite`` counts compared positions where either side is NaN or ±inf; ``first_non_finite`` is the index
    of the first such position in the full (unmasked) arrays.  When any is present, ``max_abs`` and ``max_rel``
    are ``inf``; ``mean_abs`` and ``ref_max_abs`` are taken over the finite positions only.
    """

    numel: int = 0
    max_abs: float = 0.0
    mean_abs: float = 0.0
    max_rel: float = 0.0
    ref_max_abs: float = 0.0
    non_finite: int = 0
    first_non_finite: tuple[int, ...] | None = None

    @property
    def finite(self) -> bool:
        return self.non_finite == 0

    def within(self, atol: float) -> bool:
        """Every compared value finite on both sides and max |Δ| <= atol."""
        return self.finite and self.max_abs <= atol

    def merged(self, later: Difference) -> Difference:
        """Fold the statistics of ``later`` (more positions of the same quantity) into these."""
        numel = self.numel + later.numel
        finite_count = (self.numel - self.non_finite) + (later.numel - later.non_finite)
        finite_sum = (self.mean_abs * (self.numel - self.non_finite) + later.mean_abs * (later.numel - later.non_finite))
        return Difference(
            numel=numel, max_abs=max(self.max_abs, later.max_abs), mean_abs=finite_sum / finite_count if finite_count else 0.0,
            max_rel=max(self.max_rel, later.max_rel), ref_max_abs=max(self.ref_max_abs, later.ref_max_abs),
            non_finite=self.non_finite + later.non_finite,
            first_non_finite=self.first_non_finite if self.first_non_finite is not None else later.first_non_finite,
        )

    def describe_non_finite(self) -> str:
        """'' when finite, else e.g. '3 non-finite, first at (0, 5, 17)'."""
        if self.finite:
            return ""
        return f"{self.non_finite} non-finite, first at {self.first_non_finite}"

    def as_json(self) -> dict:
        """Strict JSON: a non-finite number is written as null (the count and first position say why)."""
        return {"numel": self.numel, "max_abs": json_number(self.max_abs), "mean_abs": json_number(self.mean_abs),
                "max_rel": json_number(self.max_rel), "ref_max_abs": json_number(self.ref_max_abs),
                "non_finite": self.non_finite,
                "first_non_finite": list(self.first_non_finite) if self.first_non_finite is not None else None}


def difference(ours, reference, keep: np.ndarray | None = None) -> Difference:
    """|ours - reference| over the positions ``keep`` selects (a boolean array over the leading axes), all if None.

    Arrays must have the same shape (a mismatch is a ValueError: it is a bug, never a difference).  Computed in
    float64 so the statistics do not add rounding of their own.
    """
    ours, reference = np.asarray(ours), np.asarray(reference)
    if ours.shape != reference.shape:
        raise ValueError(f"shape {ours.shape} vs reference {reference.shape}")
    ours, reference = ours.astype(np.float64), reference.astype(np.float64)
    if keep is None:
        keep = np.ones(ours.shape, dtype=bool)
    keep = np.asarray(keep, dtype=bool)
    if keep.shape != ours.shape[:keep.ndim]:
        raise ValueError(f"position mask of shape {keep.shape} does not match the leading axes of {ours.shape}")
    selected = np.broadcast_to(keep.reshape(keep.shape + (1,) * (ours.ndim - keep.ndim)), ours.shape)
    bad = selected & ~(np.isfinite(ours) & np.isfinite(reference))
    good = selected & ~bad
    non_finite = int(bad.sum())
    numel = int(selected.sum())
    if numel == 0:
        return Difference()
    delta = np.abs(ours - reference)[good]
    ref_abs = np.abs(reference[good])
    if delta.size:
        max_abs, mean_abs = float(delta.max()), float(delta.mean())
        max_rel = float((delta / np.maximum(ref_abs, REL_FLOOR)).max())
        ref_max_abs = float(ref_abs.max())
    else:
        max_abs = mean_abs = max_rel = ref_max_abs = 0.0
    first = tuple(int(i) for i in np.argwhere(bad)[0]) if non_finite else None
    if non_finite:
        max_abs = max_rel = math.inf
    return Difference(numel=numel, max_abs=max_abs, mean_abs=mean_abs, max_rel=max_rel, ref_max_abs=ref_max_abs,
                      non_finite=non_finite, first_non_finite=first)


def scalar_difference(ours: float, reference: float) -> Difference:
    """:func:`difference` of two numbers (a loss)."""
    return difference(np.float64(ours), np.float64(reference))


def named_differences(ours: dict[str, np.ndarray], reference: dict[str, np.ndarray]) -> dict[str, Difference]:
    """:func:`difference` of every name; both sides must hold the same names."""
    if set(ours) != set(reference):
        missing = sorted(set(ours) ^ set(reference))
        raise ValueError(f"names differ between the two sides: {', '.join(missing[:5])}")
    return {name: difference(ours[name], reference[name]) for name in reference}


def largest(differences: dict[str, Difference]) -> tuple[str, Difference]:
    """The first name holding a non-finite value, else the name with the largest max |Δ| (first wins ties)."""
    if not differences:
        raise ValueError("no differences to rank")
    first_bad = next((key for key, diff in differences.items() if not diff.finite), None)
    name = first_bad if first_bad is not None else max(differences, key=lambda key: differences[key].max_abs)
    return name, differences[name]


def json_number(value: float) -> float | None:
    return value if math.isfinite(value) else None
