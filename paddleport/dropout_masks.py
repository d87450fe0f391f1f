"""Dropout masks that torch and Paddle draw identically ("shared" masks).

Each framework's own dropout draws its masks from its own generator, so two fine-tunes from the same weights on
the same batches still train differently: one seed's dev accuracy then differs by about a point between them
from the masks alone. With shared masks, whether element ``i`` of a dropout call is kept is a pure function of
the run's seed, the index of the training forward pass, the dropout's module name (the same in both
frameworks) and ``i``. Both frameworks then compute the same training run, up to float rounding, and a
checkpointed forward recomputed in backward draws the same mask again.

The bits come from a counter hash in 32-bit arithmetic (two rounds of Chris Wellons' *lowbias32*, keyed),
written once here for numpy, torch and Paddle integer tensors, and in C++ in ``models/kernels/cpu_kernels.cc``.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

MODES = ("shared", "native")
LOW32 = 0xFFFFFFFF
MAX_ELEMENTS = 2**32  # element indices are hashed as 32-bit counters
_LOWBIAS32 = (0x7FEB352D, 0x846CA68B)


def counter_hash32(indices: Any, key: int, constant: Callable[[int], Any] = int) -> Any:
    """32 random-looking bits (as non-negative int64 / uint64 values) per element index, keyed by the 64-bit
    ``key``. ``indices`` is a numpy (u)int64 array or a torch / Paddle int64 tensor of values below 2**32;
    ``constant`` turns a Python int into what the framework's operators accept (Paddle wants tensors).
    Products are masked to 32 bits, so int64 arithmetic wrapping at 2**64 gives the same bits as uint32."""
    low32 = constant(LOW32)
    bits = indices ^ constant(key & LOW32)
    for round_key in ((key >> 32) & LOW32, 0):
        bits = bits ^ (bits >> constant(16))
        bits = (bits * constant(_LOWBIAS32[0])) & low32
        bits = bits ^ (bits >> constant(15))
        bits = (bits * constant(_LOWBIAS32[1])) & low32
        bits = bits ^ (bits >> constant(16))
        if round_key:
            bits = bits ^ constant(round_key)
    return bits


def keep_threshold(p: float) -> int:
    """An element is kept when its hash is at least this (as the C++ kernel computes it from float32 ``p``)."""
    return min(LOW32, int(float(np.float32(p)) * 2.0**32))


def keep_scale(p: float) -> float:
    """``1 / (1 - p)`` rounded as float32 arithmetic rounds it (the kernel's ``1.f / (1.f - p)``)."""
    one = np.float32(1.0)
    return float(one / (one - np.float32(p)))


def site_id(module_name: str) -> int:
    """A dropout's identity in the mask schedule: its module name (the same in both frameworks' models)."""
    return zlib.crc32(module_name.encode())


def _splitmix64(value: int) -> int:
    value = (value + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return value ^ (value >> 31)


@dataclass
class DropoutMaskStream:
    """Where a run is in its schedule of shared masks: the trainer's seed, this process's rank (ranks see
    different examples, so they draw different masks) and how many training forward passes have started."""

    seed: int = 0
    rank: int = 0
    forward_index: int = 0

    def next_forward(self) -> None:
        """Call once before every training forward pass."""
        self.forward_index += 1

    def key(self, site: int) -> int:
        """The 63-bit key of the mask that dropout ``site`` draws in the current forward pass (fits an int64)."""
        key = 0
        for part in (self.seed, self.rank, self.forward_index, site):
            key = _splitmix64(key ^ (part & 0xFFFFFFFFFFFFFFFF))
        return key >> 1

    def state_dict(self) -> dict[str, int]:
        return {"seed": self.seed, "rank": self.rank, "forward_index": self.forward_index}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.seed, self.forward_index = int(state["seed"]), int(state["forward_index"])


def check_mask_size(numel: int) -> None:
    if numel >= MAX_ELEMENTS:
        raise ValueError(f"shared dropout masks index at most 2**32 elements per tensor, got {numel}")
