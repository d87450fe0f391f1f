"""LoRA without a framework: settings, the adapter directory format and the declarative name/transform table.

Names follow Hugging Face ``peft``. Inside the backends every parameter has a *canonical* name: its Hugging Face
model name, with a LoRA pair as ``<module>.lora_A.weight`` / ``<module>.lora_B.weight``. peft's in-memory names
(``base_model.model.…query.base_layer.weight``, ``…lora_A.default.weight``, ``classifier.modules_to_save.default.…``)
and paddleport's Paddle LoRA layer (which mirrors peft's sub-layer names, so that dropout sites and names agree)
both reduce to it with :func:`canonical_name`.

The adapter file (``adapter_model.safetensors``) holds peft's keys, ``base_model.model.<name>``, for the LoRA
matrices, the biases trained by ``bias`` (a LoRA-wrapped module's bias as ``<module>.base_layer.bias``) and the
``modules_to_save`` (the classifier). Its tensors are in torch layout (metadata ``format: pt``) or, written by
the Paddle side, in Paddle layout (``format: paddle``): a Linear weight (LoRA A and B included) transposed,
everything else unchanged. Which transform a key takes is read from the rules below and the base model's
conversion table (:func:`paddleport.convert.parameter_specs`), never from a shape.
"""

from __future__ import annotations

import json
import math
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from paddleport.convert.table import ParamSpec
from paddleport.convert.transforms import LINEAR_WEIGHT, Transform
from paddleport.errors import PaddleportError

BIAS_MODES = ("none", "all", "lora_only")
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
SAVED_PREFIX = "base_model.model."
ADAPTER_NAME = "default"  # peft's name for the one adapter

# The declarative part: adapter tensors that are not base-model parameters, and their transform.
# Everything else in an adapter file is a base-model parameter and takes the base table's transform.
LORA_RULES: tuple[tuple[str, Transform], ...] = (
    ("lora_A.weight", LINEAR_WEIGHT),  # torch [r, in]  <-> Paddle [in, r]
    ("lora_B.weight", LINEAR_WEIGHT),  # torch [out, r] <-> Paddle [r, out]
)
# Adapter-file keys that peft writes but that no forward reads (the frozen original of a module_to_save).
IGNORED_SAVED_PARTS = (".original_module.",)


@dataclass(frozen=True)
class LoraSettings:
    """What ``peft.LoraConfig`` holds of a LoRA adapter, with peft's defaults."""

    r: int = 8
    lora_alpha: float = 8.0
    lora_dropout: float = 0.0
    target_modules: tuple[str, ...] | str = ("query", "value")  # module names, or one regex (peft's rule)
    bias: str = "none"
    modules_to_save: tuple[str, ...] = ("classifier",)
    use_rslora: bool = False

    @property
    def scaling(self) -> float:
        return self.lora_alpha / (math.sqrt(self.r) if self.use_rslora else self.r)

    def check(self) -> "LoraSettings":
        if self.r <= 0:
            raise PaddleportError("--lora-r", f"must be positive, got {self.r}")
        if not 0 <= self.lora_dropout < 1:
            raise PaddleportError("--lora-dropout", f"must be in [0, 1), got {self.lora_dropout}")
        if self.bias not in BIAS_MODES:
            raise PaddleportError("--lora-bias", f"must be one of {', '.join(BIAS_MODES)}, not {self.bias!r}")
        if not self.target_modules:
            raise PaddleportError("--lora-target-modules", "names no module")
        return self

    def to_adapter_config(self, base_model: str | None) -> dict:
        """``adapter_config.json`` as peft reads it (keys peft leaves at their defaults are omitted)."""
        targets = self.target_modules if isinstance(self.target_modules, str) else list(self.target_modules)
        return {"peft_type": "LORA", "task_type": "SEQ_CLS", "base_model_name_or_path": base_model,
                "r": self.r, "lora_alpha": self.lora_alpha, "lora_dropout": self.lora_dropout,
                "target_modules": targets, "bias": self.bias, "modules_to_save": list(self.modules_to_save),
                "use_rslora": self.use_rslora, "fan_in_fan_out": False, "init_lora_weights": True,
                "inference_mode": True}


