"""The one process-wide set-up paddleport makes: which CPU this is, and the settings torch and Paddle need on it.

Every entry point (``paddleport`` / ``python -m paddleport``, ``python -m paddleport.glue_runners``, each
process of a distributed launch, the scripts in ``benchmarks/``) calls :func:`setup` once, before any work.
Library users call it themselves, as early as possible (before ``import paddle``)::

    from paddleport import runtime

    with runtime.setup(device="cpu"):        # or: settings = runtime.setup(); ...; settings.restore()
        import paddle
        ...

What :func:`setup` does, and what :meth:`RuntimeSettings.restore` undoes:

- **AMD CPUs**: ``MKL_DEBUG_CPU_TYPE=5`` in the environment. Paddle's bundled MKL (mklml 2019.0 Update 5)
  picks its code path by CPU vendor and runs a slow generic sgemm on AMD (a 2048x384 @ 384x1536 float32 matmul:
  31-43 GFLOP/s on a 2-core EPYC, torch 137-160); this variable makes it use its AVX2 path (150 GFLOP/s). MKL
  reads it once, at its first call, so it must be in the environment before Paddle runs anything: set it
  before ``import paddle``. ``restore()`` removes it from the environment (child processes no longer inherit
  it); an MKL already initialised keeps the code path it chose.
- **Threads** (both frameworks): by default the cores this process may use — its CPU affinity, capped by the
  cgroup CPU quota (``/sys/fs/cgroup/cpu.max``) and by the physical core count — or ``OMP_NUM_THREADS`` when
  the user set it. Importing paddle otherwise pins Paddle to one OpenMP thread. Before paddle and torch are
  imported this is ``OMP_NUM_THREADS`` (their public route); for a framework already imported,
  ``torch.set_num_threads`` and Paddle's ``core.set_num_threads`` (Paddle has no public call). An explicit
  ``threads`` (``--num-threads``, ``--threads``) wins over ``OMP_NUM_THREADS``. ``restore()`` puts back the
  previous counts (for Paddle imported by :func:`setup`: the one thread its import would have given) and the
  environment.
- **CPU only** (``device="cpu"``, with Paddle among the frameworks): Paddle's ``FLAGS_use_stride_kernel`` off
  (dense transposes: with strided views the attention matmuls on transposed heads ran 10-20x slower), and
  glibc keeps freed blocks up to 32 MiB (``mallopt``: Paddle mallocs every tensor and glibc unmaps large
  blocks on free, so each new activation page-faulted its memory in again: ``x * 2`` on a 10 MB tensor took
  4.4 ms that way and 1.0 ms with reuse; the cost is that the process keeps its peak heap). ``restore()`` sets
  the flag back, and sets ``M_MMAP_THRESHOLD`` and ``M_TRIM_THRESHOLD`` back to glibc's initial values
  (128 KiB each); glibc's dynamic raising of the mmap threshold stays off (any ``mallopt`` of these turns it
  off for the life of the process and nothing turns it back on). A user's ``MALLOC_MMAP_THRESHOLD_`` /
  ``MALLOC_TRIM_THRESHOLD_`` / ``GLIBC_TUNABLES`` malloc setting means paddleport leaves malloc alone.
- paddleport's CPU kernels are built (once per machine, with a line on stderr) before any work.

Any other value the user set in the environment is never overridden. If paddle was imported before :func:`setup` on an
AMD CPU, one warning says what to do. ``PADDLEPORT_CPUINFO=FILE`` makes :func:`detect_cpu` read FILE instead of
``/proc/cpuinfo`` (to try the AMD behaviour on another CPU; the tests use it).
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import logging
import math
import os
import platform
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

CPUINFO_ENV = "PADDLEPORT_CPUINFO"
MKL_CPU_TYPE_ENV = "MKL_DEBUG_CPU_TYPE"
MKL_AVX2_CPU_TYPE = "5"
THREADS_ENV = "OMP_NUM_THREADS"
AMD_VENDOR, INTEL_VENDOR = "AuthenticAMD", "GenuineIntel"
FRAMEWORKS = ("torch", "paddle")
# the instruction-set flags that decide which code paths the math libraries and paddleport's kernels take
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_bf16", "amx_tile", "amx_bf16")
PADDLE_CPU_FLAGS = {"FLAGS_use_stride_kernel": False}

# glibc mallopt parameters and values (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_GLIBC_DEFAULT_THRESHOLD = 128 * 1024
_KEPT_BLOCK_BYTES = 32 * 2**20  # glibc's largest mmap threshold
_MALLOC_USER_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")

# OMP_NUM_THREADS as the user left it: importing paddle overwrites it (with "1" when unset), so it is read when
# this module is first imported, if paddle was not imported before.
_USER_THREADS = None if "paddle" in sys.modules else os.environ.get(THREADS_ENV)
_active: list["RuntimeSettings"] = []  # settings applied and not yet restored, innermost last
_set_by_paddleport: dict[str, str] = {}  # environment values this module wrote (not the user's)
_malloc_holders = 0
_warned_late_paddle = False


# --- the CPU ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CpuInfo:
    """Vendor, model name and instruction-set flags of the CPU (from ``/proc/cpuinfo``)."""

    vendor: str
    model_name: str
    flags: frozenset[str] = frozenset()

    @property
    def is_amd(self) -> bool:
        return self.vendor == AMD_VENDOR

    @property
    def avx2(self) -> bool:
        return "avx2" in self.flags

    @property
    def avx512f(self) -> bool:
        return "avx512f" in self.flags

    @property
    def amx(self) -> bool:
        return "amx_tile" in self.flags

    @property
    def native_bf16(self) -> bool:
        """bfloat16 arithmetic in hardware (AVX-512 BF16 or AMX-BF16); elsewhere bf16 is emulated and slow."""
        return bool({"avx512_bf16", "amx_bf16"} & self.flags)

    @property
    def isa(self) -> str:
        """The widest vector instruction set, e.g. ``AVX-512 + AMX``, ``AVX2``."""
        if self.avx512f:
            return "AVX-512 + AMX" if self.amx else "AVX-512"
        return "AVX2" if self.avx2 else ("AVX" if "avx" in self.flags else "SSE or older")

    def as_json(self) -> dict:
        return {"vendor": self.vendor, "model_name": self.model_name, "isa": self.isa,
                "flags": sorted(flag for flag in ISA_FLAGS if flag in self.flags)}


def detect_cpu(cpuinfo_text: str | None = None) -> CpuInfo:
    """The CPU described by ``cpuinfo_text`` (``/proc/cpuinfo`` format), else by the file named in
    ``PADDLEPORT_CPUINFO``, else by ``/proc/cpuinfo``; the first processor's entry is read."""
    if cpuinfo_text is None:
        try:
            cpuinfo_text = Path(os.environ.get(CPUINFO_ENV) or "/proc/cpuinfo").read_text(errors="replace")
        except OSError:  # not Linux
            return CpuInfo(platform.processor() or "unknown", platform.processor() or platform.machine())
    fields: dict[str, str] = {}
    for line in cpuinfo_text.splitlines():
        if not line.strip():
            if fields:
                break  # end of the first processor's entry
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return CpuInfo(fields.get("vendor_id", "unknown"), fields.get("model name", platform.machine()),
                   frozenset(fields.get("flags", "").split()))


