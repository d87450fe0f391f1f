"""DeBERTa-v2/v3 in Paddle, mirroring transformers' ``modeling_deberta_v2.py``: same classes, sub-layer names and
forward.

Disentangled attention: content-to-content scores plus content-to-position (c2p) and position-to-content (p2c)
scores against the (LayerNorm-ed) relative-position embeddings, gathered at each pair's relative distance, log
bucketed when ``position_buckets`` > 0; all divided by sqrt(head size x (1 + number of relative terms)). The first
layer's output passes through ``ConvLayer`` when ``conv_kernel_size`` > 0. Masks are a query x key product filled
with the dtype's minimum, as transformers does (padded query rows attend uniformly), so every position, kept or
not, computes what transformers computes. Tensors stay [batch, heads, seq, head size] where transformers folds
them to [batch x heads, seq, head size]: the same products, element for element.

Parameter names equal the Hugging Face ones; ``nn.Linear`` weights are stored ``[in, out]`` (Paddle's layout).
"""

from __future__ import annotations

import math

import paddle
import paddle.nn.functional as F
from paddle import nn

from paddleport.core.configuration import DebertaV2Config
from paddleport.models.layers import Dropout, LayerNorm, Linear, dense_split_heads, inference_kernels_for
from paddleport.models.modeling_bert import (BertEmbeddings, BertIntermediate, BertLMPredictionHead,
                                             BertPredictionHeadTransform, BertSelfOutput)
from paddleport.models.modeling_utils import (
    ACT2FN,
    BaseModelOutput,
    MaskedLMOutput,
    MultipleChoiceModelOutput,
    PretrainedModel,
    QuestionAnsweringModelOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
    UntiedDecoder,
    checkpointed,
    flatten_choices,
    masked_lm_loss,
    question_answering_loss,
    sequence_classification_loss,
    token_classification_loss,
)


class DebertaV2SelfOutput(BertSelfOutput):
    """LayerNorm(dropout(dense(hidden_states)) + input_tensor), as BERT's."""


def make_log_bucket_position(relative_pos, bucket_size: int, max_position: int):
    """Distances beyond ``bucket_size // 2`` share buckets whose width grows logarithmically up to
    ``max_position``; float32 throughout, in transformers' order of operations (the ceil decides the bucket)."""
    sign = paddle.sign(relative_pos.astype("float32"))
    mid = bucket_size // 2
    abs_pos = paddle.where((relative_pos < mid) & (relative_pos > -mid),
                           paddle.full_like(relative_pos, mid - 1), paddle.abs(relative_pos))
    # true divisions by float32 tensors, as torch divides (not a multiplication by the reciprocal)
    ratio = paddle.divide(abs_pos.astype("float32"), paddle.full([], mid, "float32"))
    log_max = paddle.log(paddle.full([], (max_position - 1) / mid, "float32"))
    log_pos = paddle.ceil(paddle.divide(paddle.log(ratio), log_max) * (mid - 1)) + mid
    return paddle.where(abs_pos <= mid, relative_pos.astype("float32"), log_pos * sign)


def build_relative_position(query_size, key_size, bucket_size: int = -1, max_position: int = -1):
    """[1, query, key] relative positions query - key (int64), log bucketed when both sizes are positive."""
    q_ids = paddle.arange(query_size, dtype="int64")
    k_ids = paddle.arange(key_size, dtype="int64")
    rel_pos_ids = q_ids.unsqueeze(1) - k_ids.unsqueeze(0)
    if bucket_size > 0 and max_position > 0:
        rel_pos_ids = make_log_bucket_position(rel_pos_ids, bucket_size, max_position)
    return rel_pos_ids.astype("int64").unsqueeze(0)


def scaled_size_sqrt(head_size: int, scale_factor: int):
    """sqrt(head size x scale factor) as a float32 0-d tensor (a square root rounded once, as torch's)."""
    return paddle.full([], math.sqrt(head_size * scale_factor), "float32")


