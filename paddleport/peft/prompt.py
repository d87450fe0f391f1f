"""Prompt tuning and p-tuning without a framework: settings, the plan, names, the adapter format, initial values.

What Hugging Face ``peft`` (0.21.2) does to a sequence classifier (``PeftModelForSequenceClassification.forward``),
and what paddleport's Paddle side (``paddle_prompt``) reproduces:

- ``num_virtual_tokens`` prompt vectors come from the prompt encoder: for prompt tuning an embedding table
  ``[n, token_dim]`` (``prompt_tuning_init`` RANDOM: N(0, 1); TEXT: the word embeddings of a text's tokens,
  :func:`text_init_token_ids`); for p-tuning that table fed through an MLP (Linear-ReLU-Linear-ReLU-Linear, hidden
  ``encoder_hidden_size``) or through a bidirectional 2-layer LSTM and a Linear-ReLU-Linear head. They are the same
  for every example of the batch.
- The input ids' word embeddings (the model's own ``embeddings.word_embeddings``) get the prompts prepended and the
  model runs on ``inputs_embeds``; ``attention_mask`` gets n ones prepended, ``token_type_ids`` n zeros; position ids
  are the model's own for an ``inputs_embeds`` input (0..n+L-1; RoBERTa's from ``padding_idx + 1``, padding
  included, as transformers counts them when it has no ids); an explicit ``position_ids`` is dropped (peft warns).
- Inputs peft does not extend (ERNIE 3.0's ``task_type_ids``) are left out when all zero (:data:`ZERO_ONLY_INPUTS`).
- Every model parameter is frozen except the ``modules_to_save``: for SEQ_CLS peft adds ``classifier`` and
  ``score`` and matches them as plain name suffixes, so DistilBERT's ``pre_classifier`` trains too.
- The adapter file holds ``prompt_embeddings`` (the encoder's output for the n tokens, ``[n, token_dim]``: the
  MLP/LSTM are not saved) and the modules_to_save under ``base_model.<name>``. Loaded to run (peft's
  ``inference_mode``), either method is an embedding table holding ``prompt_embeddings``.

``token_dim`` is the width of the word embeddings (ALBERT's and ELECTRA's ``embedding_size``; peft's own default, the
hidden size, fails on them), passed to peft explicitly and written to ``adapter_config.json``.

Canonical names (the backends' ``get/set_parameters``): the model's Hugging Face names, and the prompt encoder's as
``prompt_encoder.<its parameter>`` (``prompt_encoder.embedding.weight``, ``prompt_encoder.mlp_head.0.weight``,
``prompt_encoder.lstm_head.weight_ih_l0_reverse``). Paddle names in paddleport's wrapper mirror peft's:
``base_model.<Paddle model name>``, ``prompt_encoder.default.<parameter>``.
"""

from __future__ import annotations

import json
import math
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from paddleport.convert.table import ParamSpec
from paddleport.convert.transforms import EMBEDDING, LINEAR_BIAS, LINEAR_WEIGHT, LSTM_BIAS, LSTM_WEIGHT, Transform
from paddleport.errors import PaddleportError

PROMPT_METHODS = {"prompt": "PROMPT_TUNING", "p-tuning": "P_TUNING"}  # --peft name -> peft_type
ENCODER_TYPES = ("MLP", "LSTM")
PROMPT_INITS = ("RANDOM", "TEXT")  # peft's prompt_tuning_init values paddleport trains (not SAMPLE_VOCAB)
PROMPT_EMBEDDINGS = "prompt_embeddings"  # the adapter file's key of the virtual tokens' vectors
SAVED_PREFIX = "base_model."  # peft's prefix of a prompt-learning model's modules_to_save in the adapter file
ENCODER = "prompt_encoder."  # canonical prefix of the prompt encoder's parameters
PADDLE_ENCODER = "prompt_encoder.default."  # their Paddle (and peft) prefix
CLASSIFIER_NAMES = ("classifier", "score")  # what peft adds to modules_to_save for SEQ_CLS
WORD_EMBEDDINGS = "embeddings.word_embeddings.weight"  # under the base prefix: the vectors the prompts join
LSTM_LAYERS = 2  # peft's encoder_num_layers (the LSTM's layers; the MLP always has three Linears)
# Model inputs peft does not extend for the virtual tokens (it extends the attention mask by ones and the token types
# by zeros): it passes them on as given, one per text token, which the model cannot add to the n + L embeddings
# (transformers' ERNIE fails). Left out, transformers' ERNIE takes task type 0 at every position, the virtual tokens
# included. So both frameworks leave an all-zero one out (what run-glue, train-parity and compare feed: a tokenizer
# gives no task types) and refuse any other value, which peft cannot run.
ZERO_ONLY_INPUTS = ("task_type_ids",)


