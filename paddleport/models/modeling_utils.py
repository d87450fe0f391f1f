"""What every Paddle model shares: outputs, activations, losses, weight init, from/save_pretrained."""

from __future__ import annotations

import contextlib
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import paddle
import paddle.nn.functional as F
from paddle import nn

from paddleport.core.configuration import PretrainedConfig
from paddleport.core.tensor_io import (
    PADDLE_FORMAT_TAG, PDPARAMS_NAME, SAFETENSORS_NAME, numpy_to_paddle, read_pdparams, read_safetensors_checked,
    tensor_to_numpy,
)
from paddleport.errors import PaddleportError
from paddleport.models.layers import attention_mask_for_layers, gelu

logger = logging.getLogger(__name__)


# --- outputs ------------------------------------------------------------------------------

@dataclass
class ModelOutput:
    """Attribute access like transformers' outputs; ``to_tuple`` drops the fields that are None."""

    def to_tuple(self) -> tuple:
        return tuple(v for v in self.__dict__.values() if v is not None)

    def __getitem__(self, index: int):
        return self.to_tuple()[index]


@dataclass
class BaseModelOutputWithPooling(ModelOutput):
    last_hidden_state: paddle.Tensor = None
    pooler_output: paddle.Tensor | None = None
    hidden_states: tuple[paddle.Tensor, ...] | None = None
    attentions: tuple[paddle.Tensor, ...] | None = None


@dataclass
class SequenceClassifierOutput(ModelOutput):
    loss: paddle.Tensor | None = None
    logits: paddle.Tensor = None
    hidden_states: tuple[paddle.Tensor, ...] | None = None
    attentions: tuple[paddle.Tensor, ...] | None = None


@dataclass
class TokenClassifierOutput(ModelOutput):
    loss: paddle.Tensor | None = None
    logits: paddle.Tensor = None
    hidden_states: tuple[paddle.Tensor, ...] | None = None
    attentions: tuple[paddle.Tensor, ...] | None = None


@dataclass
class QuestionAnsweringModelOutput(ModelOutput):
    loss: paddle.Tensor | None = None
    start_logits: paddle.Tensor = None
    end_logits: paddle.Tensor = None
    hidden_states: tuple[paddle.Tensor, ...] | None = None
    attentions: tuple[paddle.Tensor, ...] | None = None


@dataclass
class MultipleChoiceModelOutput(ModelOutput):
    loss: paddle.Tensor | None = None
    logits: paddle.Tensor = None
    hidden_states: tuple[paddle.Tensor, ...] | None = None
    attentions: tuple[paddle.Tensor, ...] | None = None


@dataclass
class BaseModelOutput(ModelOutput):
    last_hidden_state: paddle.Tensor = None
    hidden_states: tuple[paddle.Tensor, ...] | None = None
    attentions: tuple[paddle.Tensor, ...] | None = None


@dataclass
class NextSentencePredictorOutput(ModelOutput):
    loss: paddle.Tensor | None = None
    logits: paddle.Tensor = None
    hidden_states: tuple[paddle.Tensor, ...] | None = None
    attentions: tuple[paddle.Tensor, ...] | None = None


@dataclass
class MaskedLMOutput(ModelOutput):
    loss: paddle.Tensor | None = None
    logits: paddle.Tensor = None
    hidden_states: tuple[paddle.Tensor, ...] | None = None
    attentions: tuple[paddle.Tensor, ...] | None = None


# --- activations (names and formulas as transformers' ACT2FN) ------------------------------

def _quick_gelu(x):
    return x * F.sigmoid(1.702 * x)


# Read through a shared dict, not a module-level bool: dy2static runs a converted function against a copy of its
# module's globals taken at the first conversion, so a rebound global stayed False for every later trace in the
# process (the bench traces the paddle.inference program before the ONNX one: ALBERT's ONNX file had Erf again).
_TRACE_OPTIONS = {"tanh_gelu_as_formula": False}


@contextlib.contextmanager
def tanh_gelu_as_formula():
    """Inside, a traced program writes tanh-GELU as its formula (tanh, pow, mul, add: transformers' ``gelu_new``)
    instead of Paddle's ``gelu(approximate=True)`` op, which paddle2onnx 2.1 lowers as the exact erf GELU (its
    GeluMapper ignores ``approximate``): up to 4.7e-4 per activation, 1.5e-3 at ALBERT's output. Eager is unchanged."""
    previous, _TRACE_OPTIONS["tanh_gelu_as_formula"] = _TRACE_OPTIONS["tanh_gelu_as_formula"], True
    try:
        yield
    finally:
        _TRACE_OPTIONS["tanh_gelu_as_formula"] = previous