class DisentangledSelfAttention(nn.Layer):
    def __init__(self, config: DebertaV2Config):
        super().__init__()
        self.num_attention_heads = config.num_attention_heads
        self.attention_head_size = config.hidden_size // config.num_attention_heads
        self.all_head_size = self.num_attention_heads * self.attention_head_size
        self.query_proj = Linear(config.hidden_size, self.all_head_size)
        self.key_proj = Linear(config.hidden_size, self.all_head_size)
        self.value_proj = Linear(config.hidden_size, self.all_head_size)

        self.share_att_key = config.share_att_key
        self.pos_att_type = config.position_attention_types
        self.relative_attention = config.relative_attention
        if self.relative_attention:
            self.pos_ebd_size = config.relative_span
            self.pos_dropout = Dropout(config.hidden_dropout_prob)
            if not self.share_att_key:
                if "c2p" in self.pos_att_type:
                    self.pos_key_proj = Linear(config.hidden_size, self.all_head_size)
                if "p2c" in self.pos_att_type:
                    self.pos_query_proj = Linear(config.hidden_size, self.all_head_size)
        self.dropout = Dropout(config.attention_probs_dropout_prob)

    def forward(self, hidden_states, attention_mask, output_attentions=False, relative_pos=None,
                rel_embeddings=None, gather_index=None):
        # each projection split into heads; without autograd its bias add and head transpose are one pass (as BERT's)
        query_layer = dense_split_heads(self.query_proj, hidden_states, self.num_attention_heads)
        key_layer = dense_split_heads(self.key_proj, hidden_states, self.num_attention_heads)
        value_layer = dense_split_heads(self.value_proj, hidden_states, self.num_attention_heads)

        scale_factor = 1 + ("c2p" in self.pos_att_type) + ("p2c" in self.pos_att_type)
        if self.relative_attention:
            rel_embeddings = self.pos_dropout(rel_embeddings)
        kernels = inference_kernels_for(hidden_states)
        if kernels is not None:
            attention_probs = self.fused_attention_probs(kernels, query_layer, key_layer, attention_mask,
                                                         relative_pos, rel_embeddings, scale_factor)
        else:
            scale = scaled_size_sqrt(self.attention_head_size, scale_factor)
            attention_scores = paddle.matmul(query_layer, key_layer / scale, transpose_y=True)
            if self.relative_attention:
                if gather_index is None:
                    gather_index = self.gather_indices(relative_pos, attention_scores)
                attention_scores = attention_scores + self.disentangled_attention_bias(
                    query_layer, key_layer, gather_index, rel_embeddings, scale)
            # transformers' masked_fill, as a where (paddle2onnx has no masked_fill)
            lowest = paddle.full_like(attention_scores, paddle.finfo(attention_scores.dtype).min)
            attention_scores = paddle.where(attention_mask, attention_scores, lowest)
            attention_probs = F.softmax(attention_scores, axis=-1)
        attention_probs = self.dropout(attention_probs)
        context_layer = paddle.matmul(attention_probs, value_layer).transpose([0, 2, 1, 3])
        context_layer = context_layer.reshape([0, 0, -1])
        return context_layer, (attention_probs if output_attentions else None)

    def relative_projections(self, rel_embeddings):
        """(position queries, position keys) [1, heads, rows, head size] of the relative embeddings [rows, hidden]
        (None where the attention types do not use them)."""
        rel_embeddings = rel_embeddings.unsqueeze(0)
        heads = self.num_attention_heads
        pos_query_layer = pos_key_layer = None
        if self.share_att_key:
            pos_query_layer = dense_split_heads(self.query_proj, rel_embeddings, heads)
            pos_key_layer = dense_split_heads(self.key_proj, rel_embeddings, heads)
        else:
            if "c2p" in self.pos_att_type:
                pos_key_layer = dense_split_heads(self.pos_key_proj, rel_embeddings, heads)
            if "p2c" in self.pos_att_type:
                pos_query_layer = dense_split_heads(self.pos_query_proj, rel_embeddings, heads)
        return pos_query_layer, pos_key_layer

    def gather_indices(self, relative_pos, like):
        """(c2p, p2c) gather indices [batch, heads, query, key] (int64) of the relative positions [1, query, key],
        expanded as transformers expands them; ``like`` [batch, 1 or heads, query, key] lends its batch and length.
        Every layer's are the same, so the encoder builds them once per forward (in the exported program each layer
        built its own: a zeros_like and two full-size int64 adds per layer, 11 % of the program's time)."""
        att_span = self.pos_ebd_size
        relative_pos = relative_pos.unsqueeze(1)  # [1, 1, query, key]
        # zeros [batch, heads, query, key] added to a [1, 1, query, key] index (an add where expand_as would do:
        # paddle2onnx's Expand fails on dynamic shapes)
        index_shape = (paddle.zeros_like(like, dtype="int64")
                       + paddle.zeros([1, self.num_attention_heads, 1, 1], dtype="int64"))
        c2p_pos = paddle.clip(relative_pos + att_span, 0, att_span * 2 - 1) if "c2p" in self.pos_att_type else None
        # position -> content (query and key lengths are equal: transformers' build_rpos returns relative_pos)
        p2c_pos = paddle.clip(-relative_pos + att_span, 0, att_span * 2 - 1) if "p2c" in self.pos_att_type else None
        return tuple(None if pos is None else pos + index_shape for pos in (c2p_pos, p2c_pos))

    def disentangled_attention_bias(self, query_layer, key_layer, gather_index, rel_embeddings, scale):
        """c2p and p2c scores [batch, heads, query, key], gathered at ``gather_index`` (:meth:`gather_indices`)."""
        c2p_index, p2c_index = gather_index
        pos_query_layer, pos_key_layer = self.relative_projections(rel_embeddings[0:self.pos_ebd_size * 2, :])
        score = None
        # content -> position
        if "c2p" in self.pos_att_type:
            c2p_att = paddle.matmul(query_layer, pos_key_layer, transpose_y=True)
            c2p_att = paddle.take_along_axis(c2p_att, c2p_index, axis=-1, broadcast=False)
            score = c2p_att / scale
        # position -> content
        if "p2c" in self.pos_att_type:
            p2c_att = paddle.matmul(key_layer, pos_query_layer, transpose_y=True)
            p2c_att = paddle.take_along_axis(p2c_att, p2c_index, axis=-1, broadcast=False).transpose([0, 1, 3, 2])
            score = p2c_att / scale if score is None else score + p2c_att / scale
        return 0 if score is None else score

    def fused_attention_probs(self, kernels, query_layer, key_layer, attention_mask, relative_pos, rel_embeddings,
                              scale_factor):
        """The attention probabilities without autograd, on paddleport's CPU kernel: the gathers of the c2p and
        p2c scores, the divisions, the adds, the masked fill and the softmax in one pass over each score row
        (``pp_disentangled_softmax``), where Paddle's ops (``take_along_axis`` with broadcast indices above all)
        made DeBERTa's eager forward 1.7x torch's. Only the relative-embedding rows that some pair's clipped
        distance selects are projected and scored (at 128 tokens with 256 buckets, 255 of 512)."""
        raw_scores = paddle.matmul(query_layer, key_layer, transpose_y=True)
        scale = math.sqrt(self.attention_head_size * scale_factor)
        c2p = c2p_index = p2c = p2c_index = None
        if self.relative_attention and ("c2p" in self.pos_att_type or "p2c" in self.pos_att_type):
            att_span = self.pos_ebd_size
            relative_pos = relative_pos[0]  # [query, key]
            c2p_index = paddle.clip(relative_pos + att_span, 0, att_span * 2 - 1)
            # p2c reads p2c_att[key, clip(-relative_pos[key, query] + span)]: the index as [query, key]
            p2c_index = paddle.clip(-relative_pos + att_span, 0, att_span * 2 - 1).transpose([1, 0])
            first = int(paddle.minimum(c2p_index.min(), p2c_index.min()))
            last = int(paddle.maximum(c2p_index.max(), p2c_index.max()))
            pos_query_layer, pos_key_layer = self.relative_projections(rel_embeddings[first:last + 1, :])
            if "c2p" in self.pos_att_type:
                c2p, c2p_index = paddle.matmul(query_layer, pos_key_layer, transpose_y=True), c2p_index - first
            else:
                c2p_index = None
            if "p2c" in self.pos_att_type:
                p2c, p2c_index = paddle.matmul(key_layer, pos_query_layer, transpose_y=True), p2c_index - first
            else:
                p2c_index = None
        return kernels.pp_disentangled_softmax(raw_scores, c2p, c2p_index, p2c, p2c_index, attention_mask, scale)


