"""Reading checkpoints tensor by tensor, and writing safetensors as a stream.

Sources are read one tensor at a time (safetensors: validated by ``safe_open``, then each tensor read with
``os.preadv`` straight into its array; ``.bin`` through ``torch.load(mmap=True, weights_only=True)``, a legacy
non-zip ``.bin``, which cannot be mapped, read whole; ``.pdparams`` through ``paddleport.safe_pickle``), so a
conversion holds about one tensor at a time. The safetensors library can only write a whole dict at once, so
the writer below lays out the (simple, documented) safetensors format itself: an 8-byte little-endian header
length, the JSON header, then the raw tensor bytes.  A tensor that needs no change (``RawTensor``) is copied
file to file by the kernel (``os.copy_file_range``) without passing through Python.
"""

from __future__ import annotations

import json
import os
import struct
import zipfile
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import ml_dtypes  # noqa: F401  (registers numpy's bfloat16 dtype, which safetensors' numpy API needs)
import numpy as np

from paddleport.errors import PaddleportError

SAFETENSORS_DTYPES = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
    "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool",
}
DTYPE_TO_SAFETENSORS = {v: k for k, v in SAFETENSORS_DTYPES.items()}
FLOAT_DTYPES = ("float64", "float32", "float16", "bfloat16")

SAFETENSORS_NAME = "model.safetensors"
SAFETENSORS_INDEX_NAME = "model.safetensors.index.json"
TORCH_BIN_NAME = "pytorch_model.bin"
TORCH_BIN_INDEX_NAME = "pytorch_model.bin.index.json"
PDPARAMS_NAME = "model_state.pdparams"
# safetensors metadata "format" of Paddle-layout weights (transformers writes "pt")
PADDLE_FORMAT_TAG = "paddle"
WEIGHT_FILES = (SAFETENSORS_NAME, SAFETENSORS_INDEX_NAME, TORCH_BIN_NAME, TORCH_BIN_INDEX_NAME, PDPARAMS_NAME)


def numpy_dtype(name: str) -> np.dtype:
    return np.dtype(ml_dtypes.bfloat16) if name == "bfloat16" else np.dtype(name)


@dataclass(frozen=True)
class RawTensor:
    """A tensor's little-endian bytes at ``offset`` in the open file ``fd``, to be written unchanged."""

    fd: int
    offset: int
    nbytes: int


class TensorSource:
    """A checkpoint opened for reading one tensor at a time. Subclasses fill ``_entries``."""

    def __init__(self) -> None:
        self._stack = ExitStack()
        # name -> (file, shape, dtype name)
        self._entries: dict[str, tuple[Path, tuple[int, ...], str]] = {}
        self.metadata: dict[str, str] = {}

    def __enter__(self) -> "TensorSource":
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()

    def names(self) -> list[str]:
        return list(self._entries)

    def file_of(self, name: str) -> Path:
        return self._entries[name][0]

    def shape(self, name: str) -> tuple[int, ...]:
        return self._entries[name][1]

    def dtype(self, name: str) -> str:
        return self._entries[name][2]

    def nbytes(self, name: str) -> int:
        return int(np.prod(self.shape(name), dtype=np.int64)) * numpy_dtype(self.dtype(name)).itemsize

    def read(self, name: str) -> np.ndarray:
        raise NotImplementedError

    def raw(self, name: str) -> RawTensor | None:
        """Where the tensor's bytes can be copied from unchanged, when the source format allows it."""
        return None


class SafetensorsSource(TensorSource):
    """safetensors files: ``safe_open`` validates each header (dtypes, shapes, offsets inside the file); tensors
    are then read at those offsets with ``os.preadv`` (one copy, no page faults of a mapping)."""

    def __init__(self, files: Iterable[Path]):
        super().__init__()
        from safetensors import safe_open

        self._offsets: dict[str, tuple[int, int]] = {}  # name -> (fd, absolute byte offset)
        for path in files:
            try:
                with safe_open(str(path), framework="numpy") as handle:
                    names = list(handle.keys())
                    for name in names:
                        tensor_slice = handle.get_slice(name)
                        dtype = SAFETENSORS_DTYPES.get(tensor_slice.get_dtype())
                        if dtype is None:
                            raise PaddleportError(path, f"tensor {name} has unsupported dtype "
                                                        f"{tensor_slice.get_dtype()}")
                        self._entries[name] = (path, tuple(tensor_slice.get_shape()), dtype)
                    self.metadata.update(handle.metadata() or {})
                fd = os.open(path, os.O_RDONLY)
                self._stack.callback(os.close, fd)
                data_start, header = _read_header(fd)
                for name in names:
                    self._offsets[name] = (fd, data_start + int(header[name]["data_offsets"][0]))
            except PaddleportError:
                self._stack.close()
                raise
            except Exception as error:  # safetensors raises SafetensorError and OSError variants
                self._stack.close()
                raise PaddleportError(path, f"is not a readable safetensors file ({error})") from None

    def read(self, name: str) -> np.ndarray:
        fd, offset = self._offsets[name]
        array = np.empty(self.shape(name), dtype=numpy_dtype(self.dtype(name)))
        buffer = array.reshape(-1).view(np.uint8)
        done = 0
        while done < buffer.nbytes:  # preadv may return fewer bytes than asked (large reads, signals)
            count = os.preadv(fd, [buffer[done:]], offset + done)
            if count == 0:
                raise PaddleportError(self.file_of(name), f"tensor {name} cannot be read (file is truncated)")
            done += count
        return array

    def raw(self, name: str) -> RawTensor | None:
        fd, offset = self._offsets[name]
        return RawTensor(fd, offset, self.nbytes(name))