def parse_target_modules(text: str) -> tuple[str, ...]:
    """``query,value`` -> ("query", "value")."""
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    if not names:
        raise PaddleportError("--lora-target-modules", f"names no module: {text!r}")
    return names


# Options of adapter_config.json that change what the adapter computes and that paddleport does not implement.
UNSUPPORTED_OPTIONS = {"use_dora": False, "rank_pattern": {}, "alpha_pattern": {}, "layers_to_transform": None,
                       "layer_replication": None, "fan_in_fan_out": False, "target_parameters": None,
                       "trainable_token_indices": None, "exclude_modules": None, "lora_bias": False,
                       "use_qalora": False, "alora_invocation_tokens": None}


def read_adapter_config(adapter_dir: Path) -> tuple[dict, Path]:
    """``adapter_config.json`` of an adapter directory, parsed, and its path."""
    path = Path(adapter_dir) / ADAPTER_CONFIG
    if not path.is_file():
        raise PaddleportError(adapter_dir, f"has no {ADAPTER_CONFIG} (not a peft adapter directory)")
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise PaddleportError(path, f"is not valid JSON ({error})") from None
    if not isinstance(config, dict):
        raise PaddleportError(path, "is not a JSON object")
    return config, path


def lora_settings_from_config(config: dict, path: Path) -> LoraSettings:
    """The LoRA settings of a LORA ``adapter_config.json``; unimplemented LoRA options are errors."""
    for key, default in UNSUPPORTED_OPTIONS.items():
        if config.get(key, default) not in (default, [], {}) and config.get(key) is not None:
            raise PaddleportError(path, f"option {key}={config[key]!r} is not supported by paddleport")
    targets = config.get("target_modules")
    return LoraSettings(
        r=int(config.get("r", 8)), lora_alpha=float(config.get("lora_alpha", 8)),
        lora_dropout=float(config.get("lora_dropout", 0.0)),
        target_modules=targets if isinstance(targets, str) else tuple(targets or ()),
        bias=config.get("bias", "none"), modules_to_save=tuple(config.get("modules_to_save") or ()),
        use_rslora=bool(config.get("use_rslora", False))).check()


def is_adapter_dir(path: Path) -> bool:
    return (Path(path) / ADAPTER_CONFIG).is_file()


# ------------------------------------------------------------------------------------------- names


def canonical_name(name: str) -> str | None:
    """A peft / Paddle-LoRA parameter or adapter-file name -> its canonical (Hugging Face model) name; None for a
    name that is no parameter of the adapted model's forward (a module_to_save's frozen original)."""
    if any(part in name for part in IGNORED_SAVED_PARTS):
        return None
    name = name.removeprefix(SAVED_PREFIX)
    for wrapper in (".base_layer.", f".modules_to_save.{ADAPTER_NAME}.", ".modules_to_save.", f".{ADAPTER_NAME}."):
        name = name.replace(wrapper, ".")
    return name


def matches_target(module: str, targets: tuple[str, ...] | str) -> bool:
    """peft's rule: a regex matches the whole module name; a name matches the module or its last parts."""
    if isinstance(targets, str):
        return re.fullmatch(targets, module) is not None
    return any(module == target or module.endswith("." + target) for target in targets)


def saved_by_peft(parameter_name: str, modules_to_save) -> bool:
    """peft's modules_to_save rule: the parameter lies in a module whose name ends with one of the names, as a plain
    string (DistilBERT's ``pre_classifier`` ends with ``classifier``), children included (RoBERTa's
    ``classifier.dense``)."""
    parts = parameter_name.split(".")[:-1]
    modules = [".".join(parts[:end]) for end in range(1, len(parts) + 1)]
    return any(module.endswith(name) for module in modules for name in modules_to_save)