def _gelu_tanh(x):
    if _TRACE_OPTIONS["tanh_gelu_as_formula"] and not paddle.in_dynamic_mode():
        return 0.5 * x * (1.0 + paddle.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * paddle.pow(x, 3.0))))
    return F.gelu(x, approximate=True)


ACT2FN = {
    "gelu": gelu,
    "gelu_python": gelu,
    "gelu_new": _gelu_tanh,
    "gelu_fast": _gelu_tanh,
    "gelu_accurate": _gelu_tanh,
    "gelu_pytorch_tanh": _gelu_tanh,
    "quick_gelu": _quick_gelu,
    "relu": F.relu,
    "relu6": F.relu6,
    "silu": F.silu,
    "swish": F.silu,
    "tanh": paddle.tanh,
    "sigmoid": F.sigmoid,
    "mish": F.mish,
    "linear": lambda x: x,
}


def checkpointed(layer: nn.Layer, *args):
    """``layer(*args)``, its activations recomputed in backward (gradient checkpointing). Non-reentrant: Paddle's
    reentrant recompute gives the layer's parameters no gradient when none of its inputs needs one (the frozen
    embeddings under PEFT: the first layer's LoRA matrices or adapters would not train)."""
    from paddle.distributed.fleet.utils import recompute

    return recompute(layer, *args, use_reentrant=False)


def extended_attention_mask(attention_mask: paddle.Tensor, dtype) -> paddle.Tensor:
    """[batch, seq] 1/0 mask -> additive [batch, 1, 1, seq] mask (0 keeps, dtype's minimum drops)."""
    mask = attention_mask.astype(dtype).unsqueeze([1, 2])
    return (1.0 - mask) * paddle.finfo(dtype).min


def layer_attention_mask(attention_mask, dtype, num_heads: int):
    """The 1/0 [batch, seq] mask as the additive mask every attention layer takes (None stays None)."""
    if attention_mask is None:
        return None
    return attention_mask_for_layers(extended_attention_mask(attention_mask, dtype), num_heads)


def sequence_classification_loss(config: PretrainedConfig, logits: paddle.Tensor, labels: paddle.Tensor):
    """The loss transformers picks from ``problem_type`` (inferred from num_labels and label dtype if unset)."""
    problem_type = config.problem_type
    if problem_type is None:
        if config.num_labels == 1:
            problem_type = "regression"
        elif labels.dtype in (paddle.int64, paddle.int32):
            problem_type = "single_label_classification"
        else:
            problem_type = "multi_label_classification"
    if problem_type == "regression":
        labels = labels.astype(logits.dtype)
        if config.num_labels == 1:
            return F.mse_loss(logits.squeeze(), labels.squeeze())
        return F.mse_loss(logits, labels)
    if problem_type == "single_label_classification":
        return F.cross_entropy(logits.reshape([-1, config.num_labels]), labels.reshape([-1]))
    return F.binary_cross_entropy_with_logits(logits, labels.astype(logits.dtype))


class UntiedDecoder(nn.Layer):
    """An MLM decoder with weights of its own (tie_word_embeddings false), held ``[vocab, hidden]`` as torch."""

    def __init__(self, config: PretrainedConfig, in_features: int | None = None):
        super().__init__()
        self.weight = self.create_parameter([config.vocab_size, in_features or config.hidden_size])
        self.bias = self.create_parameter([config.vocab_size], is_bias=True)

    def forward(self, hidden_states):
        return paddle.matmul(hidden_states, self.weight, transpose_y=True) + self.bias


class TiedDecoder(nn.Layer):
    """An output projection whose weight is the word-embedding matrix (tie_word_embeddings) and whose bias is its
    own, as transformers' tied ``nn.Linear`` decoders (DistilBERT's ``vocab_projector``, ELECTRA's
    ``generator_lm_head``)."""

    def __init__(self, config: PretrainedConfig, word_embeddings: nn.Embedding):
        super().__init__()
        self.bias = self.create_parameter([config.vocab_size], is_bias=True)
        self._word_embeddings = [word_embeddings]  # a list, so the embedding is not registered twice

    def forward(self, hidden_states):
        return paddle.matmul(hidden_states, self._word_embeddings[0].weight, transpose_y=True) + self.bias