class DebertaV2Attention(nn.Layer):
    def __init__(self, config: DebertaV2Config):
        super().__init__()
        self.self = DisentangledSelfAttention(config)
        self.output = DebertaV2SelfOutput(config)

    def forward(self, hidden_states, attention_mask, output_attentions=False, relative_pos=None, rel_embeddings=None,
                gather_index=None):
        self_output, att_matrix = self.self(hidden_states, attention_mask, output_attentions,
                                            relative_pos=relative_pos, rel_embeddings=rel_embeddings,
                                            gather_index=gather_index)
        return self.output(self_output, hidden_states), att_matrix


class DebertaV2Intermediate(BertIntermediate):
    """dense + hidden_act, as BERT's."""


class DebertaV2Output(BertSelfOutput):
    def __init__(self, config: DebertaV2Config):
        nn.Layer.__init__(self)
        self.dense = Linear(config.intermediate_size, config.hidden_size)
        self.LayerNorm = LayerNorm(config.hidden_size, epsilon=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)


class DebertaV2Layer(nn.Layer):
    def __init__(self, config: DebertaV2Config):
        super().__init__()
        self.attention = DebertaV2Attention(config)
        self.intermediate = DebertaV2Intermediate(config)
        self.output = DebertaV2Output(config)

    def forward(self, hidden_states, attention_mask, relative_pos=None, rel_embeddings=None,
                output_attentions=False, gather_index=None):
        attention_output, att_matrix = self.attention(hidden_states, attention_mask, output_attentions,
                                                      relative_pos=relative_pos, rel_embeddings=rel_embeddings,
                                                      gather_index=gather_index)
        layer_output = self.output(self.intermediate(attention_output), attention_output)
        return layer_output, att_matrix


