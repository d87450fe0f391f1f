"""ALBERT in Paddle, mirroring transformers' ``modeling_albert.py``: same classes, sub-layer names and forward.

Factorised embeddings (width ``embedding_size``, mapped to ``hidden_size`` by ``embedding_hidden_mapping_in``)
and shared layers: ``num_hidden_layers`` applications of ``num_hidden_groups`` groups, each of ``inner_group_num``
layers; a group's weights are one set of Paddle parameters, used by each of its applications.
"""

from __future__ import annotations

import math

import paddle
import paddle.nn.functional as F
from paddle import nn

from paddleport.core.configuration import AlbertConfig
from paddleport.models.layers import (Dropout, LayerNorm, Linear, attention_probs, dense_gelu,
                                      dense_residual_layer_norm, gelu)
from paddleport.models.modeling_bert import BertEmbeddings
from paddleport.models.modeling_utils import (
    ACT2FN,
    BaseModelOutputWithPooling,
    MaskedLMOutput,
    MultipleChoiceModelOutput,
    PretrainedModel,
    QuestionAnsweringModelOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
    UntiedDecoder,
    checkpointed,
    flatten_choices,
    layer_attention_mask,
    masked_lm_loss,
    question_answering_loss,
    sequence_classification_loss,
    token_classification_loss,
)


class AlbertEmbeddings(BertEmbeddings):
    """BERT's embeddings at width ``embedding_size`` (their LayerNorm too)."""

    def __init__(self, config: AlbertConfig):
        super().__init__(config, embedding_size=config.embedding_size)
        self.LayerNorm = LayerNorm(config.embedding_size, epsilon=config.layer_norm_eps)


class AlbertAttention(nn.Layer):
    """Self-attention, output projection, dropout, residual and LayerNorm in one module, as transformers has it."""

    def __init__(self, config: AlbertConfig):
        super().__init__()
        self.num_attention_heads = config.num_attention_heads
        self.attention_head_size = config.hidden_size // config.num_attention_heads
        self.scaling = 1.0 / math.sqrt(self.attention_head_size)
        self.attention_dropout = Dropout(config.attention_probs_dropout_prob)
        self.output_dropout = Dropout(config.hidden_dropout_prob)
        self.query = Linear(config.hidden_size, config.hidden_size)
        self.key = Linear(config.hidden_size, config.hidden_size)
        self.value = Linear(config.hidden_size, config.hidden_size)
        self.dense = Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = LayerNorm(config.hidden_size, epsilon=config.layer_norm_eps)

    def split_heads(self, x):
        """[batch, seq, hidden] -> [batch, heads, seq, head_size]"""
        return x.reshape([0, 0, self.num_attention_heads, self.attention_head_size]).transpose([0, 2, 1, 3])

    def attend(self, hidden_states, attention_mask=None):
        """The context before the output projection, and the attention probabilities (bottleneck adapters reuse
        it: paddleport.peft.paddle_bottleneck)."""
        query = self.split_heads(self.query(hidden_states))
        key = self.split_heads(self.key(hidden_states))
        value = self.split_heads(self.value(hidden_states))
        scores = paddle.matmul(query, key, transpose_y=True)
        probs = self.attention_dropout(attention_probs(scores, attention_mask, self.scaling))
        return paddle.matmul(probs, value).transpose([0, 2, 1, 3]).reshape([0, 0, -1]), probs

    def forward(self, hidden_states, attention_mask=None):
        context, probs = self.attend(hidden_states, attention_mask)
        # LayerNorm(hidden_states + output_dropout(dense(context))), fused when nothing is trained
        return dense_residual_layer_norm(self.dense, self.output_dropout, self.LayerNorm, context, hidden_states), probs


class AlbertLayer(nn.Layer):
    def __init__(self, config: AlbertConfig):
        super().__init__()
        self.full_layer_layer_norm = LayerNorm(config.hidden_size, epsilon=config.layer_norm_eps)
        self.attention = AlbertAttention(config)
        self.ffn = Linear(config.hidden_size, config.intermediate_size)
        self.ffn_output = Linear(config.intermediate_size, config.hidden_size)
        self.activation = ACT2FN[config.hidden_act]
        # transformers defines this dropout and never applies it (ff_chunk has none); kept for the same layout
        self.dropout = Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states, attention_mask=None):
        attention_output, probs = self.attention(hidden_states, attention_mask)
        if self.activation is gelu:
            activated = dense_gelu(self.ffn, attention_output)
        else:
            activated = self.activation(self.ffn(attention_output))
        # full_layer_layer_norm(ffn_output(activated) + attention_output): no dropout here, as in transformers
        return dense_residual_layer_norm(self.ffn_output, None, self.full_layer_layer_norm, activated,
                                         attention_output), probs


