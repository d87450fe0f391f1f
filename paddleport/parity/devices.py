"""Device selection, synchronisation, memory statistics and low-precision capability probes (lazy imports)."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass

from paddleport.errors import PaddleportError

DEVICES = ("cpu", "gpu")
DTYPES = ("float32", "float16", "bfloat16")


def torch_gpu_available() -> bool:
    import torch

    return bool(torch.cuda.is_available() and torch.cuda.device_count() > 0)


def paddle_gpu_available() -> bool:
    import paddle

    return bool(paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0)


GPU_PROBES = {"torch": torch_gpu_available, "paddle": paddle_gpu_available}


def gpu_frameworks(frameworks: tuple[str, ...] = tuple(GPU_PROBES)) -> list[str]:
    """Those of ``frameworks`` that can run on a GPU here (a framework not named is not imported)."""
    return [name for name in frameworks if name in GPU_PROBES and GPU_PROBES[name]()]


def require_device(device: str, frameworks: tuple[str, ...] = ("torch", "paddle")) -> None:
    """One-line error unless ``device`` is usable by every framework named."""
    if device not in DEVICES:
        raise PaddleportError("--device", f"unknown device {device!r} (choose from {', '.join(DEVICES)})")
    if device == "gpu":
        missing = [name for name in frameworks if name not in gpu_frameworks(frameworks)]
        if missing:
            raise PaddleportError("--device", f"no GPU available to {' and '.join(missing)} on this machine")


def torch_device(device: str) -> str:
    return "cuda" if device == "gpu" else "cpu"


def set_paddle_device(device: str) -> None:
    import paddle

    paddle.set_device("gpu:0" if device == "gpu" else "cpu")


def synchronize(framework: str, device: str) -> None:
    """Wait for queued GPU work so that a timer measures it (no-op on CPU and for ONNX Runtime, whose run()
    returns host arrays)."""
    if device != "gpu" or framework == "onnxruntime":
        return
    if framework == "torch":
        import torch

        torch.cuda.synchronize()
    else:
        import paddle

        paddle.device.synchronize()


def reset_peak_gpu_memory(framework: str) -> None:
    if framework == "onnxruntime":  # its CUDA arena keeps no peak statistic
        return
    if framework == "torch":
        import torch

        torch.cuda.reset_peak_memory_stats()
    else:
        import paddle

        paddle.device.cuda.reset_max_memory_allocated()


def peak_gpu_memory_mb(framework: str) -> float | None:
    if framework == "onnxruntime":
        return None
    if framework == "torch":
        import torch

        return torch.cuda.max_memory_allocated() / 2**20
    import paddle

    return paddle.device.cuda.max_memory_allocated() / 2**20


def device_name(device: str) -> str:
    if device == "gpu":
        if torch_gpu_available():
            import torch

            return torch.cuda.get_device_name(0)
        import paddle

        return paddle.device.cuda.get_device_name(0)
    from paddleport.runtime import detect_cpu

    return detect_cpu().model_name


def paddle_eager_supports(dtype: str, device: str) -> str | None:
    """None when Paddle eager has matmul + layer_norm kernels for ``dtype`` on ``device``, else the reason."""
    if dtype == "float32":
        return None
    import paddle

    try:
        x = paddle.ones([2, 4], dtype="float32").astype(dtype)
        paddle.matmul(x, x, transpose_y=True)
        paddle.nn.functional.layer_norm(x, [4])
    except Exception as error:  # paddle raises NotFoundError / RuntimeError for an unregistered kernel
        kernel = re.search(r"kernel `(\w+)` is not registered", str(error))
        what = f"{kernel.group(1)} kernel" if kernel else f"kernel ({str(error).splitlines()[0][:80]})"
        return f"Paddle eager has no {device.upper()} {dtype} {what}"
    return None


def torch_supports(dtype: str, device: str) -> str | None:
    if dtype == "float32":
        return None
    import torch

    try:
        x = torch.ones(2, 4, dtype=getattr(torch, dtype), device=torch_device(device))
        torch.nn.functional.layer_norm(x @ x.T, [2])
    except (RuntimeError, TypeError) as error:
        return f"torch has no {device.upper()} {dtype} kernel ({str(error).splitlines()[0][:120]})"
    return None


@dataclass
class PeakRss:
    """Peak resident set size of this process while the context is open (sampled every ``interval`` s)."""

    interval: float = 0.005
    peak_mb: float = 0.0

    def __enter__(self) -> "PeakRss":
        import psutil

        self._process = psutil.Process()
        self._stop = threading.Event()
        self._sample()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        self.peak_mb = max(self.peak_mb, self._process.memory_info().rss / 2**20)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