class ConvLayer(nn.Layer):
    """A convolution over the sequence of the embeddings, added to the first layer's output (zero at padding)."""

    def __init__(self, config: DebertaV2Config):
        super().__init__()
        kernel_size = config.conv_kernel_size
        self.conv_act = config.conv_act
        self.conv = nn.Conv1D(config.hidden_size, config.hidden_size, kernel_size, padding=(kernel_size - 1) // 2,
                              groups=config.conv_groups)
        self.LayerNorm = LayerNorm(config.hidden_size, epsilon=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states, residual_states, input_mask):
        out = self.conv(hidden_states.transpose([0, 2, 1])).transpose([0, 2, 1])
        rmask = (1 - input_mask).astype("bool")
        out = paddle.where(rmask.unsqueeze(-1), paddle.zeros_like(out), out)  # masked_fill(rmask, 0)
        out = ACT2FN[self.conv_act](self.dropout(out))
        output = self.LayerNorm(residual_states + out)
        return output * input_mask.unsqueeze(2).astype(output.dtype)


class DebertaV2Embeddings(nn.Layer):
    """Word embeddings (+ absolute positions with ``position_biased_input``, + token types when
    ``type_vocab_size`` > 0), ``embed_proj`` to ``hidden_size``, LayerNorm, zeroed at padding, dropout."""

    def __init__(self, config: DebertaV2Config):
        super().__init__()
        self.embedding_size = config.embedding_size
        # No padding_idx: Paddle would then output zeros for the pad row; torch only stops its gradient.
        self.word_embeddings = nn.Embedding(config.vocab_size, self.embedding_size)
        self.word_embeddings.padding_row = config.pad_token_id  # zeroed at initialisation, as in torch
        self.position_biased_input = config.position_biased_input
        self.position_embeddings = (nn.Embedding(config.max_position_embeddings, self.embedding_size)
                                    if self.position_biased_input else None)
        self.token_type_embeddings = (nn.Embedding(config.type_vocab_size, self.embedding_size)
                                      if config.type_vocab_size > 0 else None)
        self.embed_proj = (Linear(self.embedding_size, config.hidden_size, bias_attr=False)
                           if self.embedding_size != config.hidden_size else None)
        self.LayerNorm = LayerNorm(config.hidden_size, epsilon=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)

    embed_words = BertEmbeddings.embed_words  # the padding row gets no gradient, like torch's padding_idx

    def forward(self, input_ids=None, token_type_ids=None, position_ids=None, mask=None, inputs_embeds=None):
        # inputs_embeds (as transformers): word vectors given instead of ids, e.g. with prompt-tuning's virtual tokens
        embeddings = self.embed_words(input_ids) if inputs_embeds is None else inputs_embeds
        if self.position_embeddings is not None:
            if position_ids is None:
                position_ids = paddle.arange(embeddings.shape[1], dtype="int64").unsqueeze(0)
            embeddings = embeddings + self.position_embeddings(position_ids)
        if self.token_type_embeddings is not None:
            if token_type_ids is None:
                token_type_ids = paddle.zeros_like(embeddings[:, :, 0], dtype="int64")
            embeddings = embeddings + self.token_type_embeddings(token_type_ids)
        if self.embed_proj is not None:
            embeddings = self.embed_proj(embeddings)
        embeddings = self.LayerNorm(embeddings)
        if mask is not None:
            embeddings = embeddings * mask.unsqueeze(2).astype(embeddings.dtype)
        return self.dropout(embeddings)


