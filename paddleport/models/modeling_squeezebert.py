"""SqueezeBERT in Paddle, mirroring transformers' ``modeling_squeezebert.py``.

The encoder runs in [batch, channels, seq] (NCW) layout with grouped 1x1 ``Conv1D``s, as the original.
Parameter names equal the Hugging Face ones; Conv1D weights keep torch's ``[out, in/groups, 1]`` layout.
"""

from __future__ import annotations

import math

import paddle
import paddle.nn.functional as F
from paddle import nn

from paddleport.core.configuration import SqueezeBertConfig
from paddleport.models.layers import (ChannelLayerNorm, Dropout, Linear, add_channel_bias, attention_probs,
                                      channel_bias_gelu, channel_bias_residual_layer_norm, gelu)
from paddleport.models.modeling_bert import BertEmbeddings, BertOnlyMLMHead, BertPooler
from paddleport.models.modeling_utils import (
    ACT2FN,
    BaseModelOutputWithPooling,
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
    question_answering_loss,
    sequence_classification_loss,
    token_classification_loss,
)

# transformers builds the encoder's LayerNorms as SqueezeBertLayerNorm(hidden_size), i.e. with the default
# eps, not config.layer_norm_eps (which only the embeddings and the MLM transform use).
ENCODER_LAYER_NORM_EPS = 1e-12


class SqueezeBertEmbeddings(BertEmbeddings):
    def __init__(self, config: SqueezeBertConfig):
        super().__init__(config, embedding_size=config.embedding_size)


