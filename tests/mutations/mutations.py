"""Deliberate bugs on the Paddle side, applied at run time (never as textual diffs), one at a time.

Each mutation names the module attributes it replaces; ``activate`` installs an import hook so the replacement
happens whenever (and in whichever process) the module is imported, and every paddleport module that imported the
original object by name (``from ... import gelu``) gets the replacement too.  ``tests/mutations/run.py`` runs a
subset of ``make test`` under each and reports which test caught it.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from collections.abc import Callable

# name -> (module, attribute, factory(original) -> replacement) for each replaced attribute
Patch = tuple[str, str, Callable]


def _nan_in_one_weight(original):
    def load_weights(self, state):
        import numpy as np

        state = dict(state)
        name = sorted(key for key in state if key.endswith("dense.weight"))[0]
        value = np.array(state[name], dtype=np.float32, copy=True)
        value.flat[0] = np.nan
        state[name] = value
        return original(self, state)
    return load_weights


def _tanh_gelu(original):
    def gelu(x):
        import paddle.nn.functional as F

        return F.gelu(x, approximate=True)
    return gelu


def _tanh_dense_gelu(original):
    def dense_gelu(dense, hidden_states):
        import paddle.nn.functional as F

        return F.gelu(dense(hidden_states), approximate=True)
    return dense_gelu


def _act2fn_tanh_gelu(original):
    import paddle.nn.functional as F

    return {**original, "gelu": lambda x: F.gelu(x, approximate=True)}


def _layer_norm_eps(original):
    def __init__(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self._epsilon = 1e-5  # instead of the config's layer_norm_eps
    return __init__


def _mask_ignored(original):
    def attention_probs(scores, mask, scaling):
        return original(scores, None, scaling)
    return attention_probs


def _no_linear_transpose(original):
    def to_paddle(self, array):
        return array if self.name == "linear_weight" else original(self, array)
    return to_paddle


def _resume_from_zero(original):
    def resume(self):
        checkpoint = original(self)
        if type(self.backend).__name__ == "PaddleBackend":
            from paddleport.glue_runners.trainer import TrainerState

            self.state = TrainerState()  # weights loaded, but the run starts over at step 0
        return checkpoint
    return resume


MUTATIONS: dict[str, list[Patch]] = {
    "nan-weight": [("paddleport.models.modeling_utils", "PretrainedModel.load_weights", _nan_in_one_weight)],
    "weight-decay-off": [("paddleport.glue_runners.backends.paddle_backend", "uses_weight_decay",
                          lambda original: (lambda name: False))],
    "layernorm-decayed": [("paddleport.glue_runners.backends.paddle_backend", "uses_weight_decay",
                           lambda original: (lambda name: not name.lower().endswith("bias")))],
    "tanh-gelu": [("paddleport.models.layers", "gelu", _tanh_gelu),
                  ("paddleport.models.layers", "dense_gelu", _tanh_dense_gelu),
                  ("paddleport.models.modeling_utils", "ACT2FN", _act2fn_tanh_gelu)],
    "layernorm-eps-1e-5": [("paddleport.models.layers", "LayerNorm.__init__", _layer_norm_eps),
                           ("paddleport.models.layers", "ChannelLayerNorm.__init__", _layer_norm_eps)],
    "attention-mask-ignored": [("paddleport.models.layers", "attention_probs", _mask_ignored)],
    "no-linear-transpose": [("paddleport.convert.transforms", "Transform.to_paddle", _no_linear_transpose)],
    "dropout-masks-not-shared": [("paddleport.models.layers", "share_dropout_masks",
                                  lambda original: (lambda model, stream: None))],
    "resume-from-step-0": [("paddleport.glue_runners.trainer", "Trainer.resume", _resume_from_zero)],
}

_replaced: dict[int, object] = {}  # id(original) -> replacement, for names imported elsewhere


def _apply(module, attribute: str, factory: Callable) -> None:
    owner_path, _, leaf = attribute.rpartition(".")
    owner = module
    for part in filter(None, owner_path.split(".")):
        owner = getattr(owner, part)
    original = getattr(owner, leaf)
    replacement = factory(original)
    setattr(owner, leaf, replacement)
    if not owner_path:
        _replaced[id(original)] = replacement
        for other in list(sys.modules.values()):  # modules that already imported the original by name
            _rebind(other)


def _rebind(module) -> None:
    if not getattr(module, "__name__", "").startswith("paddleport") or not _replaced:
        return
    for key, value in list(vars(module).items()):
        if id(value) in _replaced and value is not _replaced[id(value)]:
            setattr(module, key, _replaced[id(value)])


class _PatchingFinder(importlib.abc.MetaPathFinder):
    """After a module is executed: apply its patches, and rebind names imported from patched modules."""

    def __init__(self, patches: list[Patch]):
        self.patches = patches

    def find_spec(self, fullname, path, target=None):
        if not fullname.startswith("paddleport"):
            return None
        for finder in sys.meta_path:
            if finder is self:
                continue
            spec = finder.find_spec(fullname, path, target) if hasattr(finder, "find_spec") else None
            if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
                real_exec = spec.loader.exec_module

                def exec_module(module, real_exec=real_exec):
                    real_exec(module)
                    for module_name, attribute, factory in self.patches:
                        if module_name == module.__name__:
                            _apply(module, attribute, factory)
                    _rebind(module)

                spec.loader.exec_module = exec_module
                return spec
        return None


def activate(name: str) -> None:
    if name not in MUTATIONS:
        raise SystemExit(f"unknown PADDLEPORT_MUTATION {name!r} (known: {', '.join(MUTATIONS)})")
    patches = MUTATIONS[name]
    sys.meta_path.insert(0, _PatchingFinder(patches))
    for module_name, attribute, factory in patches:  # already imported (rare in a fresh process)
        if module_name in sys.modules:
            _apply(sys.modules[module_name], attribute, factory)