# --- threads ---------------------------------------------------------------------------------------------------

def cgroup_cpu_limit(cgroup_root: str | Path = "/sys/fs/cgroup") -> int | None:
    """Whole CPUs allowed by the cgroup CPU quota (v2 ``cpu.max``, v1 ``cpu.cfs_quota_us``), None if unlimited."""
    root = Path(cgroup_root)
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        if quota == "max":
            return None
        return max(1, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return max(1, math.ceil(quota / period)) if quota > 0 and period > 0 else None


def available_cores(cgroup_root: str | Path = "/sys/fs/cgroup") -> int:
    """The cores this process may use: its CPU affinity, capped by the cgroup quota and the physical cores."""
    allowed = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    limits = [allowed, cgroup_cpu_limit(cgroup_root)]
    try:
        import psutil

        limits.append(psutil.cpu_count(logical=False))
    except ImportError:
        pass
    return max(1, min(limit for limit in limits if limit))


def default_threads() -> int:
    """``OMP_NUM_THREADS`` if the user set it, else :func:`available_cores`."""
    try:
        if _USER_THREADS is not None and int(_USER_THREADS) > 0:
            return int(_USER_THREADS)
    except ValueError:
        pass
    return available_cores()


# --- the settings ----------------------------------------------------------------------------------------------

@dataclass(eq=False)
class RuntimeSettings:
    """What :func:`setup` applied (recorded in bench rows and ``metrics.json``); ``restore()`` undoes it."""

    device: str
    threads: int
    cpu: CpuInfo
    frameworks: tuple[str, ...]
    environment: dict[str, str] = field(default_factory=dict)  # variables set by paddleport
    user_environment: dict[str, str] = field(default_factory=dict)  # the user's values, left alone
    paddle_flags: dict[str, object] = field(default_factory=dict)
    malloc_kept_block_bytes: int | None = None
    paddle_imported_first: bool = False
    _previous_environment: dict[str, str | None] = field(default_factory=dict, repr=False)
    _previous_threads: dict[str, int] = field(default_factory=dict, repr=False)
    _previous_flags: dict[str, object] = field(default_factory=dict, repr=False)
    _restored: bool = field(default=False, repr=False)

    def as_json(self) -> dict:
        return {"cpu": self.cpu.as_json(), "device": self.device, "threads": self.threads,
                "frameworks": list(self.frameworks), "environment": dict(self.environment),
                "user_environment": dict(self.user_environment), "paddle_flags": dict(self.paddle_flags),
                "malloc_kept_block_bytes": self.malloc_kept_block_bytes,
                "paddle_imported_first": self.paddle_imported_first}

    def restore(self) -> None:
        """Undo what :func:`setup` changed (once; later calls do nothing)."""
        global _malloc_holders
        if self._restored:
            return
        self._restored = True
        _active[:] = [settings for settings in _active if settings is not self]
        if self._previous_flags:
            import paddle

            paddle.set_flags(self._previous_flags)
        for framework, count in self._previous_threads.items():
            _set_framework_threads(framework, count)
        if self.malloc_kept_block_bytes is not None:
            _malloc_holders -= 1
            if _malloc_holders == 0:
                _mallopt(_GLIBC_DEFAULT_THRESHOLD, _GLIBC_DEFAULT_THRESHOLD)
        for name, value in self._previous_environment.items():
            if value is None:
                os.environ.pop(name, None)
                _set_by_paddleport.pop(name, None)
            else:
                os.environ[name] = value
                _set_by_paddleport[name] = value

    def __enter__(self) -> "RuntimeSettings":
        return self

    def __exit__(self, *exc_info) -> None:
        self.restore()


def describe(settings: RuntimeSettings | dict | None) -> str:
    """One line: the CPU and the settings applied (``settings`` or its ``as_json()`` record)."""
    if settings is None:
        return "runtime: not recorded"
    record = settings.as_json() if isinstance(settings, RuntimeSettings) else settings
    cpu = record["cpu"]
    applied = {**record["environment"], **record["user_environment"], **record["paddle_flags"]}
    return (f"CPU: {cpu['model_name']} ({cpu['vendor']}, {cpu['isa']}); {record['threads']} threads"
            + "".join(f"; {name}={value}" for name, value in applied.items()))


def active() -> RuntimeSettings | None:
    """The innermost settings applied by :func:`setup` and not restored, or None."""
    return _active[-1] if _active else None


def setup(device: str = "cpu", threads: int | None = None, frameworks: Iterable[str] = FRAMEWORKS, *,
          cpu: CpuInfo | None = None, build_kernels: bool = True) -> RuntimeSettings:
    """Apply the settings for ``device`` and this CPU (see the module docstring); returns them, to restore.

    ``threads``: CPU threads of both frameworks (default :func:`default_threads`). ``frameworks``: the ones this
    process will use (a framework not named is not imported). ``build_kernels``: build paddleport's CPU kernels
    now (CPU runs using Paddle), not inside the first forward pass.
    """
    frameworks = tuple(name for name in frameworks if name in FRAMEWORKS)
    cpu = cpu or detect_cpu()
    if threads is not None and int(threads) < 0:
        from paddleport.errors import PaddleportError

        raise PaddleportError("--num-threads", f"must be at least 1, got {threads}")
    explicit_threads = bool(threads)
    threads = int(threads) if threads else default_threads()
    settings = RuntimeSettings(device, threads, cpu, frameworks, paddle_imported_first="paddle" in sys.modules)
    if cpu.is_amd:
        in_place = os.environ.get(MKL_CPU_TYPE_ENV) == MKL_AVX2_CPU_TYPE  # e.g. by an enclosing setup
        _set_environment(settings, MKL_CPU_TYPE_ENV, MKL_AVX2_CPU_TYPE, user_wins=True)
        if settings.paddle_imported_first and not in_place and MKL_CPU_TYPE_ENV in settings.environment:
            _warn_late_paddle()
    if not settings.paddle_imported_first:  # Paddle reads it at import (and pins 1 thread without it)
        _set_environment(settings, THREADS_ENV, str(threads), user_wins=not explicit_threads)
    for framework in frameworks:
        _apply_threads(settings, framework)
    if "paddle" in frameworks and not settings.paddle_imported_first:
        _import_paddle(settings)
    if device == "cpu" and "paddle" in frameworks:
        _apply_paddle_cpu_flags(settings)
        _keep_freed_memory(settings)
    _active.append(settings)
    if build_kernels and device == "cpu" and "paddle" in frameworks:
        from paddleport.models.kernels import cpu_kernels

        cpu_kernels()
    return settings


def user_environment() -> dict[str, str]:
    """This process's environment as the user set it, for a child process that runs its own :func:`setup`:
    without the values paddleport's active settings wrote, and with the user's ``OMP_NUM_THREADS`` (importing
    paddle overwrites it)."""
    environment = dict(os.environ)
    for settings in reversed(_active):  # innermost first, so the outermost's earlier values end up in place
        for name, value in settings._previous_environment.items():
            if value is None:
                environment.pop(name, None)
            else:
                environment[name] = value
    if "paddle" in sys.modules:
        environment.pop(THREADS_ENV, None)
        if _USER_THREADS is not None:
            environment[THREADS_ENV] = _USER_THREADS
    return environment


@contextlib.contextmanager
def ensure(device: str = "cpu", threads: int | None = None, frameworks: Iterable[str] = FRAMEWORKS
           ) -> Iterator[RuntimeSettings]:
    """For library calls (``run_glue``, ``run_benchmark``): the active settings when they fit ``device``,
    ``threads`` and ``frameworks`` (the entry point's, left applied), else a :func:`setup` restored on exit."""
    current = active()
    frameworks = tuple(name for name in frameworks if name in FRAMEWORKS)
    if (current is not None and current.device == device and (not threads or current.threads == threads)
            and set(frameworks) <= set(current.frameworks)):
        yield current
        return
    with setup(device, threads, frameworks) as settings:
        yield settings


# --- the pieces ------------------------------------------------------------------------------------------------

def _set_environment(settings: RuntimeSettings, name: str, value: str, user_wins: bool) -> None:
    """Set ``name`` unless the user set it (a value paddleport wrote earlier is not the user's)."""
    current = os.environ.get(name)
    users = current is not None and _set_by_paddleport.get(name) != current
    if users and user_wins:
        settings.user_environment[name] = current
        return
    settings._previous_environment.setdefault(name, current)
    os.environ[name] = value
    _set_by_paddleport[name] = value
    settings.environment[name] = value


def _warn_late_paddle() -> None:
    global _warned_late_paddle
    if not _warned_late_paddle:
        _warned_late_paddle = True
        warnings.warn(f"paddle was imported before paddleport.runtime.setup(): on this AMD CPU Paddle's MKL may "
                      f"already run its slow generic code path. Call paddleport.runtime.setup() before importing "
                      f"paddle, or export {MKL_CPU_TYPE_ENV}={MKL_AVX2_CPU_TYPE} before starting Python.",
                      RuntimeWarning, stacklevel=3)


def _framework_threads(framework: str) -> int | None:
    """The framework's thread count now, None if it is not imported."""
    if framework not in sys.modules:
        return None
    if framework == "torch":
        import torch

        return torch.get_num_threads()
    # Paddle keeps no readable count: what it was imported with, or what paddleport set last
    return int(_paddle_threads.get("count") or os.environ.get(THREADS_ENV) or 1)


_paddle_threads: dict[str, int] = {}


def _paddle_import_threads() -> int:
    """The OpenMP threads ``import paddle`` gives without paddleport: OMP_NUM_THREADS, else 1."""
    try:
        return max(1, int(_USER_THREADS or 1))
    except ValueError:
        return 1


def _set_framework_threads(framework: str, count: int) -> None:
    if framework == "torch":
        import torch

        torch.set_num_threads(count)
    else:
        import paddle

        # no public Paddle call: OMP_NUM_THREADS before import is the public route, used when possible
        paddle.base.core.set_num_threads(count)
        _paddle_threads["count"] = count


@contextlib.contextmanager
def paddle_threads_kept() -> Iterator[None]:
    """Put Paddle's CPU thread count back after the block. A ``paddle.inference`` predictor sets Paddle's OpenMP
    and MKL threads to its own count when it runs and to 1 when ``run()`` returns (Paddle does so "to avoid thread
    conflict" in serving), so every Paddle eager op after a predictor ran on one thread: in one bench process,
    Paddle eager ran every model after the first at about 1.8x torch eager."""
    count = _framework_threads("paddle")
    try:
        yield
    finally:
        if count is not None:
            _set_framework_threads("paddle", count)


def _apply_threads(settings: RuntimeSettings, framework: str) -> None:
    previous = _framework_threads(framework)
    if previous is None:
        return  # not imported yet: it reads OMP_NUM_THREADS when it is
    if previous != settings.threads:
        settings._previous_threads[framework] = previous
        _set_framework_threads(framework, settings.threads)


def _import_paddle(settings: RuntimeSettings) -> None:
    """Import paddle now that the environment is set, without the lines it prints to stderr whenever
    OMP_NUM_THREADS is above 1 (a caution about data parallelism that applies to neither case here) and
    without its "No ccache found" warning (about rebuilding C++ extensions, irrelevant to importing)."""
    captured = io.StringIO()
    with contextlib.redirect_stderr(captured), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="No ccache found", category=UserWarning)
        import paddle  # noqa: F401
    kept = [line for line in captured.getvalue().splitlines(keepends=True)
            if not line.startswith(("WARNING: OMP_NUM_THREADS set to", "PLEASE USE OMP_NUM_THREADS WISELY"))]
    sys.stderr.write("".join(kept))
    # imported with OMP_NUM_THREADS: restore() sets the count an import without paddleport would have given
    _paddle_threads["count"] = settings.threads
    settings._previous_threads.setdefault("paddle", _paddle_import_threads())


