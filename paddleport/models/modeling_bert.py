"""BERT in Paddle, mirroring transformers' ``modeling_bert.py``: same classes, sub-layer names and forward.

Parameter names equal the Hugging Face ones; ``nn.Linear`` weights are stored ``[in, out]`` (Paddle's layout).
"""

from __future__ import annotations

import math

import paddle
import paddle.nn.functional as F
from paddle import nn

from paddleport.core.configuration import BertConfig
from paddleport.models.layers import (Dropout, LayerNorm, Linear, attention_probs, dense_gelu,
                                      dense_residual_layer_norm, dense_split_heads, gelu)
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


class BertEmbeddings(nn.Layer):
    def __init__(self, config: BertConfig, embedding_size: int | None = None):
        super().__init__()
        embedding_size = embedding_size or config.hidden_size
        # No padding_idx: Paddle would then output zeros for the pad row; torch only stops its gradient.
        self.word_embeddings = nn.Embedding(config.vocab_size, embedding_size)
        self.word_embeddings.padding_row = config.pad_token_id  # zeroed at initialisation, as in torch
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, embedding_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, embedding_size)
        self.LayerNorm = LayerNorm(config.hidden_size, epsilon=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids=None, token_type_ids=None, position_ids=None, inputs_embeds=None):
        # inputs_embeds (as transformers): word vectors given instead of ids, e.g. with prompt-tuning's virtual tokens
        words = self.embed_words(input_ids) if inputs_embeds is None else inputs_embeds
        if position_ids is None:
            position_ids = paddle.arange(words.shape[1], dtype="int64").unsqueeze(0)
        if token_type_ids is None:
            ids = input_ids if inputs_embeds is None else inputs_embeds[:, :, 0]
            token_type_ids = paddle.zeros_like(ids, dtype="int64")
        embeddings = words + self.position_embeddings(position_ids) + self.token_type_embeddings(token_type_ids)
        return self.dropout(self.LayerNorm(embeddings))

    def embed_words(self, input_ids):
        """Word embeddings whose padding row gets no gradient, like torch's ``padding_idx``."""
        embedded = self.word_embeddings(input_ids)
        pad_row = self.word_embeddings.padding_row
        if pad_row is None:
            return embedded
        return paddle.where((input_ids == pad_row).unsqueeze(-1), embedded.detach(), embedded)


class BertSelfAttention(nn.Layer):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.num_attention_heads = config.num_attention_heads
        self.attention_head_size = config.hidden_size // config.num_attention_heads
        self.scaling = 1.0 / math.sqrt(self.attention_head_size)
        self.query = Linear(config.hidden_size, config.hidden_size)
        self.key = Linear(config.hidden_size, config.hidden_size)
        self.value = Linear(config.hidden_size, config.hidden_size)
        self.dropout = Dropout(config.attention_probs_dropout_prob)

    def forward(self, hidden_states, attention_mask=None):
        # each projection split into heads; without autograd its bias add and head transpose are one pass
        query = dense_split_heads(self.query, hidden_states, self.num_attention_heads)
        key = dense_split_heads(self.key, hidden_states, self.num_attention_heads)
        value = dense_split_heads(self.value, hidden_states, self.num_attention_heads)
        scores = paddle.matmul(query, key, transpose_y=True)
        probs = self.dropout(attention_probs(scores, attention_mask, self.scaling))
        context = paddle.matmul(probs, value).transpose([0, 2, 1, 3])
        return context.reshape([0, 0, -1]), probs


class BertSelfOutput(nn.Layer):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = LayerNorm(config.hidden_size, epsilon=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states, input_tensor):
        # LayerNorm(dropout(dense(hidden_states)) + input_tensor), fused when nothing is trained
        return dense_residual_layer_norm(self.dense, self.dropout, self.LayerNorm, hidden_states, input_tensor)


class BertAttention(nn.Layer):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.self = BertSelfAttention(config)
        self.output = BertSelfOutput(config)

    def forward(self, hidden_states, attention_mask=None):
        context, probs = self.self(hidden_states, attention_mask)
        return self.output(context, hidden_states), probs