@dataclass(frozen=True)
class PromptSettings:
    """What ``peft.PromptTuningConfig`` / ``PromptEncoderConfig`` hold, with peft's defaults."""

    method: str = "prompt"  # "prompt" or "p-tuning"
    num_virtual_tokens: int = 20
    encoder_reparameterization_type: str = "MLP"  # p-tuning only
    encoder_hidden_size: int | None = None  # p-tuning only; None: the token dimension
    encoder_num_layers: int = LSTM_LAYERS
    encoder_dropout: float = 0.0
    prompt_tuning_init: str = "RANDOM"  # prompt tuning only: RANDOM or TEXT (the text's word embeddings)
    prompt_tuning_init_text: str | None = None  # TEXT: the text
    tokenizer_name_or_path: str | None = None  # TEXT: the directory of the tokenizer that splits it (the run's)
    inference: bool = False  # loaded to run (peft's inference_mode): the prompt is a plain table

    @property
    def peft_type(self) -> str:
        return PROMPT_METHODS[self.method]

    @property
    def has_encoder(self) -> bool:
        """p-tuning while training: the prompts come out of an MLP/LSTM."""
        return self.method == "p-tuning" and not self.inference

    def check(self) -> "PromptSettings":
        if self.method not in PROMPT_METHODS:
            raise PaddleportError("--peft", f"{self.method!r} is not a prompt-learning method")
        if self.num_virtual_tokens <= 0:
            raise PaddleportError("--num-virtual-tokens", f"must be positive, got {self.num_virtual_tokens}")
        if self.method == "p-tuning":
            if self.encoder_reparameterization_type not in ENCODER_TYPES:
                raise PaddleportError("--encoder-reparameterization-type",
                                      f"must be MLP or LSTM, not {self.encoder_reparameterization_type!r}")
            if self.encoder_hidden_size is not None and self.encoder_hidden_size <= 0:
                raise PaddleportError("--encoder-hidden-size", f"must be positive, got {self.encoder_hidden_size}")
            if not self.inference and (self.encoder_num_layers != LSTM_LAYERS or self.encoder_dropout != 0):
                # training only: a loaded adapter holds the encoder's output, not the encoder
                raise PaddleportError("--peft", "paddleport trains p-tuning encoders with peft's defaults only "
                                                f"(encoder_num_layers {LSTM_LAYERS}, encoder_dropout 0)")
        if not self.inference:  # the initialisation of a loaded adapter does not matter (peft skips it too)
            self._check_init()
        return self

    def _check_init(self) -> None:
        if self.prompt_tuning_init not in PROMPT_INITS:
            raise PaddleportError("--prompt-tuning-init", f"must be one of {', '.join(PROMPT_INITS)}, not "
                                                          f"{self.prompt_tuning_init!r}")
        if self.method != "prompt" and (self.prompt_tuning_init != "RANDOM" or self.prompt_tuning_init_text):
            raise PaddleportError("--prompt-tuning-init", f"is for prompt tuning (--peft prompt); peft's {self.method} "
                                                          "(PromptEncoderConfig) has no TEXT initialisation")
        if self.prompt_tuning_init != "TEXT":
            if self.prompt_tuning_init_text is not None:
                raise PaddleportError("--prompt-tuning-init-text", "is only read with --prompt-tuning-init TEXT")
            return
        if not self.prompt_tuning_init_text:
            raise PaddleportError("--prompt-tuning-init-text", "is required by --prompt-tuning-init TEXT (the text "
                                                               "whose word embeddings start the virtual tokens)")
        if not self.tokenizer_name_or_path:
            raise PaddleportError("--tokenizer", "--prompt-tuning-init TEXT needs the model's tokenizer directory")

    def hidden_size(self, token_dim: int) -> int:
        return self.encoder_hidden_size or token_dim