def _apply_paddle_cpu_flags(settings: RuntimeSettings) -> None:
    import paddle

    settings._previous_flags = paddle.get_flags(list(PADDLE_CPU_FLAGS))
    paddle.set_flags(PADDLE_CPU_FLAGS)
    settings.paddle_flags = dict(PADDLE_CPU_FLAGS)


def _user_tunes_malloc() -> bool:
    return any(name in os.environ for name in _MALLOC_USER_ENV) or "glibc.malloc." in os.environ.get(
        "GLIBC_TUNABLES", "")


def _mallopt(mmap_threshold: int, trim_threshold: int) -> bool:
    """Set glibc's mmap and trim thresholds; False where the C library is not glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold) and libc.mallopt(_M_TRIM_THRESHOLD,
                                                                                       trim_threshold))
    except (OSError, AttributeError):
        return False


_RETURNED_BLOCK_BYTES = 64 * 1024


@contextlib.contextmanager
def freed_memory_returned() -> Iterator[bool]:
    """Within: glibc gives every freed block above 64 KiB back to the OS at once (mmap threshold 64 KiB, trim
    threshold 0), so resident memory follows the bytes the process holds (memory measurements); on exit the
    thresholds in force before (paddleport's kept blocks, or glibc's initial values) are restored. Yields False,
    changing nothing, where the user tunes malloc or the C library is not glibc."""
    if _user_tunes_malloc() or not _mallopt(_RETURNED_BLOCK_BYTES, 0):
        yield False
        return
    try:
        yield True
    finally:
        if _malloc_holders:
            _mallopt(_KEPT_BLOCK_BYTES, 2**31 - 1)
        else:
            _mallopt(_GLIBC_DEFAULT_THRESHOLD, _GLIBC_DEFAULT_THRESHOLD)


def _keep_freed_memory(settings: RuntimeSettings) -> None:
    global _malloc_holders
    if _user_tunes_malloc():
        return
    if _malloc_holders or _mallopt(_KEPT_BLOCK_BYTES, 2**31 - 1):
        _malloc_holders += 1
        settings.malloc_kept_block_bytes = _KEPT_BLOCK_BYTES


# --- scoped quiet: restored on exit ----------------------------------------------------------------------------

@contextlib.contextmanager
def quiet_logger(name: str, level: int = logging.ERROR) -> Iterator[None]:
    """Records of logger ``name`` below ``level`` dropped inside the block; its level restored after it."""
    logger = logging.getLogger(name)
    previous = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(previous)


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """No progress bars or info chatter from transformers inside the block; its verbosity restored after it."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