class BertIntermediate(nn.Layer):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = Linear(config.hidden_size, config.intermediate_size)
        self.intermediate_act_fn = ACT2FN[config.hidden_act]

    def forward(self, hidden_states):
        if self.intermediate_act_fn is gelu:
            return dense_gelu(self.dense, hidden_states)
        return self.intermediate_act_fn(self.dense(hidden_states))


class BertOutput(BertSelfOutput):
    def __init__(self, config: BertConfig):
        nn.Layer.__init__(self)
        self.dense = Linear(config.intermediate_size, config.hidden_size)
        self.LayerNorm = LayerNorm(config.hidden_size, epsilon=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)


class BertLayer(nn.Layer):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.attention = BertAttention(config)
        self.intermediate = BertIntermediate(config)
        self.output = BertOutput(config)

    def forward(self, hidden_states, attention_mask=None):
        attention_output, probs = self.attention(hidden_states, attention_mask)
        return self.output(self.intermediate(attention_output), attention_output), probs


class BertEncoder(nn.Layer):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.layer = nn.LayerList([BertLayer(config) for _ in range(config.num_hidden_layers)])
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


class BertPooler(nn.Layer):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = Linear(config.hidden_size, config.hidden_size)
        self.activation = nn.Tanh()

    def forward(self, hidden_states):
        return self.activation(self.dense(hidden_states[:, 0]))


class BertPreTrainedModel(PretrainedModel):
    config_class = BertConfig
    base_model_prefix = "bert"


class BertModel(BertPreTrainedModel):
    initialisable_prefixes = ("pooler.",)

    def __init__(self, config: BertConfig, add_pooling_layer: bool = True):
        super().__init__(config)
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)
        self.pooler = BertPooler(config) if add_pooling_layer else None

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                output_hidden_states=False, output_attentions=False, inputs_embeds=None):
        embedding_output = self.embeddings(input_ids, token_type_ids=token_type_ids, position_ids=position_ids,
                                           inputs_embeds=inputs_embeds)
        mask = layer_attention_mask(attention_mask, embedding_output.dtype, self.config.num_attention_heads)
        sequence_output, hidden_states, attentions = self.encoder(
            embedding_output, mask, output_hidden_states=output_hidden_states, output_attentions=output_attentions)
        return BaseModelOutputWithPooling(
            last_hidden_state=sequence_output,
            pooler_output=self.pooler(sequence_output) if self.pooler is not None else None,
            hidden_states=hidden_states, attentions=attentions)


def classifier_dropout(config: BertConfig) -> float:
    return config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob


class BertForSequenceClassification(BertPreTrainedModel):
    initialisable_prefixes = ("classifier.", "bert.pooler.")

    def __init__(self, config: BertConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.bert = BertModel(config)
        self.dropout = Dropout(classifier_dropout(config))
        self.classifier = Linear(config.hidden_size, config.num_labels)

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, labels=None,
                output_hidden_states=False, output_attentions=False, inputs_embeds=None):
        outputs = self.bert(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                            position_ids=position_ids, output_hidden_states=output_hidden_states,
                            output_attentions=output_attentions, inputs_embeds=inputs_embeds)
        logits = self.classifier(self.dropout(outputs.pooler_output))
        loss = None if labels is None else sequence_classification_loss(self.config, logits, labels)
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states,
                                        attentions=outputs.attentions)


class BertForTokenClassification(BertPreTrainedModel):
    initialisable_prefixes = ("classifier.",)

    def __init__(self, config: BertConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.bert = BertModel(config, add_pooling_layer=False)
        self.dropout = Dropout(classifier_dropout(config))
        self.classifier = Linear(config.hidden_size, config.num_labels)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None, labels=None,
                output_hidden_states=False, output_attentions=False):
        outputs = self.bert(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                            position_ids=position_ids, output_hidden_states=output_hidden_states,
                            output_attentions=output_attentions)
        logits = self.classifier(self.dropout(outputs.last_hidden_state))
        loss = None if labels is None else token_classification_loss(logits, labels)
        return TokenClassifierOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states,
                                     attentions=outputs.attentions)


