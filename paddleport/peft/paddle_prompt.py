"""paddleport's prompt tuning and p-tuning for its Paddle models: what ``peft``'s prompt encoders and
``PeftModelForSequenceClassification.forward`` do, as Paddle layers with peft's sub-layer and parameter names
(``prompt_encoder.default.embedding``, ``….mlp_head.0``, ``….lstm_head``), around the model as ``base_model``.
See :mod:`paddleport.peft.prompt` for the method itself.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import paddle
from paddle import nn

from paddleport.core.tensor_io import PADDLE_FORMAT_TAG
from paddleport.errors import PaddleportError
from paddleport.models.layers import Linear
from paddleport.peft.lora import ADAPTER_NAME, ADAPTER_WEIGHTS
from paddleport.peft.prompt import (PROMPT_EMBEDDINGS, PromptPlan, PromptSettings, leave_out_zero_only_inputs,
                                    read_adapter_values, write_adapter_config, write_encoder_state)


class PromptEncoder(nn.Layer):
    """peft's ``PromptEmbedding`` (prompt tuning, or any adapter loaded to run) and ``PromptEncoder`` (p-tuning):
    an embedding table of the virtual tokens, for p-tuning fed through an MLP or a bidirectional LSTM + MLP."""

    def __init__(self, settings: PromptSettings, token_dim: int):
        super().__init__()
        self.encoder_type = settings.encoder_reparameterization_type if settings.has_encoder else None
        self.embedding = nn.Embedding(settings.num_virtual_tokens, token_dim)
        hidden = settings.hidden_size(token_dim)
        if self.encoder_type == "LSTM":
            # paddle.nn.LSTM: torch's parameter names, shapes and gate order (i, f, g, o)
            self.lstm_head = nn.LSTM(token_dim, hidden, num_layers=settings.encoder_num_layers,
                                     direction="bidirect", time_major=False)
            self.mlp_head = nn.Sequential(Linear(2 * hidden, 2 * hidden), nn.ReLU(), Linear(2 * hidden, token_dim))
        elif self.encoder_type == "MLP":
            self.mlp_head = nn.Sequential(Linear(token_dim, hidden), nn.ReLU(), Linear(hidden, hidden), nn.ReLU(),
                                          Linear(hidden, token_dim))

    def forward(self, indices):
        embeds = self.embedding(indices)
        if self.encoder_type == "LSTM":
            return self.mlp_head(self.lstm_head(embeds)[0])
        if self.encoder_type == "MLP":
            return self.mlp_head(embeds)
        return embeds


class PromptLearningModel(nn.Layer):
    """A sequence classifier with virtual tokens, computed as peft's ``PeftModelForSequenceClassification``:
    prompts prepended to the word embeddings, the attention mask extended by ones, the token types by zeros,
    ``position_ids`` dropped (peft ignores them), all-zero task types left out (the model takes 0 everywhere, as
    transformers' ERNIE does under peft; see ``prompt.ZERO_ONLY_INPUTS``), the model run on ``inputs_embeds``."""

    def __init__(self, model: nn.Layer, plan: PromptPlan):
        super().__init__()
        self.base_model = model
        self.prompt_encoder = nn.LayerDict({ADAPTER_NAME: PromptEncoder(plan.settings, plan.token_dim)})
        self.num_virtual_tokens = plan.settings.num_virtual_tokens
        self.input_names = model.input_names
        self.config = model.config

    def word_embeddings(self):
        return self.base_model.base_model.embeddings.word_embeddings

    def start_from_words(self, token_ids: tuple[int, ...]) -> None:
        """peft's TEXT initialisation: the table becomes the word embeddings of ``token_ids`` (float32)."""
        rows = paddle.to_tensor(np.asarray(token_ids, dtype=np.int64))
        with paddle.no_grad():
            words = paddle.gather(self.word_embeddings().weight, rows).astype("float32")
            self.prompt_encoder[ADAPTER_NAME].embedding.weight.set_value(words)

    def prompt_embeddings(self):
        """The virtual tokens' vectors [1, n, token_dim] (what peft's adapter file saves, batch of one)."""
        indices = paddle.arange(self.num_virtual_tokens, dtype="int64").unsqueeze(0)
        return self.prompt_encoder[ADAPTER_NAME](indices)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None, labels=None,
                output_hidden_states=False, output_attentions=False, task_type_ids=None):
        leave_out_zero_only_inputs({"task_type_ids": task_type_ids}, lambda ids: not bool(ids.any()))
        batch, virtual = input_ids.shape[0], self.num_virtual_tokens
        inputs = dict(labels=labels, output_hidden_states=output_hidden_states, output_attentions=output_attentions)
        if attention_mask is not None:
            prefix = paddle.ones([batch, virtual], dtype=attention_mask.dtype)
            inputs["attention_mask"] = paddle.concat([prefix, attention_mask], axis=1)
        if token_type_ids is not None:
            prefix = paddle.zeros([batch, virtual], dtype="int64")
            inputs["token_type_ids"] = paddle.concat([prefix, token_type_ids.astype("int64")], axis=1)
        words = self.word_embeddings()(input_ids)  # the table itself, as peft (it is frozen)
        prompts = self.prompt_embeddings().astype(words.dtype).tile([batch, 1, 1])
        inputs["inputs_embeds"] = paddle.concat([prompts, words], axis=1)
        return self.base_model(**inputs)


