"""Bottleneck adapters (Houlsby, Pfeiffer) without a framework: settings, plan, AdapterHub's directory format.

AdapterHub's ``adapters`` package (1.3.0, the newest) cannot be used on the torch side: it requires
``transformers~=4.57.6`` (pip would downgrade transformers 5), and installed beside transformers 5.24 without its
dependencies it fails on import (``cannot import name 'HfFolder' from 'huggingface_hub'``; past that,
``cannot import name 'is_remote_url' from 'transformers.utils'``). So both frameworks get paddleport's own
adapter layers (``torch_bottleneck``, ``paddle_bottleneck``), which mirror AdapterHub's ``Adapter`` module:

- placement (each registry entry's ``bottleneck_layout``, from AdapterHub's model integrations): the attention adapter
  (``mh_adapter``) sits where the attention sub-block's output joins its residual before that sub-block's
  LayerNorm, the feed-forward adapter (``output_adapter``) likewise after the feed-forward output. BERT-style blocks
  (BERT, RoBERTa, XLM-R, ELECTRA, ERNIE, DeBERTa-v2) hold them in their ``…attention.output`` / ``…output`` modules;
  DistilBERT's ``TransformerBlock`` in ``attention_adapters`` / ``output_adapters`` (before ``sa_layer_norm`` /
  ``output_layer_norm``); ALBERT's shared ``AlbertLayer`` in ``attention.attention_adapters`` /
  ``output_adapters``, one set per shared layer, applied at every application of it; SqueezeBERT (no AdapterHub
  integration: paddleport's own layout) in its ``post_attention`` / ``output`` conv blocks, over the channels;
- names: ``<holder>.adapters.<name>.adapter_down.0`` (Linear hidden -> hidden/reduction_factor), ``adapter_down.1``
  (the non-linearity), ``<holder>.adapters.<name>.adapter_up`` (Linear back to hidden);
- computation (``Adapter.pre_forward`` / ``forward`` / ``post_forward`` with one adapter, no adapter layer norms,
  scaling 1, dropout 0): with ``h`` the sub-block's output (after its dropout) and ``r`` its residual input,
  ``residual_before_ln``: the adapter's residual is ``h``; ``original_ln_before`` (Pfeiffer): the adapter reads
  ``LayerNorm(h + r)``, else (Houlsby) ``h``; the output is ``LayerNorm(h + up(act(down(a))) + r)`` with the
  block's own (frozen) LayerNorm. ALBERT's attention passes AdapterHub's adapter layer its two inputs the other way
  round (``attention_adapters(hidden_states, projected_context, LayerNorm)``), so there ``h`` is the attention's
  input and ``r`` its projected output; paddleport does the same, so AdapterHub's ALBERT adapters compute alike;
- initialisation (``init_weights="bert"``): Linear weights ~ N(0, 0.02), biases 0 (drawn from seeded numpy, so
  both frameworks start alike).

A saved adapter is AdapterHub's layout: ``adapter_config.json`` (``build_full_config``: the full ``BnConfig``
under ``config``, ``model_type``, ``hidden_size``, ``name``, ``model_class``, ``version``), ``adapter.safetensors``
(the adapter tensors under their model names) and, for the trained head (every module outside the base model, as
AdapterHub's ``freeze_model`` leaves it trainable: ``classifier``, DistilBERT's ``pre_classifier``, DeBERTa's
``pooler``), ``head_config.json`` + ``model_head.safetensors`` (a static head's files). Tensors are in torch layout
(``format: pt``) or, written by the Paddle side, Paddle layout (``format: paddle``: Linear weights transposed).
"""

from __future__ import annotations

import json
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from paddleport.convert.transforms import LINEAR_BIAS, LINEAR_WEIGHT, Transform
from paddleport.errors import PaddleportError
from paddleport.peft.lora import AdaptedParam, PlanParameters

