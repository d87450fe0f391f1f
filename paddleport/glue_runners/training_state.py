"""Training state on disk without pickle: tensors in safetensors, everything else in JSON.

A checkpoint holds ``training_state.json`` (optimizer, scheduler and scaler state, with each tensor replaced by a
reference into ``training_state.safetensors``) and one ``rng_state_rank{r}.json`` per process (framework RNG and
dropout-mask stream). Reading them runs no code from the file: JSON and safetensors only.

Encoding of the JSON skeleton: dicts whose keys are all strings (none starting with ``__``) and lists are
written as they are; a tensor becomes ``{"__tensor__": name}``, a tuple ``{"__tuple__": [...]}`` and any other
dict (integer keys: torch's optimizer state) ``{"__items__": [[key, value], ...]}``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np

from paddleport.errors import PaddleportError

STATE_JSON = "training_state.json"
STATE_TENSORS = "training_state.safetensors"
RNG_STATE_PREFIX = "rng_state_rank"
FORMAT_VERSION = 1


def rng_state_file(rank: int) -> str:
    return f"{RNG_STATE_PREFIX}{rank}.json"


def split_state(state: Any, is_tensor: Callable[[Any], bool]) -> tuple[Any, dict[str, Any]]:
    """(JSON-able skeleton, {name: tensor}) of a nested optimizer/scheduler state."""
    tensors: dict[str, Any] = {}

    def encode(value: Any, path: str) -> Any:
        if is_tensor(value):
            name = path if path not in tensors else f"{path}#{len(tensors)}"
            tensors[name] = value
            return {"__tensor__": name}
        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, dict):
            if all(isinstance(key, str) and not key.startswith("__") for key in value):
                return {key: encode(item, f"{path}/{key}") for key, item in value.items()}
            return {"__items__": [[encode(key, path), encode(item, f"{path}/{key}")] for key, item in value.items()]}
        if isinstance(value, tuple):
            return {"__tuple__": [encode(item, f"{path}/{index}") for index, item in enumerate(value)]}
        if isinstance(value, list):
            return [encode(item, f"{path}/{index}") for index, item in enumerate(value)]
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        raise TypeError(f"training state holds a {type(value).__name__} at {path or '/'}, which has no "
                        f"pickle-free encoding")

    return encode(state, ""), tensors


def join_state(skeleton: Any, tensors: dict[str, Any], source: Path) -> Any:
    """The inverse of :func:`split_state`; a reference to a missing tensor is a PaddleportError(source)."""
    def decode(value: Any) -> Any:
        if isinstance(value, list):
            return [decode(item) for item in value]
        if not isinstance(value, dict):
            return value
        if set(value) == {"__tensor__"}:
            if value["__tensor__"] not in tensors:
                raise PaddleportError(source, f"refers to tensor {value['__tensor__']!r}, which "
                                              f"{STATE_TENSORS} does not hold")
            return tensors[value["__tensor__"]]
        if set(value) == {"__tuple__"}:
            return tuple(decode(item) for item in value["__tuple__"])
        if set(value) == {"__items__"}:
            return {_hashable(decode(key), source): decode(item) for key, item in value["__items__"]}
        return {key: decode(item) for key, item in value.items()}

    return decode(skeleton)


def _hashable(key: Any, source: Path) -> Any:
    if isinstance(key, (list, dict)):
        raise PaddleportError(source, f"has a dictionary key of type {type(key).__name__}")
    return key


def write_json(path: Path, value: Any) -> None:
    Path(path).write_text(json.dumps(value, indent=1, allow_nan=True) + "\n", encoding="utf-8")


def read_json(path: Path) -> Any:
    """The JSON in ``path``; unreadable or malformed -> PaddleportError(path)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PaddleportError(path, "is missing from the checkpoint") from None
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise PaddleportError(path, f"is not valid training state JSON ({error})") from None


def write_training_state(directory: Path, state: dict, is_tensor: Callable[[Any], bool],
                         save_tensors: Callable[[dict, str], None]) -> None:
    """``training_state.json`` + ``training_state.safetensors`` (written by ``save_tensors(tensors, path)``)."""
    skeleton, tensors = split_state(state, is_tensor)
    save_tensors(tensors, str(Path(directory) / STATE_TENSORS))
    write_json(Path(directory) / STATE_JSON, {"format_version": FORMAT_VERSION, "state": skeleton})


def read_training_state(directory: Path, load_tensors: Callable[[str], dict]) -> dict:
    """What :func:`write_training_state` wrote (``load_tensors(path)`` reads the safetensors file)."""
    path = Path(directory) / STATE_JSON
    document = read_json(path)
    if not isinstance(document, dict) or document.get("format_version") != FORMAT_VERSION:
        raise PaddleportError(path, f"is not paddleport training state (format_version {FORMAT_VERSION} expected)")
    tensors_path = Path(directory) / STATE_TENSORS
    try:
        tensors = load_tensors(str(tensors_path))
    except FileNotFoundError:
        raise PaddleportError(tensors_path, "is missing from the checkpoint") from None
    except Exception as error:  # safetensors raises its own error types on a damaged header
        raise PaddleportError(tensors_path, f"is not a readable safetensors file ({error})") from None
    state = join_state(document["state"], tensors, path)
    if not isinstance(state, dict):
        raise PaddleportError(path, "does not hold a dictionary of training state")
    return state


def has_training_state(directory: Path) -> bool:
    return (Path(directory) / STATE_JSON).is_file()


def derived_seed(seed: int, global_step: int) -> int:
    """A generator seed for a rank that has no saved RNG state: a function of (seed + rank, step) only, so a
    resume with more processes is reproducible, and different from the seed the rank started from."""
    return int(np.random.SeedSequence([seed % 2**63, global_step]).generate_state(1)[0])
