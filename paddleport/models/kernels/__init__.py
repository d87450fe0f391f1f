"""paddleport's float32 CPU kernels (``cpu_kernels.cc``), built once per machine as a Paddle custom-op library.

Paddle 3.3's eager CPU kernels for softmax, layer norm, GELU and dropout are single-threaded and slow next to
torch's; with their gradients they made up most of the gap in BERT fine-tuning (per-op figures:
``benchmarks/bench_cpu_kernels.py``, quoted in the README).

``cpu_kernels()`` builds the library once per machine with ``paddle.utils.cpp_extension.load`` (g++, ~20 s;
cached under ``PADDLE_EXTENSION_DIR`` or ``~/.cache/paddle_extensions``) and returns it, or None when it cannot
be built (no compiler, not Linux) or ``PADDLEPORT_CPU_KERNELS=0``: callers then use Paddle's own kernels.
``paddleport.runtime.setup`` (every entry point) and the Paddle training backend call it before any work, so
a build happens there, announced by one line on stderr, not inside a timed step or the first forward pass.
The build is tuned to this CPU (``-march=native``), so its cache key includes the CPU's feature flags: a home
directory shared by different machines never loads a binary built for another CPU.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import os
import platform
import sys
import tempfile
import warnings
from pathlib import Path

logger = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("cpu_kernels.cc")
DISABLE_ENV = "PADDLEPORT_CPU_KERNELS"
BUILD_MESSAGE = "building paddleport CPU kernels (once per machine, ~20 s)..."
# -fno-trapping-math: without it GCC does not if-convert the clamps in Erf/Exp on AVX2 (no mask registers) and
# leaves the GELU loops scalar there ("control flow in loop"); with it they vectorise on AVX2 as on AVX-512.
# The kernels never read floating-point exception flags, and no result changes.
CXX_FLAGS = ["-O3", "-fopenmp", "-march=native", "-fno-math-errno", "-fno-trapping-math"]
# OpenMP from the libiomp5 that Paddle's MKL uses: a second runtime (libgomp) would spin beside it; and that MKL
# (libmklml_intel, shipped in Paddle's x86 wheels without its headers) for the sgemm tiles of the SqueezeBERT kernels
LD_FLAGS = ["-l:libiomp5.so", "-l:libmklml_intel.so"]


def _cpu_features() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor()
    return next((line for line in lines if line.startswith("flags")), platform.processor())


def _build_tag() -> str:
    import hashlib

    key = SOURCE.read_bytes() + repr((CXX_FLAGS, LD_FLAGS, platform.machine(), _cpu_features())).encode()
    return hashlib.sha256(key).hexdigest()[:12]


@contextlib.contextmanager
def _captured_output():
    """Paddle's loader prints "Compiling user custom op" and runs a setuptools build (a child process that logs
    its steps) on every load: their output goes to a scratch file, at the file-descriptor level, and so does
    Python's sys.stdout/sys.stderr (which may not be fds 1 and 2, e.g. under pytest's capture). Yields a
    function returning what was written so far (the compiler's errors when a build fails)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    python_output = io.StringIO()
    with tempfile.TemporaryFile() as sink, contextlib.redirect_stdout(python_output), \
            contextlib.redirect_stderr(python_output):
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)

        def written() -> str:
            sink.seek(0)
            return sink.read().decode(errors="replace") + python_output.getvalue()

        try:
            yield written
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, original in zip((1, 2), saved):
                os.dup2(original, fd)
                os.close(original)


def _build_error(error: Exception, output: str) -> str:
    """One line: the compiler's first error if it printed one, else the exception's first line."""
    compiler_errors = [line.strip() for line in output.splitlines() if "error:" in line]
    message = str(error).splitlines()[0] if str(error) else type(error).__name__
    return compiler_errors[0] if compiler_errors else message


def _source_copy(build_directory: Path, name: str) -> Path:
    """The kernels' source at a path named by its content (``name`` carries the source hash): Paddle's loader
    rebuilds whenever the source *path* changes, so building from the package's own file recompiled the
    kernels for every checkout (each git worktree, each fresh clone) of the same code."""
    copy = build_directory / f"{name}.cc"
    if not copy.is_file() or copy.read_bytes() != SOURCE.read_bytes():
        partial = copy.with_suffix(f".cc.{os.getpid()}")
        partial.write_bytes(SOURCE.read_bytes())
        partial.replace(copy)
    return copy


@functools.lru_cache(maxsize=1)
def cpu_kernels():
    if os.environ.get(DISABLE_ENV, "1") == "0":
        return None
    try:
        import fcntl

        with warnings.catch_warnings():  # "No ccache found": irrelevant for one source file
            warnings.simplefilter("ignore", UserWarning)
            from paddle.utils.cpp_extension import load
            from paddle.utils.cpp_extension.extension_utils import get_build_directory

        name = f"paddleport_cpu_kernels_{_build_tag()}"
        build_directory = Path(get_build_directory())
        lock_path = build_directory / f"{name}.lock"
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        if not (build_directory / name / f"{name}.so").is_file():  # say so before the user waits
            print(BUILD_MESSAGE, file=sys.stderr, flush=True)
        with open(lock_path, "w") as lock, _captured_output() as written:
            fcntl.flock(lock, fcntl.LOCK_EX)  # the processes of one distributed run build it once
            try:
                source = _source_copy(build_directory, name)
                return load(name=name, sources=[str(source)], extra_cxx_cflags=CXX_FLAGS, extra_ldflags=LD_FLAGS,
                            verbose=False)
            except Exception as error:
                reason = _build_error(error, written())
    except Exception as error:  # no fcntl, no cpp_extension
        reason = _build_error(error, "")
    # no compiler, headers or toolchain: Paddle's own kernels still work
    logger.warning("paddleport CPU kernels unavailable, using Paddle's (slower) kernels: %s", reason)
    return None