@dataclass
class PromptPlan:
    """Every parameter of a model adapted by prompt tuning / p-tuning, and what its adapter file holds."""

    settings: PromptSettings
    architecture: str
    token_dim: int
    num_layers: int
    num_attention_heads: int
    params: list = field(default_factory=list)  # AdaptedParam (paddleport.peft.lora)
    # TEXT initialisation: the word-embedding rows the virtual tokens start from (None: RANDOM, or loaded to run)
    init_token_ids: tuple[int, ...] | None = None

    @property
    def trainable(self) -> list:
        return [param for param in self.params if param.trainable]

    @property
    def saved(self) -> dict:
        """Adapter-file key -> parameter, for the keys that are parameters of this model (p-tuning's
        ``prompt_embeddings`` is the encoder's output while training, a parameter once loaded to run)."""
        return {param.saved_key: param for param in self.params if param.saved_key}

    @property
    def encoder_params(self) -> list:
        return [param for param in self.params if param.name.startswith(ENCODER)]

    def by_paddle_name(self) -> dict[str, ParamSpec]:
        return {param.paddle_name: param.spec() for param in self.params}

    def saved_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every key of this model's adapter file and its Hugging Face-layout shape."""
        shapes = {key: param.hf_shape for key, param in self.saved.items()}
        shapes[PROMPT_EMBEDDINGS] = (self.settings.num_virtual_tokens, self.token_dim)
        return shapes

    def initialised_from_model(self) -> set[str]:
        """Canonical names of the parameters the adapted model initialises from its own weights (TEXT: the
        table, rows of the word embeddings): the shared seeded initialisation leaves them alone."""
        return {ENCODER + "embedding.weight"} if self.init_token_ids is not None else set()

    def for_inference(self) -> "PromptPlan":
        """The plan of the same adapter loaded to run (peft's inference_mode)."""
        return plan_from(self, replace(self.settings, inference=True))

    def to_adapter_config(self, base_model: str | None) -> dict:
        """``adapter_config.json`` as peft 0.21.2 writes it for this adapter."""
        settings = self.settings
        config = {"auto_mapping": None, "base_model_name_or_path": base_model, "inference_mode": True,
                  "modules_to_save": list(CLASSIFIER_NAMES), "num_attention_heads": self.num_attention_heads,
                  "num_layers": self.num_layers, "num_transformer_submodules": 1,
                  "num_virtual_tokens": settings.num_virtual_tokens, "peft_type": settings.peft_type,
                  "revision": None, "task_type": "SEQ_CLS", "token_dim": self.token_dim}
        if settings.method == "prompt":
            config.update(prompt_tuning_init=settings.prompt_tuning_init,
                          prompt_tuning_init_text=settings.prompt_tuning_init_text, tokenizer_kwargs=None,
                          tokenizer_name_or_path=settings.tokenizer_name_or_path)
        else:
            config.update(encoder_dropout=settings.encoder_dropout,
                          encoder_hidden_size=settings.hidden_size(self.token_dim),
                          encoder_num_layers=settings.encoder_num_layers,
                          encoder_reparameterization_type=settings.encoder_reparameterization_type)
        return config


def leave_out_zero_only_inputs(inputs: dict, is_all_zero) -> dict:
    """``inputs`` (name -> tensor) without the :data:`ZERO_ONLY_INPUTS`; ``is_all_zero(tensor)`` says whether one
    may be left out, a non-zero one is a PaddleportError."""
    for name in ZERO_ONLY_INPUTS:
        if inputs.get(name) is not None and not is_all_zero(inputs[name]):
            raise PaddleportError(name, "must be all zeros (or left out) under prompt tuning / p-tuning: peft does "
                                        "not extend them for the virtual tokens; the model takes 0 everywhere")
    return {name: value for name, value in inputs.items() if name not in ZERO_ONLY_INPUTS}


def canonical_prompt_name(name: str) -> str | None:
    """A peft / Paddle-wrapper parameter name or adapter-file key -> its canonical name; None for the frozen
    original of a module_to_save."""
    if ".original_module." in name:
        return None
    if name == PROMPT_EMBEDDINGS:
        return ENCODER + "embedding.weight"
    name = name.removeprefix(SAVED_PREFIX).replace(".modules_to_save.default.", ".")
    return name.replace(PADDLE_ENCODER, ENCODER) if name.startswith(PADDLE_ENCODER) else name


