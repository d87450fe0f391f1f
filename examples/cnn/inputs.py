"""Writes the CNN example's inputs: ``python -m examples.cnn.inputs cnn_inputs.npz``."""

import sys

import numpy as np


def make_inputs(batch: int = 4, seed: int = 0) -> dict[str, np.ndarray]:
    return {"images": np.random.default_rng(seed).standard_normal((batch, 3, 8, 8)).astype(np.float32)}


if __name__ == "__main__":
    np.savez(sys.argv[1] if len(sys.argv) > 1 else "cnn_inputs.npz", **make_inputs())
