"""BERT in Paddle, mirroring transformers' ``modeling_bert.py``: same classes, sub-layer names and forward.

Parameter names equal the Hugging Face ones; ``nn.Linear`` weights are stored ``[in, out]`` (Paddle's layout).
"""

from __future__ import annotations

import math

import paddle
from paddle import nn

from paddleport.models.configuration import BertConfig
from paddleport.models.layers import (Dropout, LayerNorm, Linear, attention_probs, dense_gelu,
                                      dense_residual_layer_norm, gelu)
from paddleport.models.modeling_utils import (
    ACT2FN,
    EncoderModel,
    ForMaskedLM,
    ForSequenceClassification,
    PretrainedModel,
    UntiedDecoder,
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

    def forward(self, input_ids, token_type_ids=None, position_ids=None):
        if position_ids is None:
            position_ids = paddle.arange(input_ids.shape[1], dtype="int64").unsqueeze(0)
        if token_type_ids is None:
            token_type_ids = paddle.zeros_like(input_ids)
        embeddings = (self.embed_words(input_ids) + self.position_embeddings(position_ids)
                      + self.token_type_embeddings(token_type_ids))
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

    def split_heads(self, x):
        """[batch, seq, hidden] -> [batch, heads, seq, head_size]"""
        return x.reshape([0, 0, self.num_attention_heads, self.attention_head_size]).transpose([0, 2, 1, 3])

    def forward(self, hidden_states, attention_mask=None):
        query = self.split_heads(self.query(hidden_states))
        key = self.split_heads(self.key(hidden_states))
        value = self.split_heads(self.value(hidden_states))
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
                from paddle.distributed.fleet.utils import recompute

                hidden_states, probs = recompute(layer, hidden_states, attention_mask)
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


class BertModel(EncoderModel, BertPreTrainedModel):
    initialisable_prefixes = ("pooler.",)

    def __init__(self, config: BertConfig, add_pooling_layer: bool = True):
        super().__init__(config)
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)
        self.pooler = BertPooler(config) if add_pooling_layer else None


class BertForSequenceClassification(ForSequenceClassification, BertPreTrainedModel):
    initialisable_prefixes = ("classifier.", "bert.pooler.")

    def __init__(self, config: BertConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.bert = BertModel(config)
        dropout = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = Dropout(dropout)
        self.classifier = Linear(config.hidden_size, config.num_labels)


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


class BertForMaskedLM(ForMaskedLM, BertPreTrainedModel):
    initialisable_prefixes = ("cls.",)

    def __init__(self, config: BertConfig):
        super().__init__(config)
        self.bert = BertModel(config, add_pooling_layer=False)
        self.cls = BertOnlyMLMHead(config, self.bert.embeddings.word_embeddings)