BOTTLENECK_FILE = "adapter.safetensors"  # AdapterHub's SAFE_WEIGHTS_NAME
HEAD_CONFIG = "head_config.json"
HEAD_FILE = "model_head.safetensors"  # AdapterHub's SAFE_HEAD_WEIGHTS_NAME
ADAPTERHUB_VERSION = "adapters.1.3.0"
ADAPTER_NAME = "default"
INIT_STD = 0.02  # AdapterHub's init_weights="bert"

# AdapterHub's named configs paddleport implements (adapter_config.py: DoubleSeqBnConfig, SeqBnConfig).
PRESETS = {
    "houlsby": {"mh_adapter": True, "output_adapter": True, "non_linearity": "swish", "original_ln_before": False},
    "pfeiffer": {"mh_adapter": False, "output_adapter": True, "non_linearity": "relu", "original_ln_before": True},
}
# BnConfig's fields at their AdapterHub 1.3.0 defaults; a saved config holding another value for one of them uses
# an option paddleport does not implement.
FIXED_OPTIONS = {
    "architecture": None, "original_ln_after": True, "ln_before": False, "ln_after": False, "init_weights": "bert",
    "init_weights_seed": None, "is_parallel": False, "scaling": 1.0, "use_gating": False,
    "residual_before_ln": True, "adapter_residual_before_ln": False, "inv_adapter": None,
    "inv_adapter_reduction_factor": None, "cross_adapter": False, "leave_out": [], "dropout": 0.0,
    "phm_layer": False, "phm_dim": 4, "factorized_phm_W": True, "shared_W_phm": False, "shared_phm_rule": True,
    "factorized_phm_rule": False, "phm_c_init": "normal", "phm_init_range": 0.0001, "learn_phm": True,
    "hypercomplex_nonlinearity": "glorot-uniform", "phm_rank": 1, "phm_bias": True, "stochastic_depth": 0.0,
}
# Non-linearities both frameworks' ACT2FN tables define under the same name and formula.
NON_LINEARITIES = ("relu", "swish", "silu", "gelu", "gelu_new", "tanh", "sigmoid")
LOCATIONS = ("mh_adapter", "output_adapter")  # AdapterHub's location keys, in a layer's order


ADAPTER_RULES: tuple[tuple[str, Transform], ...] = (
    ("adapter_down.0.weight", LINEAR_WEIGHT),  # torch [bottleneck, hidden] <-> Paddle [hidden, bottleneck]
    ("adapter_down.0.bias", LINEAR_BIAS),
    ("adapter_up.weight", LINEAR_WEIGHT),
    ("adapter_up.bias", LINEAR_BIAS),
)


@dataclass(frozen=True)
class BottleneckSettings:
    """What paddleport implements of AdapterHub's ``BnConfig``."""

    mh_adapter: bool = True
    output_adapter: bool = True
    non_linearity: str = "swish"
    original_ln_before: bool = False
    reduction_factor: float = 16
    name: str = ADAPTER_NAME
    # the head, trained and saved beside the adapter; plan_bottleneck sets it to the modules outside the base model
    modules_to_save: tuple[str, ...] = ("classifier",)

    @classmethod
    def preset(cls, config: str, reduction_factor: float) -> "BottleneckSettings":
        if config not in PRESETS:
            raise PaddleportError("--adapter-config", f"must be one of {', '.join(PRESETS)}, not {config!r}")
        return cls(reduction_factor=reduction_factor, **PRESETS[config]).check()

    @property
    def preset_name(self) -> str | None:
        fields = {key: getattr(self, key) for key in PRESETS["houlsby"]}
        return next((name for name, preset in PRESETS.items() if preset == fields), None)

    def check(self) -> "BottleneckSettings":
        if not isinstance(self.reduction_factor, (int, float)) or not self.reduction_factor > 0:
            raise PaddleportError("--reduction-factor", f"must be positive, got {self.reduction_factor}")
        if self.non_linearity.lower() not in NON_LINEARITIES:
            raise PaddleportError("non_linearity", f"{self.non_linearity!r} is not supported "
                                                   f"(choose from {', '.join(NON_LINEARITIES)})")
        if not (self.mh_adapter or self.output_adapter):
            raise PaddleportError("adapter_config.json", "places no adapter (mh_adapter and output_adapter false)")
        return self

    def bottleneck_size(self, hidden_size: int) -> int:
        """``hidden_size / reduction_factor``, which must be a whole number ≥ 1 (AdapterHub floors it silently)."""
        size = hidden_size / self.reduction_factor
        if size < 1 or size != int(size):
            raise PaddleportError("--reduction-factor", f"{self.reduction_factor:g} does not divide hidden_size "
                                                        f"{hidden_size} into a whole bottleneck size ≥ 1 "
                                                        f"({hidden_size} / {self.reduction_factor:g} = {size:g})")
        return int(size)

    def to_adapter_config(self, *, model_type: str, hidden_size: int, model_class: str,
                          base_model: str | None) -> dict:
        """``adapter_config.json`` as AdapterHub's ``build_full_config`` writes it."""
        config = dict(FIXED_OPTIONS) | {
            "mh_adapter": self.mh_adapter, "output_adapter": self.output_adapter,
            "non_linearity": self.non_linearity, "original_ln_before": self.original_ln_before,
            "reduction_factor": self.reduction_factor}
        return {"config": dict(sorted(config.items())), "hidden_size": hidden_size, "model_class": model_class,
                "model_name": base_model, "model_type": model_type, "name": self.name,
                "version": ADAPTERHUB_VERSION}