def _read_header(fd: int) -> tuple[int, dict]:
    """(offset of the data section, header dict) of a safetensors file that safe_open has validated."""
    (length,) = struct.unpack("<Q", os.pread(fd, 8, 0))
    return 8 + length, json.loads(os.pread(fd, length, 8))


class TorchBinSource(TensorSource):
    """``pytorch_model.bin`` files, loaded with ``weights_only=True``: no arbitrary object is unpickled."""

    def __init__(self, files: Iterable[Path]):
        super().__init__()
        self._tensors = {}
        for path in files:
            for name, tensor in self._load(path).items():
                self._entries[name] = (path, tuple(tensor.shape), str(tensor.dtype).removeprefix("torch."))
                self._tensors[name] = tensor

    @staticmethod
    def _load(path: Path) -> dict:
        import torch

        try:
            # torch can memory-map only the zip format; legacy (pre-1.6) files are read whole
            state = torch.load(str(path), map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
        except Exception as error:  # torch raises many types for damaged or unsafe files
            message = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise PaddleportError(path, f"is not a readable PyTorch weights file ({message})") from None
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise PaddleportError(path, "does not hold a flat dict of tensors (a state_dict)")
        return state

    def read(self, name: str) -> np.ndarray:
        import torch

        tensor = self._tensors[name].contiguous()
        if tensor.dtype == torch.bfloat16:
            return tensor.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
        return tensor.numpy()


class PdparamsSource(TensorSource):
    def __init__(self, path: Path):
        super().__init__()
        self._arrays = read_pdparams(path)
        self._entries = {name: (path, a.shape, a.dtype.name) for name, a in self._arrays.items()}
        self.metadata = {"format": PADDLE_FORMAT_TAG}

    def read(self, name: str) -> np.ndarray:
        return self._arrays[name]


def read_pdparams(path: Path) -> dict[str, np.ndarray]:
    """A ``.pdparams`` state dict through the restricted unpickler (no code in the file runs)."""
    from paddleport.safe_pickle import load_state

    state = load_state(path)
    if not isinstance(state, dict) or not all(isinstance(value, np.ndarray) for value in state.values()):
        raise PaddleportError(path, "does not hold a flat dict of tensors (a state dict)")
    return state


def shard_files(index_path: Path) -> list[Path]:
    """The shard files an ``*.index.json`` names, each inside the checkpoint directory."""
    try:
        weight_map = json.loads(index_path.read_text())["weight_map"]
        names = list(dict.fromkeys(weight_map.values()))
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as error:
        raise PaddleportError(index_path, f"is not a valid checkpoint index ({error})") from None
    return [_shard_inside(index_path, name) for name in names]


def _shard_inside(index_path: Path, name: Any) -> Path:
    """A shard is a file of the checkpoint directory: no absolute path, no ``..``, no symlink leading out
    (except a Hugging Face cache snapshot's links into its own ``blobs`` folder)."""
    directory = index_path.parent.resolve()
    if not isinstance(name, str) or not name or Path(name).is_absolute() or ".." in Path(name).parts:
        raise PaddleportError(index_path, f"names shard {name!r} outside the checkpoint directory")
    path = index_path.parent / name
    allowed = [directory]
    if directory.parent.name == "snapshots":  # ~/.cache/huggingface/hub/models--org--name/snapshots/REV
        allowed.append(directory.parent.parent / "blobs")
    if not any(path.resolve().is_relative_to(root) for root in allowed):
        raise PaddleportError(index_path, f"shard {name!r} resolves to {path.resolve()}, outside the checkpoint "
                                          "directory")
    if not path.is_file():
        raise PaddleportError(path, f"shard named in {index_path.name} is missing")
    return path


def open_checkpoint(directory: Path) -> TensorSource:
    """The weights of a checkpoint directory, whichever of the supported files it holds."""
    if (directory / SAFETENSORS_NAME).is_file():
        return SafetensorsSource([directory / SAFETENSORS_NAME])
    if (directory / SAFETENSORS_INDEX_NAME).is_file():
        return SafetensorsSource(shard_files(directory / SAFETENSORS_INDEX_NAME))
    if (directory / TORCH_BIN_NAME).is_file():
        return TorchBinSource([directory / TORCH_BIN_NAME])
    if (directory / TORCH_BIN_INDEX_NAME).is_file():
        return TorchBinSource(shard_files(directory / TORCH_BIN_INDEX_NAME))
    if (directory / PDPARAMS_NAME).is_file():
        return PdparamsSource(directory / PDPARAMS_NAME)
    raise PaddleportError(directory, f"no weights file found (looked for {', '.join(WEIGHT_FILES)})")


def stored_shapes(directory: Path) -> dict[str, tuple[int, ...]]:
    """Every tensor's shape, read the cheap way (safetensors headers, a memory-mapped ``.bin``)."""
    with open_checkpoint(directory) as source:
        return {name: source.shape(name) for name in source.names()}


def is_paddle_checkpoint(directory: Path) -> bool:
    """Paddle layout: model_state.pdparams, or model.safetensors tagged ``format: paddle``."""
    weights = Path(directory) / SAFETENSORS_NAME
    if weights.is_file():
        from safetensors import safe_open

        with safe_open(str(weights), framework="numpy") as stored:
            return (stored.metadata() or {}).get("format") == PADDLE_FORMAT_TAG
    return (Path(directory) / PDPARAMS_NAME).is_file()


def read_safetensors_checked(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """A whole safetensors file as numpy arrays, with its metadata; damaged files raise PaddleportError."""
    with SafetensorsSource([path]) as source:
        return {name: source.read(name) for name in source.names()}, source.metadata


def write_safetensors_stream(path: Path, layout: list[tuple[str, str, tuple[int, ...]]],
                             produce: Callable[[str], np.ndarray | RawTensor], metadata: dict[str, str],
                             on_tensor: Callable[[int], None] = lambda nbytes: None) -> None:
    """Write tensors ``layout`` = [(name, dtype, shape)] in order, asking ``produce(name)`` for each: an array,
    or a ``RawTensor`` whose bytes are already what the layout says."""
    header, offset = {}, 0
    for name, dtype, shape in layout:
        nbytes = int(np.prod(shape, dtype=np.int64)) * numpy_dtype(dtype).itemsize
        header[name] = {"dtype": DTYPE_TO_SAFETENSORS[dtype], "shape": list(shape),
                        "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    header["__metadata__"] = metadata
    header_bytes = json.dumps(header, separators=(",", ":")).encode()
    header_bytes += b" " * (-len(header_bytes) % 8)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        _write_all(fd, memoryview(struct.pack("<Q", len(header_bytes)) + header_bytes))
        for name, dtype, shape in layout:
            tensor = produce(name)
            if isinstance(tensor, RawTensor):
                if tensor.nbytes != header[name]["data_offsets"][1] - header[name]["data_offsets"][0]:
                    raise AssertionError(f"{name}: {tensor.nbytes} raw bytes, planned {dtype}{shape}")
                _copy_range(tensor, fd)
                on_tensor(tensor.nbytes)
                continue
            array = np.ascontiguousarray(tensor)
            if array.dtype != numpy_dtype(dtype) or tuple(array.shape) != tuple(shape):
                raise AssertionError(f"{name}: produced {array.dtype}{array.shape}, planned {dtype}{shape}")
            _write_all(fd, memoryview(array.reshape(-1).view(np.uint8)))  # little-endian, as x86 and arm
            on_tensor(array.nbytes)
    finally:
        os.close(fd)


def _write_all(fd: int, data: memoryview) -> None:
    while data:
        data = data[os.write(fd, data):]


def _copy_range(tensor: RawTensor, out_fd: int) -> None:
    """The kernel copies the bytes file to file; where it cannot (another file system on old kernels),
    they are read and written back."""
    done = 0
    try:
        if not hasattr(os, "copy_file_range"):  # Linux only
            raise OSError("no copy_file_range")
        while done < tensor.nbytes:
            count = os.copy_file_range(tensor.fd, out_fd, tensor.nbytes - done, tensor.offset + done)
            if count == 0:
                raise OSError("copy_file_range made no progress")
            done += count
    except OSError:
        while done < tensor.nbytes:
            chunk = os.pread(tensor.fd, min(tensor.nbytes - done, 1 << 24), tensor.offset + done)
            if not chunk:
                raise
            _write_all(out_fd, memoryview(chunk))
            done += len(chunk)


def tensor_to_numpy(tensor) -> np.ndarray:
    """paddle -> numpy, including bfloat16 (moved as its raw 16 bits into ml_dtypes' bfloat16)."""
    import paddle

    if tensor.dtype == paddle.bfloat16:
        import ml_dtypes

        return tensor.view(paddle.uint16).numpy().view(ml_dtypes.bfloat16)
    return tensor.numpy()


def numpy_to_paddle(array: np.ndarray):
    """numpy -> paddle, including ml_dtypes' bfloat16 (moved as its raw 16 bits)."""
    import paddle

    if array.dtype.name == "bfloat16":
        return paddle.to_tensor(array.view(np.uint16)).view(paddle.bfloat16)
    return paddle.to_tensor(array)