class BertForQuestionAnswering(BertPreTrainedModel):
    initialisable_prefixes = ("qa_outputs.",)

    def __init__(self, config: BertConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.bert = BertModel(config, add_pooling_layer=False)
        self.qa_outputs = Linear(config.hidden_size, config.num_labels)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None,
                start_positions=None, end_positions=None, output_hidden_states=False, output_attentions=False):
        outputs = self.bert(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                            position_ids=position_ids, output_hidden_states=output_hidden_states,
                            output_attentions=output_attentions)
        start_logits, end_logits = self.qa_outputs(outputs.last_hidden_state).split(2, axis=-1)
        start_logits, end_logits = start_logits.squeeze(-1), end_logits.squeeze(-1)
        loss = None
        if start_positions is not None and end_positions is not None:
            loss = question_answering_loss(start_logits, end_logits, start_positions, end_positions)
        return QuestionAnsweringModelOutput(loss=loss, start_logits=start_logits, end_logits=end_logits,
                                            hidden_states=outputs.hidden_states, attentions=outputs.attentions)


class BertForMultipleChoice(BertPreTrainedModel):
    initialisable_prefixes = ("classifier.", "bert.pooler.")

    def __init__(self, config: BertConfig):
        super().__init__(config)
        self.bert = BertModel(config)
        self.dropout = Dropout(classifier_dropout(config))
        self.classifier = Linear(config.hidden_size, 1)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None, labels=None,
                output_hidden_states=False, output_attentions=False):
        """Inputs are [batch, choices, seq]; logits [batch, choices]."""
        num_choices = input_ids.shape[1]
        outputs = self.bert(flatten_choices(input_ids), attention_mask=flatten_choices(attention_mask),
                            token_type_ids=flatten_choices(token_type_ids),
                            position_ids=flatten_choices(position_ids), output_hidden_states=output_hidden_states,
                            output_attentions=output_attentions)
        logits = self.classifier(self.dropout(outputs.pooler_output)).reshape([-1, num_choices])
        loss = None if labels is None else F.cross_entropy(logits, labels.reshape([-1]))
        return MultipleChoiceModelOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states,
                                         attentions=outputs.attentions)


class BertPredictionHeadTransform(nn.Layer):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = Linear(config.hidden_size, config.hidden_size)
        self.transform_act_fn = ACT2FN[config.hidden_act]
        self.LayerNorm = LayerNorm(config.hidden_size, epsilon=config.layer_norm_eps)

    def forward(self, hidden_states):
        return self.LayerNorm(self.transform_act_fn(self.dense(hidden_states)))


class BertLMPredictionHead(nn.Layer):
    """The decoder is the word-embedding matrix ``[vocab, hidden]`` plus ``bias``, as transformers ties them."""

    def __init__(self, config: BertConfig, word_embeddings: nn.Embedding):
        super().__init__()
        self.transform = BertPredictionHeadTransform(config)
        self.bias = self.create_parameter([config.vocab_size], is_bias=True)
        self._word_embeddings = [word_embeddings]  # a list, so the embedding is not registered twice
        self.decoder = None if config.tie_word_embeddings else UntiedDecoder(config)

    def forward(self, hidden_states):
        hidden_states = self.transform(hidden_states)
        if self.decoder is not None:
            return self.decoder(hidden_states)
        return paddle.matmul(hidden_states, self._word_embeddings[0].weight, transpose_y=True) + self.bias


class BertOnlyMLMHead(nn.Layer):
    def __init__(self, config: BertConfig, word_embeddings: nn.Embedding):
        super().__init__()
        self.predictions = BertLMPredictionHead(config, word_embeddings)

    def forward(self, sequence_output):
        return self.predictions(sequence_output)


class BertForMaskedLM(BertPreTrainedModel):
    initialisable_prefixes = ("cls.",)

    def __init__(self, config: BertConfig):
        super().__init__(config)
        self.bert = BertModel(config, add_pooling_layer=False)
        self.cls = BertOnlyMLMHead(config, self.bert.embeddings.word_embeddings)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None, labels=None,
                output_hidden_states=False, output_attentions=False):
        outputs = self.bert(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                            position_ids=position_ids, output_hidden_states=output_hidden_states,
                            output_attentions=output_attentions)
        logits = self.cls(outputs.last_hidden_state)
        loss = None if labels is None else masked_lm_loss(logits, labels)
        return MaskedLMOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states,
                              attentions=outputs.attentions)