def apply(model: nn.Layer, plan: PromptPlan) -> PromptLearningModel:
    """``model`` wrapped with the plan's virtual tokens; only the planned parameters train (as peft marks them)."""
    adapted = PromptLearningModel(model, plan)
    if plan.init_token_ids is not None:
        adapted.start_from_words(plan.init_token_ids)
    trainable = {param.paddle_name for param in plan.trainable} if not plan.settings.inference else set()
    names = set()
    for name, param in adapted.named_parameters():
        param.stop_gradient = name not in trainable
        names.add(name)
    planned = {param.paddle_name for param in plan.params}
    if names != planned:
        raise PaddleportError(None, f"the adapted model and its prompt plan disagree on "
                                    f"{', '.join(sorted(names ^ planned)[:4])}")
    return adapted


def inner_model(adapted: PromptLearningModel) -> nn.Layer:
    """The paddleport model inside (its sub-layers have the Hugging Face names)."""
    return adapted.base_model


def _values(adapted: PromptLearningModel, plan: PromptPlan) -> dict:
    state = adapted.state_dict()
    return {param.name: state[param.paddle_name] for param in plan.params}


def save_adapter(adapted: PromptLearningModel, plan: PromptPlan, directory: Path, base_model: str | None) -> Path:
    """peft's adapter directory with Paddle-layout tensors (``format: paddle``): ``prompt_embeddings`` (the
    encoder's output), the modules_to_save under peft's keys; p-tuning's encoder beside it."""
    from safetensors.numpy import save_file

    from paddleport.models.modeling_utils import tensor_to_numpy

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    values = _values(adapted, plan)
    with paddle.no_grad():
        arrays = {PROMPT_EMBEDDINGS: tensor_to_numpy(adapted.prompt_embeddings()[0]).astype(np.float32)}
    arrays.update({key: tensor_to_numpy(values[param.name]) for key, param in plan.saved.items()
                   if key != PROMPT_EMBEDDINGS})
    save_file({key: np.ascontiguousarray(value) for key, value in arrays.items()}, str(directory / ADAPTER_WEIGHTS),
              metadata={"format": PADDLE_FORMAT_TAG})
    write_adapter_config(plan, directory, base_model)
    if plan.settings.has_encoder:
        write_encoder_state({param.name: param.transform.to_hf(tensor_to_numpy(values[param.name]))
                             for param in plan.encoder_params}, directory)
    return directory


def load_adapter_weights(adapted: PromptLearningModel, plan: PromptPlan, directory: Path) -> None:
    """An adapter directory (either layout) into a model adapted by ``plan``."""
    from paddleport.models.modeling_utils import numpy_to_paddle

    values = _values(adapted, plan)
    by_name = {param.name: param for param in plan.params}
    for name, value in read_adapter_values(plan, directory).items():
        target = values[name]
        value = by_name[name].transform.to_paddle(value)
        target.set_value(numpy_to_paddle(np.ascontiguousarray(value)).astype(target.dtype))
