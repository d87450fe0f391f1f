"""DistilBERT in Paddle, mirroring transformers' ``modeling_distilbert.py``: same classes, sub-layer names and forward.

No token types and no pooler; post-norm blocks (``sa_layer_norm``, ``output_layer_norm``) with eps 1e-12 as in
transformers; ``sinusoidal_pos_embds`` only changes how fresh position embeddings are initialised (the weights are
a trained parameter in transformers too). Parameter names equal the Hugging Face ones.
"""

from __future__ import annotations

import math

import numpy as np
import paddle
import paddle.nn.functional as F
from paddle import nn

from paddleport.core.configuration import DistilBertConfig
from paddleport.models.layers import Dropout, LayerNorm, Linear, attention_probs
from paddleport.models.modeling_utils import (
    ACT2FN,
    BaseModelOutput,
    MaskedLMOutput,
    MultipleChoiceModelOutput,
    PretrainedModel,
    QuestionAnsweringModelOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
    checkpointed,
    flatten_choices,
    layer_attention_mask,
    masked_lm_loss,
    output_decoder,
    question_answering_loss,
    sequence_classification_loss,
    token_classification_loss,
)

LAYER_NORM_EPS = 1e-12  # transformers hard-codes it; DistilBERT's config has no layer_norm_eps


