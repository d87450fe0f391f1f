"""paddleport's float32 CPU kernels (``cpu_kernels.cc``), compiled on first use as a Paddle custom-op library.

Paddle 3.3's eager CPU kernels for softmax, layer norm, GELU and dropout are single-threaded and slow next to
torch's (measured on 2 cores, 32 x 80 tokens: softmax 12 ms vs 1.4, layer-norm backward 13 ms vs 0.9, GELU
backward 16 ms vs 3.2); these four ops with their gradients made up most of the gap in BERT fine-tuning.

``cpu_kernels()`` builds the library once per machine with ``paddle.utils.cpp_extension.load`` (g++, ~20 s;
cached under ``PADDLE_EXTENSION_DIR`` or ``~/.cache/paddle_extensions``) and returns it, or None when it cannot
be built (no compiler, not Linux) or ``PADDLEPORT_CPU_KERNELS=0``: callers then use Paddle's own kernels.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import functools
import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("cpu_kernels.cc")
DISABLE_ENV = "PADDLEPORT_CPU_KERNELS"


CXX_FLAGS = ["-O3", "-fopenmp", "-march=native", "-fno-math-errno"]
# OpenMP from the libiomp5 that Paddle's MKL uses: a second runtime (libgomp) would spin beside it
LD_FLAGS = ["-l:libiomp5.so"]


def _build_tag() -> str:
    import hashlib

    return hashlib.sha256(SOURCE.read_bytes() + repr((CXX_FLAGS, LD_FLAGS)).encode()).hexdigest()[:12]


@functools.lru_cache(maxsize=1)
def cpu_kernels():
    if os.environ.get(DISABLE_ENV, "1") == "0":
        return None
    try:
        from paddle.utils.cpp_extension import load
        from paddle.utils.cpp_extension.extension_utils import get_build_directory

        name = f"paddleport_cpu_kernels_{_build_tag()}"
        lock_path = Path(get_build_directory()) / f"{name}.lock"
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(lock_path, "w") as lock:  # processes of one distributed run build it once
            fcntl.flock(lock, fcntl.LOCK_EX)
            with contextlib.redirect_stdout(io.StringIO()):  # Paddle prints "Compiling..." on every load
                return load(name=name, sources=[str(SOURCE)], extra_cxx_cflags=CXX_FLAGS,
                            extra_ldflags=LD_FLAGS, verbose=False)
    except Exception as error:  # no compiler, headers or toolchain: Paddle's own kernels still work
        logger.warning("paddleport CPU kernels unavailable, using Paddle's (slower) kernels: %s",
                       str(error).splitlines()[0] if str(error) else type(error).__name__)
        return None