@dataclass(frozen=True)
class AdaptedParam:
    """One parameter of a LoRA-adapted model."""

    name: str  # canonical: Hugging Face model name, or <module>.lora_A.weight / lora_B.weight
    paddle_name: str  # in paddleport's adapted Paddle model (query.base_layer.weight, query.lora_A.default.weight)
    transform: Transform
    hf_shape: tuple[int, ...]
    trainable: bool
    saved_key: str | None  # its key in adapter_model.safetensors, None when the adapter does not hold it

    def spec(self) -> ParamSpec:
        return ParamSpec(self.name, self.paddle_name, self.transform, self.hf_shape, "lora")


class PlanParameters:
    """What every PEFT plan derives from its ``params`` (a list of :class:`AdaptedParam`)."""

    params: list

    @property
    def trainable(self) -> list[AdaptedParam]:
        return [param for param in self.params if param.trainable]

    @property
    def saved(self) -> dict[str, AdaptedParam]:
        return {param.saved_key: param for param in self.params if param.saved_key}

    def by_paddle_name(self) -> dict[str, ParamSpec]:
        return {param.paddle_name: param.spec() for param in self.params}


@dataclass
class LoraPlan(PlanParameters):
    """Which modules a LoRA adapter wraps in a given model, and every parameter of the adapted model."""

    settings: LoraSettings
    architecture: str
    wrapped: tuple[str, ...]  # module names (canonical), in model order
    params: list[AdaptedParam] = field(default_factory=list)

    def transform_of_saved_key(self, key: str) -> Transform | None:
        """The transform of an adapter-file key (None: not a tensor of this adapted model)."""
        name = canonical_name(key)
        if name is None:
            return None
        for param in self.params:
            if param.name == name:
                return param.transform
        return None


def _module_of(parameter_name: str) -> tuple[str, str]:
    module, _, leaf = parameter_name.rpartition(".")
    return module, leaf


def plan_lora(config: dict, architecture: str, settings: LoraSettings) -> LoraPlan:
    """Resolve ``settings.target_modules`` against the model's conversion table (no model is built).

    Errors (before any training): a target that matches no module, a matched module that is not a Linear
    (SqueezeBERT's grouped Conv1d, an embedding, a LayerNorm), a module_to_save that is also a LoRA target.
    """
    from paddleport.convert import parameter_specs

    settings.check()
    specs = parameter_specs(config, architecture)
    weights = {_module_of(spec.hf_name)[0]: spec for spec in specs if spec.hf_name.endswith(".weight")}
    wrapped = [module for module in weights if matches_target(module, settings.target_modules)]
    targets = [settings.target_modules] if isinstance(settings.target_modules, str) else settings.target_modules
    for target in targets:
        if not any(matches_target(module, target if isinstance(settings.target_modules, str) else (target,))
                   for module in weights):
            leaf_names = sorted({module.rpartition(".")[2] for module, spec in weights.items()
                                 if spec.transform is LINEAR_WEIGHT})
            raise PaddleportError("--lora-target-modules", f"{target!r} matches no module of {architecture} "
                                                           f"(its Linear modules: {', '.join(leaf_names)})")
    for module in wrapped:
        if weights[module].transform is not LINEAR_WEIGHT:
            raise PaddleportError("--peft", f"LoRA cannot wrap {module} of {architecture}: it is a "
                                            f"{weights[module].transform.name.split('_')[0]} layer, not a Linear "
                                            "(paddleport's LoRA and its conversion cover Linear layers only)")
        if saved_by_peft(weights[module].hf_name, settings.modules_to_save):
            raise PaddleportError("--lora-target-modules", f"{module} is also in modules_to_save")
    params = []
    wrapped_set = set(wrapped)
    for spec in specs:
        module, leaf = _module_of(spec.hf_name)
        is_wrapped = module in wrapped_set
        paddle_name = f"{module}.base_layer.{leaf}" if is_wrapped else spec.paddle_name
        if saved_by_peft(spec.hf_name, settings.modules_to_save):
            trainable, saved_key = True, SAVED_PREFIX + spec.hf_name
        elif leaf == "bias" and (settings.bias == "all" or (settings.bias == "lora_only" and is_wrapped)):
            trainable = True
            saved_key = SAVED_PREFIX + (f"{module}.base_layer.bias" if is_wrapped else spec.hf_name)
        else:
            trainable, saved_key = False, None
        params.append(AdaptedParam(spec.hf_name, paddle_name, spec.transform, tuple(spec.hf_shape), trainable,
                                   saved_key))
        if is_wrapped and leaf == "weight":
            out_features, in_features = spec.hf_shape
            for matrix, shape in (("lora_A", (settings.r, in_features)), ("lora_B", (out_features, settings.r))):
                name = f"{module}.{matrix}.weight"
                params.append(AdaptedParam(name, f"{module}.{matrix}.{ADAPTER_NAME}.weight", LINEAR_WEIGHT, shape,
                                           True, SAVED_PREFIX + name))
    return LoraPlan(settings, architecture, tuple(wrapped), params)


