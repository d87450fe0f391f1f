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

LoRA wraps Linear layers and, as peft's ``lora.Conv1d``, SqueezeBERT's grouped 1x1 convolutions: A a dense
``Conv1d(in, r, 1)``, B a grouped ``Conv1d(r, out, 1, groups)``, both in the ``[out, in/groups, 1]`` layout the two
frameworks share. peft cannot merge those (its grouped-conv merge raises); :func:`grouped_conv_delta` computes the
update, which is dense over the input channels, so a merge makes the convolution dense (groups 1).
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
from paddleport.convert.transforms import CONV1D_WEIGHT, LINEAR_WEIGHT, Transform
from paddleport.errors import PaddleportError

BIAS_MODES = ("none", "all", "lora_only")
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
SAVED_PREFIX = "base_model.model."
ADAPTER_NAME = "default"  # peft's name for the one adapter

# The declarative part: adapter tensors that are not base-model parameters. Each takes the transform of the
# wrapped module's weight in the base table, as listed here (peft wraps a Linear in Linears, a Conv1d in Conv1ds):
# a Linear's A torch [r, in] <-> Paddle [in, r], B [out, r] <-> [r, out]; a Conv1d's A [r, in, 1] and B
# [out, r/groups, 1] alike in both. Everything else in an adapter file is a base-model parameter and takes the base
# table's transform.
LORA_MATRICES = ("lora_A.weight", "lora_B.weight")
LORA_MATRIX_TRANSFORMS: dict[Transform, Transform] = {LINEAR_WEIGHT: LINEAR_WEIGHT, CONV1D_WEIGHT: CONV1D_WEIGHT}
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
    # config attribute -> every module it groups, for each grouped Conv1d kind (SqueezeBERT's q_groups, ...) with a
    # wrapped module: a merge makes all of them dense and sets the attribute to 1 (one group count per kind)
    grouped_merge: dict[str, tuple[str, ...]] = field(default_factory=dict)

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

    Errors (before any training): a target that matches no module, a matched module that is neither a Linear nor a
    1x1 Conv1d (an embedding, a LayerNorm), an r that is no multiple of a wrapped Conv1d's groups (peft's rule), a
    module_to_save that is also a LoRA target.
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
            leaf_names = sorted({_target_hint(module, spec) for module, spec in weights.items()
                                 if spec.transform in LORA_MATRIX_TRANSFORMS})
            raise PaddleportError("--lora-target-modules", f"{target!r} matches no module of {architecture} "
                                                           f"(its Linear and Conv1d modules: {', '.join(leaf_names)})")
    for module in wrapped:
        if weights[module].transform not in LORA_MATRIX_TRANSFORMS:
            raise PaddleportError("--peft", f"LoRA cannot wrap {module} of {architecture}: it is a "
                                            f"{weights[module].transform.name.split('_')[0]} layer, not a Linear "
                                            "or a Conv1d")
        if saved_by_peft(weights[module].hf_name, settings.modules_to_save):
            raise PaddleportError("--lora-target-modules", f"{module} is also in modules_to_save")
    _check_rank_fits_groups(settings.r, [weights[module] for module in wrapped])
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
            for matrix, shape in zip(("lora_A", "lora_B"), lora_matrix_shapes(spec, settings.r)):
                name = f"{module}.{matrix}.weight"
                params.append(AdaptedParam(name, f"{module}.{matrix}.{ADAPTER_NAME}.weight",
                                           LORA_MATRIX_TRANSFORMS[spec.transform], shape, True, SAVED_PREFIX + name))
    grouped_kinds = {weights[module].groups_key for module in wrapped if weights[module].groups > 1}
    grouped_merge = {key: tuple(module for module, spec in weights.items() if spec.groups_key == key)
                     for key in sorted(grouped_kinds)}
    return LoraPlan(settings, architecture, tuple(wrapped), params, grouped_merge)


def _target_hint(module: str, weight: ParamSpec) -> str:
    """A target name for ``module`` in an error message: a Linear's last part (``query``); a Conv1d's parts after
    the layer index (SqueezeBERT's ``attention.query``, ``intermediate.conv1d``: ``conv1d`` alone names several)."""
    if weight.transform is CONV1D_WEIGHT:
        match = re.search(r"\.\d+\.(.+)$", module)
        if match:
            return match.group(1)
    return module.rpartition(".")[2]