class AlbertLayerGroup(nn.Layer):
    def __init__(self, config: AlbertConfig):
        super().__init__()
        self.albert_layers = nn.LayerList([AlbertLayer(config) for _ in range(config.inner_group_num)])

    def forward(self, hidden_states, attention_mask=None):
        """The group's output, and each inner layer's hidden state and attention probabilities."""
        states, all_probs = [], []
        for albert_layer in self.albert_layers:
            hidden_states, probs = albert_layer(hidden_states, attention_mask)
            states.append(hidden_states)
            all_probs.append(probs)
        return hidden_states, states, all_probs


class AlbertTransformer(nn.Layer):
    def __init__(self, config: AlbertConfig):
        super().__init__()
        self.config = config
        self.embedding_hidden_mapping_in = Linear(config.embedding_size, config.hidden_size)
        self.albert_layer_groups = nn.LayerList([AlbertLayerGroup(config) for _ in range(config.num_hidden_groups)])
        self.gradient_checkpointing = False

    def forward(self, hidden_states, attention_mask=None, output_hidden_states=False, output_attentions=False):
        """One hidden state per inner-layer application (after the mapped-in embeddings), as transformers records."""
        hidden_states = self.embedding_hidden_mapping_in(hidden_states)
        all_hidden_states = (hidden_states,) if output_hidden_states else None
        all_attentions = () if output_attentions else None
        for layer in range(self.config.num_hidden_layers):
            group = self.albert_layer_groups[self.config.group_of_layer(layer)]
            if self.gradient_checkpointing and self.training:
                hidden_states, states, probs = checkpointed(group, hidden_states, attention_mask)
            else:
                hidden_states, states, probs = group(hidden_states, attention_mask)
            if output_hidden_states:
                all_hidden_states += tuple(states)
            if output_attentions:
                all_attentions += tuple(probs)
        return hidden_states, all_hidden_states, all_attentions


class AlbertPreTrainedModel(PretrainedModel):
    config_class = AlbertConfig
    base_model_prefix = "albert"


class AlbertModel(AlbertPreTrainedModel):
    initialisable_prefixes = ("pooler.",)

    def __init__(self, config: AlbertConfig, add_pooling_layer: bool = True):
        super().__init__(config)
        self.embeddings = AlbertEmbeddings(config)
        self.encoder = AlbertTransformer(config)
        self.pooler = Linear(config.hidden_size, config.hidden_size) if add_pooling_layer else None
        self.pooler_activation = nn.Tanh() if add_pooling_layer else None

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                output_hidden_states=False, output_attentions=False, inputs_embeds=None):
        embedding_output = self.embeddings(input_ids, token_type_ids=token_type_ids, position_ids=position_ids,
                                           inputs_embeds=inputs_embeds)
        mask = layer_attention_mask(attention_mask, embedding_output.dtype, self.config.num_attention_heads)
        sequence_output, hidden_states, attentions = self.encoder(
            embedding_output, mask, output_hidden_states=output_hidden_states, output_attentions=output_attentions)
        pooled_output = None
        if self.pooler is not None:
            pooled_output = self.pooler_activation(self.pooler(sequence_output[:, 0]))
        return BaseModelOutputWithPooling(last_hidden_state=sequence_output, pooler_output=pooled_output,
                                          hidden_states=hidden_states, attentions=attentions)


class AlbertMLMHead(nn.Layer):
    """dense -> activation -> LayerNorm -> decoder; the decoder is the word-embedding matrix plus ``bias`` when tied."""

    def __init__(self, config: AlbertConfig, word_embeddings: nn.Embedding):
        super().__init__()
        self.LayerNorm = LayerNorm(config.embedding_size, epsilon=config.layer_norm_eps)
        self.bias = self.create_parameter([config.vocab_size], is_bias=True)
        self.dense = Linear(config.hidden_size, config.embedding_size)
        self.activation = ACT2FN[config.hidden_act]
        self._word_embeddings = [word_embeddings]  # a list, so the embedding is not registered twice
        self.decoder = None if config.tie_word_embeddings else UntiedDecoder(config, config.embedding_size)

    def forward(self, hidden_states):
        hidden_states = self.LayerNorm(self.activation(self.dense(hidden_states)))
        if self.decoder is not None:
            return self.decoder(hidden_states)
        return paddle.matmul(hidden_states, self._word_embeddings[0].weight, transpose_y=True) + self.bias