class DebertaV2Encoder(nn.Layer):
    """BERT's encoder with relative-position embeddings shared by every layer, and the first layer's ConvLayer."""

    def __init__(self, config: DebertaV2Config):
        super().__init__()
        self.layer = nn.LayerList([DebertaV2Layer(config) for _ in range(config.num_hidden_layers)])
        self.relative_attention = config.relative_attention
        if self.relative_attention:
            self.max_relative_positions = (config.max_relative_positions if config.max_relative_positions >= 1
                                           else config.max_position_embeddings)
            self.position_buckets = config.position_buckets
            self.rel_embeddings = nn.Embedding(config.relative_span * 2, config.hidden_size)
        self.norm_rel_ebd = config.rel_embedding_norms
        if "layer_norm" in self.norm_rel_ebd:
            self.LayerNorm = LayerNorm(config.hidden_size, epsilon=config.layer_norm_eps)
        self.conv = ConvLayer(config) if config.conv_kernel_size > 0 else None
        self.gradient_checkpointing = False

    def get_rel_embedding(self):
        rel_embeddings = self.rel_embeddings.weight if self.relative_attention else None
        if rel_embeddings is not None and "layer_norm" in self.norm_rel_ebd:
            rel_embeddings = self.LayerNorm(rel_embeddings)
        return rel_embeddings

    @staticmethod
    def get_attention_mask(attention_mask):
        """[batch, seq] -> [batch, 1, query, key] booleans: both the query and the key are kept."""
        extended = attention_mask.unsqueeze(1).unsqueeze(2)
        return (extended * extended.squeeze(-2).unsqueeze(-1)).astype("bool")

    def get_rel_pos(self, hidden_states):
        if not self.relative_attention:
            return None
        length = hidden_states.shape[1]
        return build_relative_position(length, length, bucket_size=self.position_buckets,
                                       max_position=self.max_relative_positions)

    def get_gather_index(self, hidden_states, relative_pos, attention_mask):
        """The c2p/p2c gather indices every layer's Paddle ops share, built once per forward; None when the layers
        run paddleport's fused kernel instead (eager inference on CPU), which gathers without them."""
        if not self.relative_attention or inference_kernels_for(hidden_states) is not None:
            return None
        return self.layer[0].attention.self.gather_indices(relative_pos, attention_mask)

    def forward(self, hidden_states, attention_mask, output_hidden_states=False, output_attentions=False):
        input_mask = attention_mask
        attention_mask = self.get_attention_mask(attention_mask)
        relative_pos = self.get_rel_pos(hidden_states)
        all_hidden_states = (hidden_states,) if output_hidden_states else None
        all_attentions = () if output_attentions else None
        next_kv = hidden_states
        rel_embeddings = self.get_rel_embedding()
        gather_index = self.get_gather_index(hidden_states, relative_pos, attention_mask)
        for index, layer_module in enumerate(self.layer):
            if self.gradient_checkpointing and self.training:
                output_states, attn_weights = checkpointed(layer_module, next_kv, attention_mask, relative_pos,
                                                           rel_embeddings, output_attentions, gather_index)
            else:
                output_states, attn_weights = layer_module(next_kv, attention_mask, relative_pos=relative_pos,
                                                           rel_embeddings=rel_embeddings,
                                                           output_attentions=output_attentions,
                                                           gather_index=gather_index)
            if output_attentions:
                all_attentions += (attn_weights,)
            if index == 0 and self.conv is not None:
                output_states = self.conv(hidden_states, output_states, input_mask)
            if output_hidden_states:
                all_hidden_states += (output_states,)
            next_kv = output_states
        return next_kv, all_hidden_states, all_attentions


