"""SqueezeBERT in Paddle, mirroring transformers' ``modeling_squeezebert.py``.

The encoder runs in [batch, channels, seq] (NCW) layout with grouped 1x1 ``Conv1D``s, as the original.
Parameter names equal the Hugging Face ones; Conv1D weights keep torch's ``[out, in/groups, 1]`` layout.
"""

from __future__ import annotations

import math

import paddle.nn.functional as F
from paddle import nn

from paddleport.core.configuration import SqueezeBertConfig
from paddleport.models.layers import (ChannelLayerNorm, Dropout, Linear, PointwiseConv1D, channel_attention, gelu,
                                      pointwise_conv_gelu, pointwise_conv_residual_layer_norm)
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
        # layernorm(dropout(conv1d(hidden_states)) + input_tensor), one kernel when nothing is trained
        return pointwise_conv_residual_layer_norm(self.conv1d, self.dropout, self.layernorm, hidden_states,
                                                  input_tensor)


class ConvActivation(nn.Layer):
    def __init__(self, cin: int, cout: int, groups: int, act: str):
        super().__init__()
        self.conv1d = PointwiseConv1D(cin, cout, groups)
        self.act = ACT2FN[act]

    def forward(self, x):
        if self.act is gelu:  # one kernel when nothing is trained
            return pointwise_conv_gelu(self.conv1d, x)
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

    def forward(self, hidden_states, attention_mask=None, output_attentions=False):
        """Returns the context [N, C, W] and, with ``output_attentions``, the scaled and masked attention scores
        before the softmax (as transformers' SqueezeBERT does), else None."""
        return channel_attention(self.query(hidden_states), self.key(hidden_states), self.value(hidden_states),
                                 attention_mask, 1.0 / math.sqrt(self.attention_head_size), self.num_attention_heads,
                                 self.dropout, output_attentions)


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

    def forward(self, hidden_states, attention_mask=None, output_attentions=False):
        context, scores = self.attention(hidden_states, attention_mask, output_attentions)
        post_attention_output = self.post_attention(context, hidden_states)
        return self.output(self.intermediate(post_attention_output), post_attention_output), scores


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
                # every output of a recomputed layer must be a tensor: the scores are returned (and dropped below)
                hidden_states, scores = checkpointed(layer, hidden_states, attention_mask, True)
            else:
                hidden_states, scores = layer(hidden_states, attention_mask, output_attentions)
            if output_hidden_states:
                all_hidden_states += (hidden_states.transpose([0, 2, 1]),)
            if output_attentions:
                all_attentions += (scores,)
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