def is_lora_parameter(name: str) -> bool:
    return any(name.endswith("." + suffix) for suffix, _ in LORA_RULES)


def lora_initial_value(name: str, shape: tuple[int, ...], seed: int) -> np.ndarray:
    """peft's initialisation, drawn from seeded numpy so both frameworks start alike: A kaiming-uniform
    (a=√5, i.e. U(±1/√fan_in), fan_in = A's input size), B zero. ``shape`` in Hugging Face layout."""
    if name.endswith("lora_B.weight"):
        return np.zeros(shape, dtype=np.float32)
    bound = 1.0 / math.sqrt(shape[1])
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    return rng.uniform(-bound, bound, size=shape).astype(np.float32)


# ------------------------------------------------------------------------------------------- checks


def check_adapter_fits(plan: LoraPlan, stored: dict[str, tuple[int, ...]], layout: str, where: Path) -> None:
    """The adapter file's keys and shapes (``layout`` "hf" or "paddle") are those this base model's adapted
    version holds; anything else means an adapter for another base model."""
    expected = plan.saved
    for key, shape in stored.items():
        name = canonical_name(key)
        if name is None:
            continue
        param = expected.get(key) or next((p for p in expected.values() if p.name == name), None)
        if param is None:
            raise PaddleportError(where, f"is an adapter for another base model: {key} has no place in "
                                         f"{plan.architecture}")
        want = param.hf_shape if layout == "hf" else param.transform.paddle_shape(param.hf_shape)
        if tuple(shape) != tuple(want):
            raise PaddleportError(where, f"is an adapter for another base model: {key} has shape {tuple(shape)}, "
                                         f"this base model needs {tuple(want)}")
    present = {canonical_name(key) for key in stored}
    missing = [key for key, param in expected.items() if key not in stored and param.name not in present]
    if missing:
        raise PaddleportError(where, f"lacks {len(missing)} tensors of this adapter: {', '.join(missing[:4])}")


def _rule_patterns():
    """(regex over canonical names, transform) of every rule of every architecture table (placeholders such as
    {layer} = digits)."""
    from paddleport.convert.table import PLACEHOLDERS
    from paddleport.registry import ARCHITECTURES

    for table in (entry.table for entry in ARCHITECTURES.values()):
        groups = [(table.base, True), (table.pooler, True)] + [(rules, False) for rules in table.heads.values()]
        for rules, under_base in groups:
            for rule in rules:
                pattern = re.escape(rule.hf)
                for placeholder in PLACEHOLDERS:
                    pattern = pattern.replace(re.escape("{" + placeholder + "}"), r"\d+")
                prefix = f"(?:{re.escape(table.base_prefix)})?" if under_base else ""
                yield re.compile(prefix + pattern), rule.transform


def transform_of_adapter_key(key: str) -> Transform | None:
    """The transform of an adapter-file key, from the LoRA rules or, for a base-model tensor (a bias, the
    classifier), the architecture tables; None for a key no forward reads (``original_module``)."""
    name = canonical_name(key)
    if name is None:
        return None
    for suffix, transform in LORA_RULES:
        if name.endswith("." + suffix):
            return transform
    for pattern, transform in _rule_patterns():
        if pattern.fullmatch(name):
            return transform
    raise PaddleportError(ADAPTER_WEIGHTS, f"{key} is no tensor of a supported architecture")