class DebertaV2PreTrainedModel(PretrainedModel):
    config_class = DebertaV2Config
    base_model_prefix = "deberta"


class DebertaV2Model(DebertaV2PreTrainedModel):
    def __init__(self, config: DebertaV2Config):
        super().__init__(config)
        self.embeddings = DebertaV2Embeddings(config)
        self.encoder = DebertaV2Encoder(config)

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                output_hidden_states=False, output_attentions=False, inputs_embeds=None):
        if attention_mask is None:
            attention_mask = paddle.ones_like(input_ids if inputs_embeds is None else inputs_embeds[:, :, 0],
                                              dtype="int64")
        embedding_output = self.embeddings(input_ids, token_type_ids=token_type_ids, position_ids=position_ids,
                                           mask=attention_mask, inputs_embeds=inputs_embeds)
        sequence_output, hidden_states, attentions = self.encoder(
            embedding_output, attention_mask, output_hidden_states=output_hidden_states,
            output_attentions=output_attentions)
        return BaseModelOutput(last_hidden_state=sequence_output, hidden_states=hidden_states, attentions=attentions)


class LegacyDebertaV2PredictionHeadTransform(BertPredictionHeadTransform):
    """BERT's dense + act + LayerNorm, to width ``embedding_size``."""

    def __init__(self, config: DebertaV2Config):
        nn.Layer.__init__(self)
        self.dense = Linear(config.hidden_size, config.embedding_size)
        self.transform_act_fn = ACT2FN[config.hidden_act]
        self.LayerNorm = LayerNorm(config.embedding_size, epsilon=config.layer_norm_eps)


class LegacyDebertaV2LMPredictionHead(BertLMPredictionHead):
    """BERT's layout at width ``embedding_size``: the decoder is the word-embedding matrix plus ``bias`` (tied), or a
    decoder of its own."""

    def __init__(self, config: DebertaV2Config, word_embeddings: nn.Embedding):
        nn.Layer.__init__(self)
        self.transform = LegacyDebertaV2PredictionHeadTransform(config)
        self.bias = self.create_parameter([config.vocab_size], is_bias=True)
        self._word_embeddings = [word_embeddings]  # a list, so the embedding is not registered twice
        self.decoder = None if config.tie_word_embeddings else UntiedDecoder(config, config.embedding_size)


class LegacyDebertaV2OnlyMLMHead(nn.Layer):
    def __init__(self, config: DebertaV2Config, word_embeddings: nn.Embedding):
        super().__init__()
        self.predictions = LegacyDebertaV2LMPredictionHead(config, word_embeddings)

    def forward(self, sequence_output):
        return self.predictions(sequence_output)