def output_decoder(config: PretrainedConfig, word_embeddings: nn.Embedding) -> nn.Layer:
    """The tied or untied vocabulary projection (from the embedding width), as ``config.tie_word_embeddings`` says."""
    if config.tie_word_embeddings:
        return TiedDecoder(config, word_embeddings)
    return UntiedDecoder(config, in_features=word_embeddings.weight.shape[1])


# --- the base class --------------------------------------------------------------------------

@dataclass
class LoadingInfo:
    newly_initialised: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)


class PretrainedModel(nn.Layer):
    """Base of every Paddle model: config, weight init, strict loading and saving."""

    config_class: ClassVar[type[PretrainedConfig]]
    base_model_prefix: ClassVar[str]
    # Parameter name prefixes that may be absent from a checkpoint (heads, pooler): initialised and reported.
    initialisable_prefixes: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: PretrainedConfig):
        super().__init__()
        self.config = config
        self.loading_info = LoadingInfo()

    @property
    def input_names(self) -> tuple[str, ...]:
        """The inputs this model takes (its architecture's, as its config selects them): ``paddleport.registry``."""
        from paddleport.registry import input_names_of

        return input_names_of(self.config)

    @property
    def main_output_names(self) -> tuple[str, ...]:
        """The task outputs of a head class (an exported program returns these)."""
        return ("start_logits", "end_logits") if hasattr(self, "qa_outputs") else ("logits",)

    @property
    def is_base_model(self) -> bool:
        return not hasattr(self, self.base_model_prefix)

    @property
    def base_model(self) -> "PretrainedModel":
        return getattr(self, self.base_model_prefix, self)

    def gradient_checkpointing_enable(self) -> None:
        """Recompute each encoder layer in the backward pass (paddle.distributed.fleet.utils.recompute): every
        sub-layer with a ``gradient_checkpointing`` switch (the encoder, whatever the architecture calls it)."""
        for layer in self.sublayers(include_self=True):
            if hasattr(layer, "gradient_checkpointing"):
                layer.gradient_checkpointing = True

    def init_weights(self) -> None:
        """transformers' initialisation: normal(0, initializer_range) weights, zero biases, unit LayerNorms."""
        std = self.config.initializer_range
        for layer in self.sublayers(include_self=True):
            if isinstance(layer, (nn.Linear, nn.Conv1D, nn.Embedding, UntiedDecoder)):
                weight = paddle.normal(0.0, std, layer.weight.shape)
                if getattr(layer, "padding_row", None) is not None:
                    weight[layer.padding_row] = 0.0
                layer.weight.set_value(weight.astype(layer.weight.dtype))
            elif isinstance(layer, nn.LayerNorm):
                layer.weight.set_value(paddle.ones_like(layer.weight))
            for name, param in layer.named_parameters(include_sublayers=False):
                if name == "bias":
                    param.set_value(paddle.zeros_like(param))

    @classmethod
    def from_config(cls, config: PretrainedConfig) -> "PretrainedModel":
        model = cls(config)
        model.init_weights()
        return model

    @classmethod
    def from_pretrained(cls, directory: str | Path, **config_overrides: Any) -> "PretrainedModel":
        directory = Path(directory)
        if not directory.is_dir():
            raise PaddleportError(directory, "model directory does not exist")
        config = cls.config_class.from_pretrained(directory, **config_overrides)
        model = cls.from_config(config)
        model.load_weights(read_paddle_state_dict(directory))
        model.eval()
        return model

    def load_weights(self, state: dict[str, np.ndarray]) -> LoadingInfo:
        """Strict loading: every base parameter must be present with its shape; only heads may be missing."""
        state = self._align_prefix(state)
        own = self.state_dict()
        info = LoadingInfo(
            newly_initialised=sorted(k for k in own if k not in state),
            dropped=sorted(k for k in state if k not in own),
        )
        missing_required = [k for k in info.newly_initialised if not k.startswith(self.initialisable_prefixes)]
        if missing_required:
            raise PaddleportError(None, f"checkpoint lacks {len(missing_required)} parameters of "
                                        f"{type(self).__name__}: {', '.join(missing_required[:8])}")
        for name in sorted(set(own) & set(state)):
            value = state[name]
            if tuple(value.shape) != tuple(own[name].shape):
                raise PaddleportError(None, f"parameter {name} has shape {tuple(value.shape)} in the checkpoint, "
                                            f"the model expects {tuple(own[name].shape)}")
            own[name].set_value(numpy_to_paddle(np.asarray(value)).astype(own[name].dtype))
        for kind, names in (("newly initialised", info.newly_initialised), ("dropped", info.dropped)):
            if names:
                logger.warning("%s: %s parameters: %s", type(self).__name__, kind, ", ".join(names))
        self.loading_info = info
        return info

    def _align_prefix(self, state: dict[str, Any]) -> dict[str, Any]:
        """Accept a base-model checkpoint in a head class and a head checkpoint in the base class."""
        prefix = self.base_model_prefix + "."
        has_prefix = any(k.startswith(prefix) for k in state)
        if self.is_base_model and has_prefix:
            return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)} | {
                k: v for k, v in state.items() if not k.startswith(prefix)}
        if not self.is_base_model and not has_prefix:
            return {prefix + k: v for k, v in state.items()}
        return state

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write config.json and model.safetensors (Paddle layout) so that ``from_pretrained`` reads them back."""
        from safetensors.numpy import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = self.config.to_dict() | {"architectures": [type(self).__name__]}
        (directory / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        arrays = {name: tensor_to_numpy(value) for name, value in self.state_dict().items()}
        save_file(arrays, str(directory / SAFETENSORS_NAME), metadata={"format": PADDLE_FORMAT_TAG})
        return directory


def read_paddle_state_dict(directory: Path) -> dict[str, Any]:
    """Weights of a Paddle directory: model.safetensors (Paddle layout) or model_state.pdparams."""
    safetensors_path = directory / SAFETENSORS_NAME
    if safetensors_path.is_file():
        arrays, metadata = read_safetensors_checked(safetensors_path)
        if (metadata or {}).get("format") != PADDLE_FORMAT_TAG:
            raise PaddleportError(safetensors_path, "holds Hugging Face (torch layout) weights, not Paddle ones: "
                                                    "convert it first with `paddleport convert`")
        return arrays
    pdparams_path = directory / PDPARAMS_NAME
    if pdparams_path.is_file():
        return read_pdparams(pdparams_path)
    raise PaddleportError(directory, f"no weights file ({SAFETENSORS_NAME} or {PDPARAMS_NAME})")


def masked_lm_loss(logits: paddle.Tensor, labels: paddle.Tensor) -> paddle.Tensor:
    """Cross-entropy over the vocabulary, averaged over labelled positions (-100 marks none), as torch does.

    Paddle's mean reduction with ignore_index divides by every position, so the mean is taken here.
    """
    labels = labels.reshape([-1])
    losses = F.cross_entropy(logits.reshape([-1, logits.shape[-1]]), labels, ignore_index=-100, reduction="none")
    return losses.sum() / (labels != -100).astype(losses.dtype).sum()


def token_classification_loss(logits: paddle.Tensor, labels: paddle.Tensor) -> paddle.Tensor:
    """torch's CrossEntropyLoss over every position (labels of -100 ignored, mean over the rest)."""
    return masked_lm_loss(logits, labels)


def question_answering_loss(start_logits, end_logits, start_positions, end_positions) -> paddle.Tensor:
    """transformers' span loss: positions outside the sequence are clamped to it and then ignored."""
    ignored_index = start_logits.shape[1]
    losses = []
    for logits, positions in ((start_logits, start_positions), (end_logits, end_positions)):
        positions = positions.reshape([-1]).clip(0, ignored_index)
        per_row = F.cross_entropy(logits, positions, ignore_index=ignored_index, reduction="none").reshape([-1])
        kept = (positions != ignored_index).astype(per_row.dtype)
        losses.append(per_row.sum() / kept.sum())
    return (losses[0] + losses[1]) / 2


def flatten_choices(tensor):
    """[batch, choices, seq] -> [batch * choices, seq] (None stays None), as transformers' multiple-choice heads."""
    return None if tensor is None else tensor.reshape([-1, tensor.shape[-1]])