def is_prompt_parameter(name: str) -> bool:
    return name.startswith(ENCODER)


def _linear(name: str, out_features: int, in_features: int) -> list[tuple[str, Transform, tuple[int, ...]]]:
    return [(f"{name}.weight", LINEAR_WEIGHT, (out_features, in_features)), (f"{name}.bias", LINEAR_BIAS,
                                                                               (out_features,))]


def encoder_parameters(settings: PromptSettings, token_dim: int) -> list[tuple[str, Transform, tuple[int, ...]]]:
    """(name under the encoder, transform, torch shape) of every prompt-encoder parameter, in peft's order."""
    parameters = [("embedding.weight", EMBEDDING, (settings.num_virtual_tokens, token_dim))]
    if not settings.has_encoder:
        return parameters
    hidden = settings.hidden_size(token_dim)
    if settings.encoder_reparameterization_type == "MLP":
        return parameters + _linear("mlp_head.0", hidden, token_dim) + _linear("mlp_head.2", hidden, hidden) + \
            _linear("mlp_head.4", token_dim, hidden)
    for layer in range(settings.encoder_num_layers):
        inputs = token_dim if layer == 0 else 2 * hidden
        for suffix in ("", "_reverse"):
            parameters += [(f"lstm_head.weight_ih_l{layer}{suffix}", LSTM_WEIGHT, (4 * hidden, inputs)),
                           (f"lstm_head.weight_hh_l{layer}{suffix}", LSTM_WEIGHT, (4 * hidden, hidden)),
                           (f"lstm_head.bias_ih_l{layer}{suffix}", LSTM_BIAS, (4 * hidden,)),
                           (f"lstm_head.bias_hh_l{layer}{suffix}", LSTM_BIAS, (4 * hidden,))]
    return parameters + _linear("mlp_head.0", 2 * hidden, 2 * hidden) + _linear("mlp_head.2", token_dim, 2 * hidden)


def plan_prompt(config: dict, class_name: str, settings: PromptSettings) -> PromptPlan:
    """The adapted model's parameters (no model is built). An architecture that cannot take virtual tokens is a
    PaddleportError naming why."""
    from paddleport.convert import parameter_specs
    from paddleport.core.configuration import AutoConfig
    from paddleport.registry import architecture_of_class

    settings.check()
    entry = architecture_of_class(class_name, "config.json")
    if entry.no_prompt_learning:
        raise PaddleportError("--peft", f"{settings.method} cannot adapt {entry.model_type}: "
                                        f"{entry.no_prompt_learning}")
    specs = parameter_specs(config, class_name)
    words = next((spec for spec in specs if spec.hf_name == entry.base_prefix + WORD_EMBEDDINGS), None)
    if words is None:
        raise PaddleportError("--peft", f"{settings.method} cannot adapt {entry.model_type}: it has no "
                                        f"{WORD_EMBEDDINGS} for the virtual tokens to join")
    model_config = AutoConfig.from_dict(config)
    plan = PromptPlan(settings, entry.model_type, int(words.hf_shape[1]), int(model_config.num_hidden_layers),
                      int(model_config.num_attention_heads))
    if settings.prompt_tuning_init == "TEXT" and not settings.inference:
        plan.init_token_ids = text_init_token_ids(settings, int(words.hf_shape[0]))
    return _fill(plan, specs)