class PointwiseConv1D(nn.Conv1D):
    """A kernel-size-1 grouped ``Conv1D`` (same parameters, same layout) computed as one batched matmul.

    Paddle's CPU grouped convolution is several times slower than a matmul over the groups.
    """

    def __init__(self, in_channels: int, out_channels: int, groups: int, bias_attr=None):
        super().__init__(in_channels, out_channels, kernel_size=1, groups=groups, bias_attr=bias_attr)
        self.groups = groups

    def forward(self, x):
        output = self.without_bias(x)
        return output if self.bias is None else add_channel_bias(output, self.bias)

    def without_bias(self, x):
        """The convolution before its bias is added, [N, out_channels, W]."""
        out_channels, in_per_group = self.weight.shape[0], self.weight.shape[1]
        weight = self.weight.reshape([self.groups, out_channels // self.groups, in_per_group])
        if paddle.is_grad_enabled():
            grouped = self._differentiable_matmul(weight, x)
        else:  # inference: the weight broadcast over the batch, no transposes
            grouped = paddle.matmul(weight, x.reshape([0, self.groups, in_per_group, -1]))
        return grouped.reshape([0, out_channels, -1])

    def _differentiable_matmul(self, weight, x):
        """[N, C, W] -> [groups, C/groups, N*W] -> one batched matmul -> [N, groups, out/groups, W].

        Paddle cannot differentiate a matmul that broadcasts the weight over the batch.
        """
        batch, _, width = x.shape
        groups, out_per_group, in_per_group = weight.shape
        columns = x.reshape([batch, groups, in_per_group, width]).transpose([1, 2, 0, 3])
        grouped = paddle.matmul(weight, columns.reshape([groups, in_per_group, batch * width]))
        return grouped.reshape([groups, out_per_group, batch, width]).transpose([2, 0, 1, 3])


class SqueezeBertLayerNorm(ChannelLayerNorm):
    """LayerNorm over the channel dimension of NCW data."""

    def __init__(self, hidden_size: int, eps: float = ENCODER_LAYER_NORM_EPS):
        super().__init__(hidden_size, epsilon=eps)


class ConvDropoutLayerNorm(nn.Layer):
    def __init__(self, cin: int, cout: int, groups: int, dropout_prob: float):
        super().__init__()
        self.conv1d = PointwiseConv1D(cin, cout, groups)
        self.layernorm = SqueezeBertLayerNorm(cout)
        self.dropout = Dropout(dropout_prob)

    def forward(self, hidden_states, input_tensor):
        # layernorm(dropout(conv1d(hidden_states)) + input_tensor), one pass after the matmul when nothing is trained
        return channel_bias_residual_layer_norm(self.conv1d.without_bias(hidden_states), self.conv1d.bias,
                                                self.dropout, self.layernorm, input_tensor)


class ConvActivation(nn.Layer):
    def __init__(self, cin: int, cout: int, groups: int, act: str):
        super().__init__()
        self.conv1d = PointwiseConv1D(cin, cout, groups)
        self.act = ACT2FN[act]

    def forward(self, x):
        if self.act is gelu:  # bias and GELU in one pass after the matmul when nothing is trained
            return channel_bias_gelu(self.conv1d.without_bias(x), self.conv1d.bias)
        return self.act(self.conv1d(x))


class SqueezeBertSelfAttention(nn.Layer):
    def __init__(self, config: SqueezeBertConfig, cin: int, q_groups: int = 1, k_groups: int = 1,
                 v_groups: int = 1):
        super().__init__()
        self.num_attention_heads = config.num_attention_heads
        self.attention_head_size = cin // config.num_attention_heads
        self.query = PointwiseConv1D(cin, cin, q_groups)
        self.key = PointwiseConv1D(cin, cin, k_groups)
        self.value = PointwiseConv1D(cin, cin, v_groups)
        self.dropout = Dropout(config.attention_probs_dropout_prob)

    def split_heads(self, x):
        """[N, C, W] -> [N, heads, head_size, W]"""
        return x.reshape([0, self.num_attention_heads, self.attention_head_size, -1])

    def forward(self, hidden_states, attention_mask=None):
        query = self.split_heads(self.query(hidden_states))
        key = self.split_heads(self.key(hidden_states))
        value = self.split_heads(self.value(hidden_states))
        scores = paddle.matmul(query, key, transpose_x=True)
        probs = self.dropout(attention_probs(scores, attention_mask, 1.0 / math.sqrt(self.attention_head_size)))
        context = paddle.matmul(value, probs, transpose_y=True)  # [N, heads, head_size, W]
        return context.reshape([0, -1, context.shape[-1]]), probs


class SqueezeBertModule(nn.Layer):
    def __init__(self, config: SqueezeBertConfig):
        super().__init__()
        hidden, intermediate = config.hidden_size, config.intermediate_size
        self.attention = SqueezeBertSelfAttention(config, cin=hidden, q_groups=config.q_groups,
                                                  k_groups=config.k_groups, v_groups=config.v_groups)
        self.post_attention = ConvDropoutLayerNorm(hidden, hidden, config.post_attention_groups,
                                                   config.hidden_dropout_prob)
        self.intermediate = ConvActivation(hidden, intermediate, config.intermediate_groups, config.hidden_act)
        self.output = ConvDropoutLayerNorm(intermediate, hidden, config.output_groups, config.hidden_dropout_prob)

    def forward(self, hidden_states, attention_mask=None):
        context, probs = self.attention(hidden_states, attention_mask)
        post_attention_output = self.post_attention(context, hidden_states)
        return self.output(self.intermediate(post_attention_output), post_attention_output), probs


class SqueezeBertEncoder(nn.Layer):
    def __init__(self, config: SqueezeBertConfig):
        super().__init__()
        self.layers = nn.LayerList([SqueezeBertModule(config) for _ in range(config.num_hidden_layers)])
        self.gradient_checkpointing = False

    def forward(self, hidden_states, attention_mask=None, output_hidden_states=False, output_attentions=False):
        """Takes and returns [N, W, C]; runs the layers in [N, C, W]."""
        all_hidden_states = (hidden_states,) if output_hidden_states else None
        all_attentions = () if output_attentions else None
        hidden_states = hidden_states.transpose([0, 2, 1])
        for layer in self.layers:
            if self.gradient_checkpointing and self.training:
                hidden_states, probs = checkpointed(layer, hidden_states, attention_mask)
            else:
                hidden_states, probs = layer(hidden_states, attention_mask)
            if output_hidden_states:
                all_hidden_states += (hidden_states.transpose([0, 2, 1]),)
            if output_attentions:
                all_attentions += (probs,)
        return hidden_states.transpose([0, 2, 1]), all_hidden_states, all_attentions


class SqueezeBertPooler(BertPooler):
    pass


class SqueezeBertPreTrainedModel(PretrainedModel):
    config_class = SqueezeBertConfig
    base_model_prefix = "transformer"


class SqueezeBertModel(SqueezeBertPreTrainedModel):
    initialisable_prefixes = ("pooler.",)

    def __init__(self, config: SqueezeBertConfig):
        super().__init__(config)
        self.embeddings = SqueezeBertEmbeddings(config)
        self.encoder = SqueezeBertEncoder(config)
        self.pooler = SqueezeBertPooler(config)

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                output_hidden_states=False, output_attentions=False, inputs_embeds=None):
        embedding_output = self.embeddings(input_ids, token_type_ids=token_type_ids, position_ids=position_ids,
                                           inputs_embeds=inputs_embeds)
        mask = layer_attention_mask(attention_mask, embedding_output.dtype, self.config.num_attention_heads)
        sequence_output, hidden_states, attentions = self.encoder(
            embedding_output, mask, output_hidden_states=output_hidden_states, output_attentions=output_attentions)
        return BaseModelOutputWithPooling(last_hidden_state=sequence_output, pooler_output=self.pooler(sequence_output),
                                          hidden_states=hidden_states, attentions=attentions)


class SqueezeBertForSequenceClassification(SqueezeBertPreTrainedModel):
    initialisable_prefixes = ("classifier.", "transformer.pooler.")

    def __init__(self, config: SqueezeBertConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.transformer = SqueezeBertModel(config)
        self.dropout = Dropout(config.hidden_dropout_prob)
        self.classifier = Linear(config.hidden_size, config.num_labels)

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, labels=None,
                output_hidden_states=False, output_attentions=False, inputs_embeds=None):
        outputs = self.transformer(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                                   position_ids=position_ids, output_hidden_states=output_hidden_states,
                                   output_attentions=output_attentions, inputs_embeds=inputs_embeds)
        logits = self.classifier(self.dropout(outputs.pooler_output))
        loss = None if labels is None else sequence_classification_loss(self.config, logits, labels)
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states,
                                        attentions=outputs.attentions)