def lora_matrix_shapes(weight: ParamSpec, r: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Hugging Face shapes of A and B for the module whose weight is ``weight``, as peft builds them: a Linear
    [out, in] gets A [r, in], B [out, r]; a Conv1d [out, in/groups, k] gets A a dense Conv1d [r, in, k] and B a
    grouped 1x1 Conv1d [out, r/groups, 1]."""
    if weight.transform is LINEAR_WEIGHT:
        out_features, in_features = weight.hf_shape
        return (r, in_features), (out_features, r)
    out_channels, in_per_group, kernel = weight.hf_shape
    return (r, in_per_group * weight.groups, kernel), (out_channels, r // weight.groups, 1)


def _check_rank_fits_groups(r: int, weights: list[ParamSpec]) -> None:
    """peft's LoRA on a grouped Conv1d splits A's r channels evenly over B's groups: r must be a multiple of
    each wrapped convolution's groups."""
    misfit = [spec for spec in weights if r % spec.groups]
    if misfit:
        spec = misfit[0]
        needed = math.lcm(*(spec.groups for spec in weights))
        module = spec.hf_name.removesuffix(".weight")
        raise PaddleportError("--lora-r", f"{r} is not a multiple of the {spec.groups} groups of {module} "
                                          f"({spec.groups_key}={spec.groups}); LoRA on a grouped Conv1d needs r "
                                          f"divisible by its groups: use a multiple of {needed}")


def is_lora_parameter(name: str) -> bool:
    return any(name.endswith("." + suffix) for suffix in LORA_MATRICES)


def lora_initial_value(name: str, shape: tuple[int, ...], seed: int) -> np.ndarray:
    """peft's initialisation, drawn from seeded numpy so both frameworks start alike: A kaiming-uniform
    (a=√5, i.e. U(±1/√fan_in), fan_in = A's input size times its kernel: [r, in] or a Conv1d's [r, in, k]), B
    zero. ``shape`` in Hugging Face layout."""
    if name.endswith("lora_B.weight"):
        return np.zeros(shape, dtype=np.float32)
    bound = 1.0 / math.sqrt(math.prod(shape[1:]))
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    return rng.uniform(-bound, bound, size=shape).astype(np.float32)


# ------------------------------------------------------------------------------------------- merging


def block_diagonal(weight: np.ndarray, groups: int) -> np.ndarray:
    """A grouped 1x1 Conv1d weight [out, in/groups, 1] as the dense weight [out, in, 1] of the same convolution
    (output group g reads input group g only: zeros elsewhere)."""
    out_channels, in_per_group, kernel = weight.shape
    out_per_group = out_channels // groups
    dense = np.zeros((out_channels, in_per_group * groups, kernel), dtype=weight.dtype)
    for group in range(groups):
        rows = slice(group * out_per_group, (group + 1) * out_per_group)
        dense[rows, group * in_per_group:(group + 1) * in_per_group] = weight[rows]
    return dense


def grouped_conv_delta(lora_a: np.ndarray, lora_b: np.ndarray, groups: int, scaling: float) -> np.ndarray:
    """The update [out, in, 1] that peft's LoRA adds to a 1x1 Conv1d with ``groups`` groups (any, 1 included).

    A [r, in, 1] is dense: every one of its r output channels reads all ``in`` input channels. B [out, r/groups, 1]
    is grouped: its output group g (rows g·out/groups …) reads A's channels g·r/groups … (g+1)·r/groups. So the rows
    of group g are B_g · A_g · scaling with B_g [out/groups, r/groups], A_g [r/groups, in]: dense over the input
    channels, which a grouped base weight (block diagonal) cannot hold (why peft refuses to merge it).
    Computed in float64 and returned in A's dtype.
    """
    out_channels, r_per_group, _ = lora_b.shape
    blocks_b = lora_b[:, :, 0].astype(np.float64).reshape(groups, out_channels // groups, r_per_group)
    blocks_a = lora_a[:, :, 0].astype(np.float64).reshape(groups, r_per_group, lora_a.shape[1])
    delta = np.matmul(blocks_b, blocks_a).reshape(out_channels, lora_a.shape[1]) * scaling
    return delta[:, :, None].astype(lora_a.dtype)


def merged_conv_weight(base_weight: np.ndarray, groups: int, lora_a: np.ndarray, lora_b: np.ndarray,
                       scaling: float) -> np.ndarray:
    """The dense (groups 1) weight [out, in, 1] of a LoRA-wrapped 1x1 Conv1d with the update folded in."""
    return block_diagonal(base_weight, groups) + grouped_conv_delta(lora_a, lora_b, groups, scaling)


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
    matrix = next((suffix for suffix in LORA_MATRICES if name.endswith("." + suffix)), None)
    if matrix is not None:  # LoRA's A or B: the kind of the module it wraps
        module_weight = name.removesuffix(matrix) + "weight"
        transform = _table_transform(module_weight)
        if transform not in LORA_MATRIX_TRANSFORMS:
            raise PaddleportError(ADAPTER_WEIGHTS, f"{key} wraps {module_weight}, which is no Linear or Conv1d "
                                                   "weight of a supported architecture")
        return LORA_MATRIX_TRANSFORMS[transform]
    transform = _table_transform(name)
    if transform is None:
        raise PaddleportError(ADAPTER_WEIGHTS, f"{key} is no tensor of a supported architecture")
    return transform


def _table_transform(name: str) -> Transform | None:
    """The transform the architecture tables give the canonical parameter ``name`` (None: no rule matches)."""
    return next((transform for pattern, transform in _rule_patterns() if pattern.fullmatch(name)), None)