def text_init_token_ids(settings: PromptSettings, vocab_size: int) -> tuple[int, ...]:
    """The token ids whose word embeddings start the virtual tokens under TEXT initialisation, as peft 0.21.2's
    ``PromptEmbedding.__init__`` takes them: ``tokenizer(text)["input_ids"]`` (special tokens included: [CLS] …
    [SEP] for BERT), repeated and cut to ``num_virtual_tokens``. The tokenizer is run-glue's (the fast tokenizer
    of the directory's tokenizer.json, as AutoTokenizer loads it; nothing is downloaded)."""
    from paddleport.glue_runners.features import find_tokenizer_dir, load_tokenizer

    tokenizer = load_tokenizer(find_tokenizer_dir(Path(settings.tokenizer_name_or_path))).tokenizer
    ids = [int(token) for token in tokenizer(settings.prompt_tuning_init_text)["input_ids"]]
    beyond = [token for token in ids if not 0 <= token < vocab_size]
    if not ids:
        raise PaddleportError("--prompt-tuning-init-text", "gives no tokens")
    if beyond:
        raise PaddleportError("--prompt-tuning-init-text", f"gives token ids {beyond[:3]} outside the model's "
                                                           f"{vocab_size} word embeddings (another model's tokenizer?)")
    total = settings.num_virtual_tokens
    return tuple((ids * math.ceil(total / len(ids)))[:total])


def plan_from(plan: PromptPlan, settings: PromptSettings) -> PromptPlan:
    """``plan``'s model with other prompt settings (e.g. loaded to run instead of trained)."""
    base = [ParamSpec(param.name, param.paddle_name.removeprefix(SAVED_PREFIX), param.transform, param.hf_shape,
                      "base") for param in plan.params if not is_prompt_parameter(param.name)]
    init_token_ids = plan.init_token_ids if not settings.inference else None
    return _fill(replace(plan, settings=settings.check(), params=[], init_token_ids=init_token_ids), base)


def _fill(plan: PromptPlan, specs: list) -> PromptPlan:
    from paddleport.peft.lora import AdaptedParam, saved_by_peft

    for spec in specs:
        trainable = saved_by_peft(spec.hf_name, CLASSIFIER_NAMES)
        plan.params.append(AdaptedParam(spec.hf_name, SAVED_PREFIX + spec.paddle_name, spec.transform,
                                        tuple(spec.hf_shape), trainable,
                                        SAVED_PREFIX + spec.hf_name if trainable else None))
    for name, transform, shape in encoder_parameters(plan.settings, plan.token_dim):
        # prompt tuning's table (or any loaded adapter's) is what the adapter file saves as prompt_embeddings
        saved = PROMPT_EMBEDDINGS if name == "embedding.weight" and not plan.settings.has_encoder else None
        plan.params.append(AdaptedParam(ENCODER + name, PADDLE_ENCODER + name, transform, shape, True, saved))
    return plan


def prompt_initial_values(shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, np.ndarray]:
    """Initial values of the prompt-encoder parameters among ``shapes`` (canonical name -> Hugging Face shape), as
    torch initialises them (peft's RANDOM prompt: ``nn.Embedding``'s N(0, 1); Linear: kaiming-uniform, weight and
    bias U(±1/√fan_in); LSTM: U(±1/√hidden)), drawn from seeded numpy (one generator per name) so that both
    frameworks start alike."""
    values = {}
    for name, shape in shapes.items():
        if not is_prompt_parameter(name):
            continue
        rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
        if name.endswith("embedding.weight"):
            values[name] = rng.standard_normal(shape).astype(np.float32)
            continue
        if ".lstm_head." in name:
            fan_in = shape[0] // 4  # the hidden size
        else:  # a Linear's weight [out, in], or its bias, which takes the weight's fan-in
            fan_in = shapes[name.removesuffix(".bias") + ".weight"][1] if name.endswith(".bias") else shape[1]
        bound = 1.0 / math.sqrt(fan_in)
        values[name] = rng.uniform(-bound, bound, size=shape).astype(np.float32)
    return values


# ------------------------------------------------------------------------------------------- adapter files


def read_prompt_settings(config: dict, path: Path) -> PromptSettings:
    """The settings of a prompt-tuning / p-tuning ``adapter_config.json`` (loaded to run)."""
    method = next(name for name, peft_type in PROMPT_METHODS.items() if peft_type == config.get("peft_type"))
    if config.get("task_type") != "SEQ_CLS":
        raise PaddleportError(path, f"task_type {config.get('task_type')!r} is not supported (paddleport runs "
                                    "prompt-learning adapters of sequence classifiers: SEQ_CLS)")
    if config.get("num_transformer_submodules", 1) not in (1, None):
        raise PaddleportError(path, "num_transformer_submodules must be 1 (an encoder model)")
    try:
        return PromptSettings(
            method=method, num_virtual_tokens=int(config.get("num_virtual_tokens") or 0),
            encoder_reparameterization_type=str(config.get("encoder_reparameterization_type", "MLP")),
            encoder_hidden_size=config.get("encoder_hidden_size"),
            encoder_num_layers=int(config.get("encoder_num_layers", LSTM_LAYERS)),
            encoder_dropout=float(config.get("encoder_dropout", 0.0)), inference=True).check()
    except (TypeError, ValueError) as error:
        raise PaddleportError(path, f"has a malformed prompt-learning setting ({error})") from None