def create_sinusoidal_embeddings(n_pos: int, dim: int) -> np.ndarray:
    position_enc = np.array([[pos / np.power(10000, 2 * (j // 2) / dim) for j in range(dim)] for pos in range(n_pos)])
    out = np.empty((n_pos, dim), dtype=np.float32)
    out[:, 0::2] = np.sin(position_enc[:, 0::2])
    out[:, 1::2] = np.cos(position_enc[:, 1::2])
    return out


class Embeddings(nn.Layer):
    def __init__(self, config: DistilBertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.dim)
        self.word_embeddings.padding_row = config.pad_token_id  # zeroed at initialisation, as in torch
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.dim)
        self.LayerNorm = LayerNorm(config.dim, epsilon=LAYER_NORM_EPS)
        self.dropout = Dropout(config.dropout)

    def forward(self, input_ids=None, position_ids=None, inputs_embeds=None):
        if inputs_embeds is None:
            embedded = self.word_embeddings(input_ids)
            # torch's padding_idx: the pad row gets no gradient
            embedded = paddle.where((input_ids == self.word_embeddings.padding_row).unsqueeze(-1), embedded.detach(),
                                    embedded)
        else:  # as transformers: word vectors given instead of ids (prompt-tuning's virtual tokens)
            embedded = inputs_embeds
        if position_ids is None:
            position_ids = paddle.arange(embedded.shape[1], dtype="int64").unsqueeze(0)
        return self.dropout(self.LayerNorm(embedded + self.position_embeddings(position_ids)))


class DistilBertSelfAttention(nn.Layer):
    def __init__(self, config: DistilBertConfig):
        super().__init__()
        self.n_heads = config.n_heads
        self.attention_head_size = config.dim // config.n_heads
        self.scaling = 1.0 / math.sqrt(self.attention_head_size)
        self.q_lin = Linear(config.dim, config.dim)
        self.k_lin = Linear(config.dim, config.dim)
        self.v_lin = Linear(config.dim, config.dim)
        self.out_lin = Linear(config.dim, config.dim)
        self.dropout = Dropout(config.attention_dropout)

    def split_heads(self, x):
        """[batch, seq, dim] -> [batch, heads, seq, head_size]"""
        return x.reshape([0, 0, self.n_heads, self.attention_head_size]).transpose([0, 2, 1, 3])

    def forward(self, hidden_states, attention_mask=None):
        query = self.split_heads(self.q_lin(hidden_states))
        key = self.split_heads(self.k_lin(hidden_states))
        value = self.split_heads(self.v_lin(hidden_states))
        scores = paddle.matmul(query, key, transpose_y=True)
        probs = self.dropout(attention_probs(scores, attention_mask, self.scaling))
        context = paddle.matmul(probs, value).transpose([0, 2, 1, 3]).reshape([0, 0, -1])
        return self.out_lin(context), probs


class FFN(nn.Layer):
    def __init__(self, config: DistilBertConfig):
        super().__init__()
        self.dropout = Dropout(config.dropout)
        self.lin1 = Linear(config.dim, config.hidden_dim)
        self.lin2 = Linear(config.hidden_dim, config.dim)
        self.activation = ACT2FN[config.activation]

    def forward(self, x):
        return self.dropout(self.lin2(self.activation(self.lin1(x))))


class TransformerBlock(nn.Layer):
    def __init__(self, config: DistilBertConfig):
        super().__init__()
        self.attention = DistilBertSelfAttention(config)
        self.sa_layer_norm = LayerNorm(config.dim, epsilon=LAYER_NORM_EPS)
        self.ffn = FFN(config)
        self.output_layer_norm = LayerNorm(config.dim, epsilon=LAYER_NORM_EPS)

    def forward(self, hidden_states, attention_mask=None):
        attention_output, probs = self.attention(hidden_states, attention_mask)
        attention_output = self.sa_layer_norm(attention_output + hidden_states)
        return self.output_layer_norm(self.ffn(attention_output) + attention_output), probs


class Transformer(nn.Layer):
    def __init__(self, config: DistilBertConfig):
        super().__init__()
        self.layer = nn.LayerList([TransformerBlock(config) for _ in range(config.n_layers)])
        self.gradient_checkpointing = False

    def forward(self, hidden_states, attention_mask=None, output_hidden_states=False, output_attentions=False):
        all_hidden_states = (hidden_states,) if output_hidden_states else None
        all_attentions = () if output_attentions else None
        for layer in self.layer:
            if self.gradient_checkpointing and self.training:
                hidden_states, probs = checkpointed(layer, hidden_states, attention_mask)
            else:
                hidden_states, probs = layer(hidden_states, attention_mask)
            if output_hidden_states:
                all_hidden_states += (hidden_states,)
            if output_attentions:
                all_attentions += (probs,)
        return hidden_states, all_hidden_states, all_attentions


class DistilBertPreTrainedModel(PretrainedModel):
    config_class = DistilBertConfig
    base_model_prefix = "distilbert"

    def init_weights(self) -> None:
        super().init_weights()
        if self.config.sinusoidal_pos_embds:
            positions = self.base_model.embeddings.position_embeddings
            positions.weight.set_value(paddle.to_tensor(
                create_sinusoidal_embeddings(self.config.max_position_embeddings, self.config.dim)))


class DistilBertModel(DistilBertPreTrainedModel):
    def __init__(self, config: DistilBertConfig):
        super().__init__(config)
        self.embeddings = Embeddings(config)
        self.transformer = Transformer(config)

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, output_hidden_states=False,
                output_attentions=False, inputs_embeds=None):
        embeddings = self.embeddings(input_ids, position_ids=position_ids, inputs_embeds=inputs_embeds)
        mask = layer_attention_mask(attention_mask, embeddings.dtype, self.config.n_heads)
        hidden_state, hidden_states, attentions = self.transformer(
            embeddings, mask, output_hidden_states=output_hidden_states, output_attentions=output_attentions)
        return BaseModelOutput(last_hidden_state=hidden_state, hidden_states=hidden_states, attentions=attentions)


class DistilBertForMaskedLM(DistilBertPreTrainedModel):
    initialisable_prefixes = ("vocab_transform.", "vocab_layer_norm.", "vocab_projector.")

    def __init__(self, config: DistilBertConfig):
        super().__init__(config)
        self.activation = ACT2FN[config.activation]
        self.distilbert = DistilBertModel(config)
        self.vocab_transform = Linear(config.dim, config.dim)
        self.vocab_layer_norm = LayerNorm(config.dim, epsilon=LAYER_NORM_EPS)
        self.vocab_projector = output_decoder(config, self.distilbert.embeddings.word_embeddings)

    def forward(self, input_ids, attention_mask=None, position_ids=None, labels=None, output_hidden_states=False,
                output_attentions=False):
        outputs = self.distilbert(input_ids, attention_mask=attention_mask, position_ids=position_ids,
                                  output_hidden_states=output_hidden_states, output_attentions=output_attentions)
        prediction_logits = self.activation(self.vocab_transform(outputs.last_hidden_state))
        prediction_logits = self.vocab_projector(self.vocab_layer_norm(prediction_logits))
        loss = None if labels is None else masked_lm_loss(prediction_logits, labels)
        return MaskedLMOutput(loss=loss, logits=prediction_logits, hidden_states=outputs.hidden_states,
                              attentions=outputs.attentions)


class DistilBertForSequenceClassification(DistilBertPreTrainedModel):
    initialisable_prefixes = ("pre_classifier.", "classifier.")

    def __init__(self, config: DistilBertConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.distilbert = DistilBertModel(config)
        self.pre_classifier = Linear(config.dim, config.dim)
        self.classifier = Linear(config.dim, config.num_labels)
        self.dropout = Dropout(config.seq_classif_dropout)

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, labels=None, output_hidden_states=False,
                output_attentions=False, inputs_embeds=None):
        outputs = self.distilbert(input_ids, attention_mask=attention_mask, position_ids=position_ids,
                                  output_hidden_states=output_hidden_states, output_attentions=output_attentions,
                                  inputs_embeds=inputs_embeds)
        pooled_output = F.relu(self.pre_classifier(outputs.last_hidden_state[:, 0]))
        logits = self.classifier(self.dropout(pooled_output))
        loss = None if labels is None else sequence_classification_loss(self.config, logits, labels)
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states,
                                        attentions=outputs.attentions)


class DistilBertForQuestionAnswering(DistilBertPreTrainedModel):
    initialisable_prefixes = ("qa_outputs.",)

    def __init__(self, config: DistilBertConfig):
        super().__init__(config)
        self.distilbert = DistilBertModel(config)
        self.qa_outputs = Linear(config.dim, config.num_labels)
        self.dropout = Dropout(config.qa_dropout)

    def forward(self, input_ids, attention_mask=None, position_ids=None, start_positions=None, end_positions=None,
                output_hidden_states=False, output_attentions=False):
        outputs = self.distilbert(input_ids, attention_mask=attention_mask, position_ids=position_ids,
                                  output_hidden_states=output_hidden_states, output_attentions=output_attentions)
        logits = self.qa_outputs(self.dropout(outputs.last_hidden_state))
        start_logits, end_logits = (part.squeeze(-1) for part in logits.split(2, axis=-1))
        loss = None
        if start_positions is not None and end_positions is not None:
            loss = question_answering_loss(start_logits, end_logits, start_positions, end_positions)
        return QuestionAnsweringModelOutput(loss=loss, start_logits=start_logits, end_logits=end_logits,
                                            hidden_states=outputs.hidden_states, attentions=outputs.attentions)


class DistilBertForTokenClassification(DistilBertPreTrainedModel):
    initialisable_prefixes = ("classifier.",)

    def __init__(self, config: DistilBertConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.distilbert = DistilBertModel(config)
        self.dropout = Dropout(config.dropout)
        self.classifier = Linear(config.dim, config.num_labels)

    def forward(self, input_ids, attention_mask=None, position_ids=None, labels=None, output_hidden_states=False,
                output_attentions=False):
        outputs = self.distilbert(input_ids, attention_mask=attention_mask, position_ids=position_ids,
                                  output_hidden_states=output_hidden_states, output_attentions=output_attentions)
        logits = self.classifier(self.dropout(outputs.last_hidden_state))
        loss = None if labels is None else token_classification_loss(logits, labels)
        return TokenClassifierOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states,
                                     attentions=outputs.attentions)


class DistilBertForMultipleChoice(DistilBertPreTrainedModel):
    initialisable_prefixes = ("pre_classifier.", "classifier.")

    def __init__(self, config: DistilBertConfig):
        super().__init__(config)
        self.distilbert = DistilBertModel(config)
        self.pre_classifier = Linear(config.dim, config.dim)
        self.classifier = Linear(config.dim, 1)
        self.dropout = Dropout(config.seq_classif_dropout)

    def forward(self, input_ids, attention_mask=None, position_ids=None, labels=None, output_hidden_states=False,
                output_attentions=False):
        """Inputs are [batch, choices, seq]; logits [batch, choices]."""
        num_choices = input_ids.shape[1]
        outputs = self.distilbert(flatten_choices(input_ids), attention_mask=flatten_choices(attention_mask),
                                  position_ids=flatten_choices(position_ids),
                                  output_hidden_states=output_hidden_states, output_attentions=output_attentions)
        pooled_output = F.relu(self.pre_classifier(outputs.last_hidden_state[:, 0]))
        logits = self.classifier(self.dropout(pooled_output)).reshape([-1, num_choices])
        loss = None if labels is None else F.cross_entropy(logits, labels.reshape([-1]))
        return MultipleChoiceModelOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states,
                                         attentions=outputs.attentions)