class DebertaV2LMPredictionHead(nn.Layer):
    """``legacy`` false: dense + act + LayerNorm, then the word embeddings (always tied) plus ``bias``."""

    def __init__(self, config: DebertaV2Config):
        super().__init__()
        self.dense = Linear(config.hidden_size, config.hidden_size)
        self.transform_act_fn = ACT2FN[config.hidden_act]
        self.LayerNorm = LayerNorm(config.hidden_size, epsilon=config.layer_norm_eps)
        self.bias = self.create_parameter([config.vocab_size], is_bias=True)

    def forward(self, hidden_states, word_embeddings):
        hidden_states = self.LayerNorm(self.transform_act_fn(self.dense(hidden_states)))
        return paddle.matmul(hidden_states, word_embeddings.weight, transpose_y=True) + self.bias


class DebertaV2OnlyMLMHead(nn.Layer):
    def __init__(self, config: DebertaV2Config):
        super().__init__()
        self.lm_head = DebertaV2LMPredictionHead(config)

    def forward(self, sequence_output, word_embeddings):
        return self.lm_head(sequence_output, word_embeddings)


class DebertaV2ForMaskedLM(DebertaV2PreTrainedModel):
    initialisable_prefixes = ("cls.", "lm_predictions.")

    def __init__(self, config: DebertaV2Config):
        super().__init__(config)
        self.legacy = config.legacy
        self.deberta = DebertaV2Model(config)
        if self.legacy:
            self.cls = LegacyDebertaV2OnlyMLMHead(config, self.deberta.embeddings.word_embeddings)
        else:
            self.lm_predictions = DebertaV2OnlyMLMHead(config)

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, labels=None,
                output_hidden_states=False, output_attentions=False, inputs_embeds=None):
        outputs = self.deberta(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                               position_ids=position_ids, output_hidden_states=output_hidden_states,
                               output_attentions=output_attentions, inputs_embeds=inputs_embeds)
        if self.legacy:
            logits = self.cls(outputs.last_hidden_state)
        else:
            logits = self.lm_predictions(outputs.last_hidden_state, self.deberta.embeddings.word_embeddings)
        loss = None if labels is None else masked_lm_loss(logits, labels)
        return MaskedLMOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states,
                              attentions=outputs.attentions)


class ContextPooler(nn.Layer):
    """The first token, dropped out, through dense + ``pooler_hidden_act``."""

    def __init__(self, config: DebertaV2Config):
        super().__init__()
        self.dense = Linear(config.pooler_hidden_size, config.pooler_hidden_size)
        self.dropout = Dropout(config.pooler_dropout)
        self.activation = ACT2FN[config.pooler_hidden_act]

    def forward(self, hidden_states):
        return self.activation(self.dense(self.dropout(hidden_states[:, 0])))


def cls_dropout(config: DebertaV2Config) -> float:
    return config.hidden_dropout_prob if config.cls_dropout is None else config.cls_dropout


def deberta_sequence_classification_loss(config: DebertaV2Config, logits, labels):
    """transformers' DeBERTa loss: with no ``problem_type`` and more than one label, integer labels below zero
    are left out of the cross-entropy and soft labels ([batch, labels]) take -sum(log_softmax x labels)."""
    if config.problem_type is not None or config.num_labels == 1:
        return sequence_classification_loss(config, logits, labels)
    if labels.ndim == 1 or labels.shape[-1] == 1:
        labels = labels.reshape([-1]).astype("int64")
        kept = labels >= 0
        if not bool(kept.any()):
            return paddle.zeros([], dtype=logits.dtype)
        return F.cross_entropy(logits[kept], labels[kept])
    return -(F.log_softmax(logits, axis=-1) * labels.astype(logits.dtype)).sum(-1).mean()


