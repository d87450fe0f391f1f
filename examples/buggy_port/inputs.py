"""Inputs for the tiny encoder: small features, so the LayerNorm inputs have a small variance (where eps shows)."""

import numpy as np


def make_inputs(batch: int = 3, length: int = 5, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"features": (0.05 * rng.standard_normal((batch, length, 8))).astype(np.float32)}


if __name__ == "__main__":
    import sys

    np.savez(sys.argv[1] if len(sys.argv) > 1 else "encoder_inputs.npz", **make_inputs())
