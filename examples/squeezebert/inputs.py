"""Inputs for the tiny SqueezeBERT: ``python -m examples.squeezebert.inputs squeezebert_inputs.npz``."""

import sys

import numpy as np


def make_inputs(batch: int = 2, length: int = 7, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    attention_mask = np.ones((batch, length), np.int64)
    attention_mask[1, 5:] = 0  # the second sequence is padded
    return {"input_ids": rng.integers(1, 64, (batch, length)).astype(np.int64), "attention_mask": attention_mask,
            "token_type_ids": (np.arange(length) >= 4).astype(np.int64)[None].repeat(batch, 0)}


if __name__ == "__main__":
    np.savez(sys.argv[1] if len(sys.argv) > 1 else "squeezebert_inputs.npz", **make_inputs())