def transform_of_prompt_key(key: str) -> Transform | None:
    """The transform of a prompt-learning adapter-file key: ``prompt_embeddings`` is a table (same layout in
    both frameworks); a module_to_save takes its architecture table's transform."""
    from paddleport.peft.lora import transform_of_adapter_key

    if key == PROMPT_EMBEDDINGS:
        return EMBEDDING
    return transform_of_adapter_key(key.removeprefix(SAVED_PREFIX))


def write_adapter_config(plan: PromptPlan, directory: Path, base_model: str | None) -> None:
    from paddleport.peft.lora import ADAPTER_CONFIG

    text = json.dumps(plan.to_adapter_config(base_model), indent=2, sort_keys=True) + "\n"
    (Path(directory) / ADAPTER_CONFIG).write_text(text)


# p-tuning's encoder (MLP/LSTM) is not in peft's adapter file, which holds only its output: run-glue keeps it beside
# the adapter (canonical names, Hugging Face layout in both frameworks) so that a checkpoint resumes exactly.
ENCODER_STATE = "prompt_encoder.safetensors"


def read_adapter_values(plan: PromptPlan, directory: Path) -> dict[str, np.ndarray]:
    """Canonical name -> Hugging Face-layout value of everything an adapter directory (either layout) sets in a
    model adapted by ``plan``, after checking that it fits this base model."""
    from paddleport.core.tensor_io import PADDLE_FORMAT_TAG, read_safetensors_checked
    from paddleport.peft.lora import ADAPTER_WEIGHTS, check_adapter_fits

    path = Path(directory) / ADAPTER_WEIGHTS
    if not path.is_file():
        raise PaddleportError(directory, f"has no {ADAPTER_WEIGHTS}")
    arrays, metadata = read_safetensors_checked(path)
    layout = "paddle" if metadata.get("format") == PADDLE_FORMAT_TAG else "hf"
    check_adapter_fits(plan.for_inference(), {key: value.shape for key, value in arrays.items()}, layout, path)
    by_name = {param.name: param for param in plan.params}
    values = {}
    for key, value in arrays.items():
        name = canonical_prompt_name(key)
        if name is None or (key == PROMPT_EMBEDDINGS and plan.settings.has_encoder):
            continue  # p-tuning while training: the table feeds the encoder, whose output the file holds
        values[name] = value if layout == "hf" else by_name[name].transform.to_hf(value)
    if plan.settings.has_encoder:
        values.update(_read_encoder_state(plan, Path(directory) / ENCODER_STATE))
    return values


def _read_encoder_state(plan: PromptPlan, path: Path) -> dict[str, np.ndarray]:
    from paddleport.core.tensor_io import read_safetensors_checked

    if not path.is_file():
        raise PaddleportError(path.parent, f"has no {ENCODER_STATE} (the p-tuning encoder needed to continue "
                                           "training; peft's adapter file holds only its output)")
    arrays, _ = read_safetensors_checked(path)
    expected = {param.name: param.hf_shape for param in plan.encoder_params}
    found = {name: tuple(value.shape) for name, value in arrays.items()}
    if found != expected:
        different = sorted(set(found.items()) ^ set(expected.items()))
        raise PaddleportError(path, f"does not hold this p-tuning encoder: {', '.join(map(str, different[:3]))}")
    return arrays


def write_encoder_state(values: dict[str, np.ndarray], directory: Path) -> None:
    """The p-tuning encoder's parameters (canonical names, Hugging Face layout) beside the adapter."""
    from safetensors.numpy import save_file

    save_file({name: np.ascontiguousarray(value) for name, value in values.items()},
              str(Path(directory) / ENCODER_STATE), metadata={"format": "pt"})