def is_bottleneck_dir(path: Path) -> bool:
    """An AdapterHub adapter directory (its adapter_config.json holds a ``config`` with adapter placements)."""
    try:
        config = json.loads((Path(path) / "adapter_config.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and isinstance(config.get("config"), dict) and "peft_type" not in config


def read_bottleneck_settings(adapter_dir: Path) -> tuple[BottleneckSettings, dict]:
    """The settings and the whole ``adapter_config.json`` of an AdapterHub bottleneck adapter directory; an
    option paddleport does not implement (parallel adapters, adapter layer norms, PHM, gating, …) is an error."""
    path = Path(adapter_dir) / "adapter_config.json"
    try:
        full = json.loads(path.read_text())
    except OSError as error:
        raise PaddleportError(path, f"cannot be read ({error.strerror})") from None
    except json.JSONDecodeError as error:
        raise PaddleportError(path, f"is not valid JSON ({error})") from None
    config = full.get("config")
    if not isinstance(config, dict):
        raise PaddleportError(path, "has no AdapterHub adapter config")
    if config.get("architecture") not in (None, "bottleneck"):
        raise PaddleportError(path, f"architecture {config['architecture']!r} is not supported (only bottleneck)")
    for key, default in FIXED_OPTIONS.items():
        if key != "architecture" and key in config and config[key] != default:
            raise PaddleportError(path, f"option {key}={config[key]!r} is not supported by paddleport")
    if isinstance(config.get("reduction_factor"), dict):
        raise PaddleportError(path, "a per-layer reduction_factor is not supported by paddleport")
    try:
        settings = BottleneckSettings(
            mh_adapter=bool(config["mh_adapter"]), output_adapter=bool(config["output_adapter"]),
            non_linearity=str(config["non_linearity"]), original_ln_before=bool(config.get("original_ln_before")),
            reduction_factor=config["reduction_factor"], name=str(full.get("name") or ADAPTER_NAME))
    except KeyError as error:
        raise PaddleportError(path, f"lacks {error.args[0]}") from None
    return settings.check(), full


# ------------------------------------------------------------------------------------------- plan


@dataclass
class BottleneckPlan(PlanParameters):
    """Where the adapters go in a given model, and every parameter of the adapted model (as ``LoraPlan``)."""

    settings: BottleneckSettings
    architecture: str
    model_type: str
    hidden_size: int
    bottleneck: int
    placed: tuple  # registry.AdapterSite, full module names, in model order: layer, attention before feed-forward
    params: list

    @property
    def adapted(self) -> tuple[str, ...]:
        """The modules holding an adapter, in model order."""
        return tuple(place.holder for place in self.placed)

    @property
    def adapters_per_layer(self) -> int:
        """Adapters one application of a layer runs (ALBERT applies its shared layers several times)."""
        return sum(1 for location in LOCATIONS if getattr(self.settings, location))

    def is_head(self, name: str) -> bool:
        return any(name == module or name.startswith(module + ".") for module in self.settings.modules_to_save)


def _join(layer: str, relative: str) -> str:
    return f"{layer}.{relative}" if relative else layer


def plan_bottleneck(config: dict, architecture: str, settings: BottleneckSettings) -> BottleneckPlan:
    """The adapted model's parameters from the conversion table (no model is built). Errors: an architecture
    adapters cannot adapt, a reduction factor that does not divide the hidden size."""
    from dataclasses import replace

    from paddleport.convert import parameter_specs
    from paddleport.registry import architecture_of_class

    settings.check()
    entry = architecture_of_class(architecture, "config.json")
    layout = entry.bottleneck_layout
    if layout is None:
        raise PaddleportError("--peft", f"bottleneck adapters cannot adapt {entry.model_type}: "
                                        f"{entry.no_bottleneck_adapters}")
    hidden = int(entry.config_class(**config).hidden_size)  # DistilBERT's config.json calls it dim
    bottleneck = settings.bottleneck_size(hidden)
    specs = list(parameter_specs(config, architecture))
    base = entry.base_prefix  # "bert." (XLM-R's "roberta.")
    # AdapterHub's freeze_model freezes the base model only: every module outside it trains and is the saved head
    heads = tuple(dict.fromkeys(spec.hf_name.split(".")[0] for spec in specs if not spec.hf_name.startswith(base)))
    settings = replace(settings, modules_to_save=heads)
    layers = [match["layer"] for spec in specs if (match := re.fullmatch(layout.layer, spec.hf_name))]
    if not layers:
        raise PaddleportError("--peft", f"{architecture} has no layer where the adapters go")
    shapes = {"adapter_down.0.weight": (bottleneck, hidden), "adapter_down.0.bias": (bottleneck,),
              "adapter_up.weight": (hidden, bottleneck), "adapter_up.bias": (hidden,)}
    placed, adapter_params = [], {}
    for layer in layers:
        for location in LOCATIONS:
            if getattr(settings, location):
                site = getattr(layout, location)
                holder = _join(layer, site.holder)
                placed.append(replace(site, holder=holder, patched=_join(layer, site.patched)))
                for leaf, transform in ADAPTER_RULES:
                    name = f"{holder}.adapters.{settings.name}.{leaf}"
                    adapter_params.setdefault(layer, []).append(
                        AdaptedParam(name, name, transform, shapes[leaf], True, name))
    params = []
    last_of_layer = {layer: max(i for i, spec in enumerate(specs) if spec.hf_name.startswith(layer + "."))
                     for layer in layers}
    for index, spec in enumerate(specs):
        trainable = any(spec.hf_name == m or spec.hf_name.startswith(m + ".") for m in heads)
        params.append(AdaptedParam(spec.hf_name, spec.paddle_name, spec.transform, tuple(spec.hf_shape), trainable,
                                   spec.hf_name if trainable else None))
        params.extend(param for layer in layers if last_of_layer[layer] == index for param in adapter_params[layer])
    return BottleneckPlan(settings, architecture, entry.model_type, hidden, bottleneck, tuple(placed), params)


# ----------------------------------------------------------------------------- forwards (either framework)
# Written once for torch and Paddle: they only call the tensors' ``+`` and the layers passed in. Each framework's
# ``BottleneckAdapter`` has ``original_ln_before`` and ``over_channels`` (its own transposes).


def held_adapter(holder):
    """The adapter ``holder`` holds; None where this site has none (Pfeiffer's attention, or no holder)."""
    adapters = getattr(holder, "adapters", None)
    return None if adapters is None else adapters[holder.adapter_name]


def adapter_site(adapter, hidden_states, input_tensor, layer_norm, channels_first: bool = False):
    """AdapterHub's ``bottleneck_layer_forward`` with one adapter: ``layer_norm(hidden_states + input_tensor)``
    with the adapter between (``channels_first``: [batch, channels, width] data, the adapter over the channels)."""
    if adapter is None:
        return layer_norm(hidden_states + input_tensor)
    adapter_input = layer_norm(hidden_states + input_tensor) if adapter.original_ln_before else hidden_states
    adapted = (adapter.over_channels if channels_first else adapter)(adapter_input, hidden_states)
    return layer_norm(adapted + input_tensor)


def output_block_forward(self, hidden_states, input_tensor):
    """A BERT-style SelfOutput / Output (dense, dropout, LayerNorm) with its adapter."""
    return adapter_site(held_adapter(self), self.dropout(self.dense(hidden_states)), input_tensor, self.LayerNorm)


def channel_output_block_forward(self, hidden_states, input_tensor):
    """SqueezeBERT's ConvDropoutLayerNorm (conv1d, dropout, channel LayerNorm; [batch, channels, width]) with its
    adapter."""
    return adapter_site(held_adapter(self), self.dropout(self.conv1d(hidden_states)), input_tensor, self.layernorm,
                        channels_first=True)


def is_bottleneck_parameter(name: str) -> bool:
    return ".adapters." in name and any(name.endswith("." + leaf) for leaf, _ in ADAPTER_RULES)


def bottleneck_initial_value(name: str, shape: tuple[int, ...], seed: int) -> np.ndarray:
    """AdapterHub's ``init_weights="bert"``: weights ~ N(0, 0.02), biases 0; from seeded numpy (by name)."""
    if name.endswith(".bias"):
        return np.zeros(shape, dtype=np.float32)
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    return rng.normal(0.0, INIT_STD, size=shape).astype(np.float32)


def transform_of_bottleneck_key(key: str) -> Transform:
    """An adapter file's key -> its transform: the adapter rules, else (the head) the architecture tables."""
    from paddleport.peft.lora import transform_of_adapter_key

    for leaf, transform in ADAPTER_RULES:
        if key.endswith("." + leaf) and ".adapters." in key:
            return transform
    return transform_of_adapter_key(key)


def check_bottleneck_fits(plan: BottleneckPlan, stored: dict[str, tuple[int, ...]], layout: str, where: Path) -> None:
    """The stored tensors (both files) are exactly the adapted model's saved ones, in ``layout``'s shapes."""
    expected = plan.saved
    for key, shape in stored.items():
        param = expected.get(key)
        if param is None:
            raise PaddleportError(where, f"is an adapter for another base model: {key} has no place in "
                                         f"{plan.architecture} with this adapter config")
        want = param.hf_shape if layout == "hf" else param.transform.paddle_shape(param.hf_shape)
        if tuple(shape) != tuple(want):
            raise PaddleportError(where, f"is an adapter for another base model: {key} has shape {tuple(shape)}, "
                                         f"this base model needs {tuple(want)}")
    missing = sorted(set(expected) - set(stored))
    if missing:
        raise PaddleportError(where, f"lacks {len(missing)} tensors of this adapter: {', '.join(missing[:4])}")


# ------------------------------------------------------------------------------------------- files


def head_config(plan: BottleneckPlan, config: dict, model_class: str, base_model: str | None) -> dict:
    """``head_config.json`` of a static head as AdapterHub's ``PredictionHeadLoader.save`` writes it."""
    num_labels = int(config.get("num_labels", 2))
    return {"config": None, "hidden_size": plan.hidden_size, "label2id": {f"LABEL_{i}": i for i in range(num_labels)},
            "model_class": model_class, "model_name": base_model, "model_type": plan.model_type, "name": None,
            "num_labels": num_labels, "version": ADAPTERHUB_VERSION}


def write_bottleneck_dir(directory: Path, plan: BottleneckPlan, arrays: dict[str, np.ndarray], layout_tag: str,
                         base_model: str | None, num_labels: int) -> Path:
    """The adapter and head files from ``arrays`` (saved key -> tensor in the layout ``layout_tag`` names)."""
    from safetensors.numpy import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    head = {key: np.ascontiguousarray(value) for key, value in arrays.items() if plan.is_head(key)}
    adapter = {key: np.ascontiguousarray(value) for key, value in arrays.items() if not plan.is_head(key)}
    save_file(adapter, str(directory / BOTTLENECK_FILE), metadata={"format": layout_tag})
    config = plan.settings.to_adapter_config(model_type=plan.model_type, hidden_size=plan.hidden_size,
                                             model_class=plan.architecture, base_model=base_model)
    (directory / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n")
    if head:
        save_file(head, str(directory / HEAD_FILE), metadata={"format": layout_tag})
        heads = head_config(plan, {"num_labels": num_labels}, plan.architecture, base_model)
        (directory / HEAD_CONFIG).write_text(json.dumps(heads, indent=2) + "\n")
    return directory


def bottleneck_files(adapter_dir: Path) -> list[Path]:
    """The adapter's weight files (adapter, then head when present)."""
    adapter_dir = Path(adapter_dir)
    if not (adapter_dir / BOTTLENECK_FILE).is_file():
        hint = " (a pytorch_adapter.bin: save it with use_safetensors=True)" if \
            (adapter_dir / "pytorch_adapter.bin").is_file() else ""
        raise PaddleportError(adapter_dir, f"has no {BOTTLENECK_FILE}{hint}")
    return [path for path in (adapter_dir / BOTTLENECK_FILE, adapter_dir / HEAD_FILE) if path.is_file()]


def read_bottleneck_arrays(adapter_dir: Path) -> tuple[dict[str, np.ndarray], str]:
    """Every stored tensor of the adapter directory and its layout ("hf" or "paddle"; both files must agree)."""
    from paddleport.core.tensor_io import PADDLE_FORMAT_TAG, read_safetensors_checked

    arrays, layouts = {}, set()
    for path in bottleneck_files(adapter_dir):
        values, metadata = read_safetensors_checked(path)
        arrays.update(values)
        layouts.add("paddle" if metadata.get("format") == PADDLE_FORMAT_TAG else "hf")
    if len(layouts) != 1:
        raise PaddleportError(adapter_dir, "holds its adapter and head in different layouts")
    return arrays, layouts.pop()


def adapter_num_labels(adapter_dir: Path, base_config: dict) -> int:
    """The label count of the saved head (head_config.json), else the base model's."""
    path = Path(adapter_dir) / HEAD_CONFIG
    if path.is_file():
        try:
            return int(json.loads(path.read_text())["num_labels"])
        except (ValueError, KeyError, TypeError):
            raise PaddleportError(path, "has no integer num_labels") from None
    return len(base_config.get("id2label") or {}) or int(base_config.get("num_labels", 2))


def convert_bottleneck_dir(src: Path, partial: Path, to: str) -> int:
    """Write ``src``'s adapter in the other layout into ``partial``; returns the tensor count."""
    from safetensors.numpy import save_file

    from paddleport.core.tensor_io import PADDLE_FORMAT_TAG

    read_bottleneck_settings(src)
    arrays, layout = read_bottleneck_arrays(src)
    if layout == to:
        raise PaddleportError(src / BOTTLENECK_FILE, f"already holds {'Paddle' if to == 'paddle' else 'Hugging Face'}"
                                                     f"-layout tensors (use --to {'hf' if to == 'paddle' else 'paddle'})")
    tag = PADDLE_FORMAT_TAG if to == "paddle" else "pt"
    for path in bottleneck_files(src):
        from paddleport.core.tensor_io import read_safetensors_checked

        values, _ = read_safetensors_checked(path)
        converted = {}
        for key, value in values.items():
            transform = transform_of_bottleneck_key(key)
            converted[key] = np.ascontiguousarray(transform.to_paddle(value) if to == "paddle"
                                                  else transform.to_hf(value))
        save_file(converted, str(partial / path.name), metadata={"format": tag})
    return len(arrays)