class DebertaV2ForSequenceClassification(DebertaV2PreTrainedModel):
    initialisable_prefixes = ("pooler.", "classifier.")

    def __init__(self, config: DebertaV2Config):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.deberta = DebertaV2Model(config)
        self.pooler = ContextPooler(config)
        self.classifier = Linear(config.hidden_size, config.num_labels)
        self.dropout = Dropout(cls_dropout(config))

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, labels=None,
                output_hidden_states=False, output_attentions=False, inputs_embeds=None):
        outputs = self.deberta(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                               position_ids=position_ids, output_hidden_states=output_hidden_states,
                               output_attentions=output_attentions, inputs_embeds=inputs_embeds)
        logits = self.classifier(self.dropout(self.pooler(outputs.last_hidden_state)))
        loss = None if labels is None else deberta_sequence_classification_loss(self.config, logits, labels)
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states,
                                        attentions=outputs.attentions)


class DebertaV2ForTokenClassification(DebertaV2PreTrainedModel):
    initialisable_prefixes = ("classifier.",)

    def __init__(self, config: DebertaV2Config):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.deberta = DebertaV2Model(config)
        self.dropout = Dropout(config.hidden_dropout_prob)
        self.classifier = Linear(config.hidden_size, config.num_labels)

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, labels=None,
                output_hidden_states=False, output_attentions=False, inputs_embeds=None):
        outputs = self.deberta(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                               position_ids=position_ids, output_hidden_states=output_hidden_states,
                               output_attentions=output_attentions, inputs_embeds=inputs_embeds)
        logits = self.classifier(self.dropout(outputs.last_hidden_state))
        loss = None if labels is None else token_classification_loss(logits, labels)
        return TokenClassifierOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states,
                                     attentions=outputs.attentions)


class DebertaV2ForQuestionAnswering(DebertaV2PreTrainedModel):
    initialisable_prefixes = ("qa_outputs.",)

    def __init__(self, config: DebertaV2Config):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.deberta = DebertaV2Model(config)
        self.qa_outputs = Linear(config.hidden_size, config.num_labels)

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                start_positions=None, end_positions=None, output_hidden_states=False, output_attentions=False,
                inputs_embeds=None):
        outputs = self.deberta(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                               position_ids=position_ids, output_hidden_states=output_hidden_states,
                               output_attentions=output_attentions, inputs_embeds=inputs_embeds)
        start_logits, end_logits = (part.squeeze(-1) for part in
                                    self.qa_outputs(outputs.last_hidden_state).split(2, axis=-1))
        loss = None
        if start_positions is not None and end_positions is not None:
            loss = question_answering_loss(start_logits, end_logits, start_positions, end_positions)
        return QuestionAnsweringModelOutput(loss=loss, start_logits=start_logits, end_logits=end_logits,
                                            hidden_states=outputs.hidden_states, attentions=outputs.attentions)


class DebertaV2ForMultipleChoice(DebertaV2PreTrainedModel):
    initialisable_prefixes = ("pooler.", "classifier.")

    def __init__(self, config: DebertaV2Config):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.deberta = DebertaV2Model(config)
        self.pooler = ContextPooler(config)
        self.classifier = Linear(config.hidden_size, 1)
        self.dropout = Dropout(cls_dropout(config))

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, labels=None,
                output_hidden_states=False, output_attentions=False, inputs_embeds=None):
        """Inputs are [batch, choices, seq]; logits [batch, choices]."""
        num_choices = (input_ids if inputs_embeds is None else inputs_embeds).shape[1]
        flat_embeds = None if inputs_embeds is None else inputs_embeds.reshape([-1] + inputs_embeds.shape[-2:])
        outputs = self.deberta(flatten_choices(input_ids), attention_mask=flatten_choices(attention_mask),
                               token_type_ids=flatten_choices(token_type_ids),
                               position_ids=flatten_choices(position_ids), output_hidden_states=output_hidden_states,
                               output_attentions=output_attentions, inputs_embeds=flat_embeds)
        logits = self.classifier(self.dropout(self.pooler(outputs.last_hidden_state))).reshape([-1, num_choices])
        loss = None if labels is None else F.cross_entropy(logits, labels.reshape([-1]))
        return MultipleChoiceModelOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states,
                                         attentions=outputs.attentions)