class SqueezeBertForMultipleChoice(SqueezeBertPreTrainedModel):
    initialisable_prefixes = ("classifier.", "transformer.pooler.")

    def __init__(self, config: SqueezeBertConfig):
        super().__init__(config)
        self.transformer = SqueezeBertModel(config)
        self.dropout = Dropout(config.hidden_dropout_prob)
        self.classifier = Linear(config.hidden_size, 1)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None, labels=None,
                output_hidden_states=False, output_attentions=False):
        """Inputs are [batch, choices, seq]; logits [batch, choices]."""
        num_choices = input_ids.shape[1]
        outputs = self.transformer(flatten_choices(input_ids), attention_mask=flatten_choices(attention_mask),
                                   token_type_ids=flatten_choices(token_type_ids),
                                   position_ids=flatten_choices(position_ids),
                                   output_hidden_states=output_hidden_states, output_attentions=output_attentions)
        logits = self.classifier(self.dropout(outputs.pooler_output)).reshape([-1, num_choices])
        loss = None if labels is None else F.cross_entropy(logits, labels.reshape([-1]))
        return MultipleChoiceModelOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states,
                                         attentions=outputs.attentions)


class SqueezeBertForTokenClassification(SqueezeBertPreTrainedModel):
    initialisable_prefixes = ("classifier.", "transformer.pooler.")

    def __init__(self, config: SqueezeBertConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.transformer = SqueezeBertModel(config)
        self.dropout = Dropout(config.hidden_dropout_prob)
        self.classifier = Linear(config.hidden_size, config.num_labels)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None, labels=None,
                output_hidden_states=False, output_attentions=False):
        outputs = self.transformer(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                                   position_ids=position_ids, output_hidden_states=output_hidden_states,
                                   output_attentions=output_attentions)
        logits = self.classifier(self.dropout(outputs.last_hidden_state))
        loss = None if labels is None else token_classification_loss(logits, labels)
        return TokenClassifierOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states,
                                     attentions=outputs.attentions)


class SqueezeBertForQuestionAnswering(SqueezeBertPreTrainedModel):
    initialisable_prefixes = ("qa_outputs.", "transformer.pooler.")

    def __init__(self, config: SqueezeBertConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.transformer = SqueezeBertModel(config)
        self.qa_outputs = Linear(config.hidden_size, config.num_labels)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None,
                start_positions=None, end_positions=None, output_hidden_states=False, output_attentions=False):
        outputs = self.transformer(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                                   position_ids=position_ids, output_hidden_states=output_hidden_states,
                                   output_attentions=output_attentions)
        start_logits, end_logits = self.qa_outputs(outputs.last_hidden_state).split(2, axis=-1)
        start_logits, end_logits = start_logits.squeeze(-1), end_logits.squeeze(-1)
        loss = None
        if start_positions is not None and end_positions is not None:
            loss = question_answering_loss(start_logits, end_logits, start_positions, end_positions)
        return QuestionAnsweringModelOutput(loss=loss, start_logits=start_logits, end_logits=end_logits,
                                            hidden_states=outputs.hidden_states, attentions=outputs.attentions)


class SqueezeBertOnlyMLMHead(BertOnlyMLMHead):
    pass


class SqueezeBertForMaskedLM(SqueezeBertPreTrainedModel):
    initialisable_prefixes = ("cls.", "transformer.pooler.")

    def __init__(self, config: SqueezeBertConfig):
        super().__init__(config)
        self.transformer = SqueezeBertModel(config)
        self.cls = SqueezeBertOnlyMLMHead(config, self.transformer.embeddings.word_embeddings)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None, labels=None,
                output_hidden_states=False, output_attentions=False):
        outputs = self.transformer(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                                   position_ids=position_ids, output_hidden_states=output_hidden_states,
                                   output_attentions=output_attentions)
        logits = self.cls(outputs.last_hidden_state)
        loss = None if labels is None else masked_lm_loss(logits, labels)
        return MaskedLMOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states,
                              attentions=outputs.attentions)