class AlbertForMaskedLM(AlbertPreTrainedModel):
    initialisable_prefixes = ("predictions.",)

    def __init__(self, config: AlbertConfig):
        super().__init__(config)
        self.albert = AlbertModel(config, add_pooling_layer=False)
        self.predictions = AlbertMLMHead(config, self.albert.embeddings.word_embeddings)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None, labels=None,
                output_hidden_states=False, output_attentions=False):
        outputs = self.albert(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                              position_ids=position_ids, output_hidden_states=output_hidden_states,
                              output_attentions=output_attentions)
        logits = self.predictions(outputs.last_hidden_state)
        loss = None if labels is None else masked_lm_loss(logits, labels)
        return MaskedLMOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states,
                              attentions=outputs.attentions)


class AlbertForSequenceClassification(AlbertPreTrainedModel):
    initialisable_prefixes = ("classifier.", "albert.pooler.")

    def __init__(self, config: AlbertConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.albert = AlbertModel(config)
        self.dropout = Dropout(config.classifier_dropout_prob)
        self.classifier = Linear(config.hidden_size, config.num_labels)

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, labels=None,
                output_hidden_states=False, output_attentions=False, inputs_embeds=None):
        outputs = self.albert(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                              position_ids=position_ids, output_hidden_states=output_hidden_states,
                              output_attentions=output_attentions, inputs_embeds=inputs_embeds)
        logits = self.classifier(self.dropout(outputs.pooler_output))
        loss = None if labels is None else sequence_classification_loss(self.config, logits, labels)
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states,
                                        attentions=outputs.attentions)


class AlbertForTokenClassification(AlbertPreTrainedModel):
    initialisable_prefixes = ("classifier.",)

    def __init__(self, config: AlbertConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.albert = AlbertModel(config, add_pooling_layer=False)
        dropout = config.classifier_dropout_prob
        self.dropout = Dropout(dropout if dropout is not None else config.hidden_dropout_prob)
        self.classifier = Linear(config.hidden_size, config.num_labels)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None, labels=None,
                output_hidden_states=False, output_attentions=False):
        outputs = self.albert(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                              position_ids=position_ids, output_hidden_states=output_hidden_states,
                              output_attentions=output_attentions)
        logits = self.classifier(self.dropout(outputs.last_hidden_state))
        loss = None if labels is None else token_classification_loss(logits, labels)
        return TokenClassifierOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states,
                                     attentions=outputs.attentions)


class AlbertForQuestionAnswering(AlbertPreTrainedModel):
    initialisable_prefixes = ("qa_outputs.",)

    def __init__(self, config: AlbertConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.albert = AlbertModel(config, add_pooling_layer=False)
        self.qa_outputs = Linear(config.hidden_size, config.num_labels)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None,
                start_positions=None, end_positions=None, output_hidden_states=False, output_attentions=False):
        outputs = self.albert(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                              position_ids=position_ids, output_hidden_states=output_hidden_states,
                              output_attentions=output_attentions)
        start_logits, end_logits = (part.squeeze(-1) for part in
                                    self.qa_outputs(outputs.last_hidden_state).split(2, axis=-1))
        loss = None
        if start_positions is not None and end_positions is not None:
            loss = question_answering_loss(start_logits, end_logits, start_positions, end_positions)
        return QuestionAnsweringModelOutput(loss=loss, start_logits=start_logits, end_logits=end_logits,
                                            hidden_states=outputs.hidden_states, attentions=outputs.attentions)


class AlbertForMultipleChoice(AlbertPreTrainedModel):
    initialisable_prefixes = ("classifier.", "albert.pooler.")

    def __init__(self, config: AlbertConfig):
        super().__init__(config)
        self.albert = AlbertModel(config)
        self.dropout = Dropout(config.classifier_dropout_prob)
        self.classifier = Linear(config.hidden_size, 1)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None, labels=None,
                output_hidden_states=False, output_attentions=False):
        """Inputs are [batch, choices, seq]; logits [batch, choices]."""
        num_choices = input_ids.shape[1]
        outputs = self.albert(flatten_choices(input_ids), attention_mask=flatten_choices(attention_mask),
                              token_type_ids=flatten_choices(token_type_ids),
                              position_ids=flatten_choices(position_ids), output_hidden_states=output_hidden_states,
                              output_attentions=output_attentions)
        logits = self.classifier(self.dropout(outputs.pooler_output)).reshape([-1, num_choices])
        loss = None if labels is None else F.cross_entropy(logits, labels.reshape([-1]))
        return MultipleChoiceModelOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states,
                                         attentions=outputs.attentions)
