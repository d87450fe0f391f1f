"""Reading pickled Paddle state (``.pdparams``, ``.pdopt``, pickled training state) without running its code.

A pickle is a program: every class or function it names is called while it loads, so ``paddle.load`` or
``pickle.load`` on a downloaded file runs whatever the file asks (``os.system``, ``builtins.eval``...). This
reader resolves only the names a Paddle state needs and refuses the file at the first other name, before
anything it describes is built.

What ``paddle.save`` (Paddle 3.3.1, ``paddle/framework/io.py``) writes, and what is accepted:
- a state dict (``_legacy_save``): tensors as numpy arrays (``numpy.ndarray``, ``numpy.dtype``,
  ``numpy._core.multiarray._reconstruct``; protocol 2 adds ``_codecs.encode`` for the raw bytes), a
  ``"StructuredToParameterName@@"`` name table, and arrays over 1 GiB split into ``"@@.N"`` slices listed under
  ``"UnpackBigParamInfor@@"`` (protocols 2 and 3);
- any other object (``_pickle_save``): each tensor as ``builtins.tuple(((name, array),))``, a dense tensor as
  ``builtins.eval("data", {"data": array})`` (only that exact form is accepted, and nothing is evaluated);
- containers and scalars (dict, list, tuple, set, ``collections.OrderedDict``, numpy scalars, complex);
- ``paddle.base.libpaddle.GeneratorState``, the RNG state ``paddle.get_rng_state()`` returns (pickled training
  state holds it); it is built from integers only.
Tensors come back as numpy arrays, as ``paddle.load(path, return_numpy=True)`` returns them.
"""

from __future__ import annotations

import _compat_pickle
import codecs
import collections
import pickle
from pathlib import Path
from typing import Any, Callable

import numpy as np

from paddleport.errors import PaddleportError

NAME_TABLE_KEY = "StructuredToParameterName@@"
BIG_PARAMETER_KEY = "UnpackBigParamInfor@@"  # typos: disable-line  (Paddle's spelling)


class _Refused(Exception):
    """A name outside the allow-list, or an accepted name called in a way Paddle never writes."""


def _refuse(module: str, name: str) -> _Refused:
    return _Refused(f"pickle references {module}.{name}")


def _numpy_dtype(spec, align=False, copy=False) -> np.dtype:
    dtype = np.dtype(spec, align, copy)
    if dtype.hasobject:  # an object array would hold arbitrary Python objects, never a weight
        raise _Refused(f"pickle holds a numpy array of Python objects (dtype {dtype})")
    return dtype


def _latin1_bytes(text, encoding="latin1") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it for bytes; other codecs are not needed."""
    if not isinstance(text, str) or codecs.lookup(encoding).name != "iso8859-1":
        raise _refuse("_codecs", "encode")
    return codecs.encode(text, "latin1")


def _dense_tensor_record(*arguments):
    """``eval('data', {'data': array})``, Paddle's record of a DenseTensor, answered without evaluating."""
    if (len(arguments) == 2 and arguments[0] == "data" and isinstance(arguments[1], dict)
            and isinstance(arguments[1].get("data"), np.ndarray)):
        return arguments[1]["data"]
    raise _refuse("builtins", "eval")


def _generator_state_class():
    import paddle  # only a pickle that holds Paddle's RNG state brings paddle in

    return paddle.base.libpaddle.GeneratorState


_MULTIARRAY_NAMES = {"_reconstruct": lambda: np.ndarray.__reduce__(np.zeros(0))[0],
                     "scalar": lambda: np.float32(0).__reduce__()[0]}

# (module, name) -> a function returning the object the name stands for
ALLOWED_GLOBALS: dict[tuple[str, str], Callable[[], Any]] = {
    ("builtins", "dict"): lambda: dict,
    ("builtins", "list"): lambda: list,
    ("builtins", "tuple"): lambda: tuple,
    ("builtins", "set"): lambda: set,
    ("builtins", "frozenset"): lambda: frozenset,
    ("builtins", "complex"): lambda: complex,
    ("builtins", "bytearray"): lambda: bytearray,
    ("builtins", "eval"): lambda: _dense_tensor_record,
    ("collections", "OrderedDict"): lambda: collections.OrderedDict,
    ("_codecs", "encode"): lambda: _latin1_bytes,
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: _numpy_dtype,
    ("paddle.base.libpaddle", "GeneratorState"): _generator_state_class,
    **{(module, name): factory for module in ("numpy.core.multiarray", "numpy._core.multiarray")
       for name, factory in _MULTIARRAY_NAMES.items()},
}


class _StateUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        # protocol-2 pickles name Python 2 modules (``__builtin__.tuple``); map them as pickle's fix_imports does
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        factory = ALLOWED_GLOBALS.get((module, name))
        if factory is None:
            raise _refuse(module, name)
        return factory()

    def persistent_load(self, pid: Any) -> Any:
        raise _Refused("pickle uses persistent ids, which no Paddle state has")


def _join_big_parameters(state: dict, path: Path) -> dict:
    """Arrays Paddle split into slices to stay under pickle's 4 GiB (protocols 2 and 3), joined again."""
    info = state.pop(BIG_PARAMETER_KEY)
    try:
        for key, entry in info.items():
            slices = [state.pop(part) for part in entry["slices"]]
            state[key] = np.concatenate(slices).reshape(entry["OriginShape"])
    except (AttributeError, KeyError, TypeError, ValueError) as error:
        raise PaddleportError(path, f"has a malformed {BIG_PARAMETER_KEY} entry ({error})") from None
    return state


def _tensor_records_to_arrays(value: Any) -> Any:
    """Paddle's ``(name, array)`` tensor records -> arrays, through dicts, lists and tuples."""
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], np.ndarray):
        return value[1]
    if isinstance(value, dict):
        for key in list(value):
            value[key] = _tensor_records_to_arrays(value[key])
        return value
    if isinstance(value, list):
        return [_tensor_records_to_arrays(item) for item in value]
    if isinstance(value, tuple):
        return tuple(_tensor_records_to_arrays(item) for item in value)
    return value


def load_state(path: Path) -> Any:
    """What ``paddle.load(path, return_numpy=True)`` returns for a pickled Paddle state, with nothing executed.

    A name outside the allow-list raises ``PaddleportError(path, "... refused: pickle references module.name")``
    before any object is built from it; damaged or non-pickle files raise ``PaddleportError`` as well.
    """
    path = Path(path)
    try:
        with open(path, "rb") as stream:
            state = _StateUnpickler(stream, encoding="latin1").load()
    except _Refused as refusal:
        raise PaddleportError(path, f"unsafe content refused: {refusal}") from None
    except OSError as error:
        raise PaddleportError(path, f"cannot be read ({error.strerror or error})") from None
    except Exception as error:  # pickle raises many types (UnpicklingError, EOFError, ValueError...) on damage
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise PaddleportError(path, f"is not a readable pickled Paddle state ({message})") from None
    if isinstance(state, dict):
        if BIG_PARAMETER_KEY in state:
            state = _join_big_parameters(state, path)
        if NAME_TABLE_KEY in state:  # a state dict: its values are already arrays
            del state[NAME_TABLE_KEY]
            return state
    return _tensor_records_to_arrays(state)
