"""RoBERTa in Paddle, mirroring transformers' ``modeling_roberta.py``: same classes, sub-layer names and forward.

The encoder is BERT's (transformers copies it too); what differs: positions count from ``pad_token_id + 1`` and
skip padding, the sequence classifier is ``RobertaClassificationHead`` on ``<s>`` (no pooler), the MLM head is
``lm_head``. Parameter names equal the Hugging Face ones; ``nn.Linear`` weights are stored ``[in, out]``.
"""

from __future__ import annotations

import paddle
import paddle.nn.functional as F
from paddle import nn

from paddleport.core.configuration import RobertaConfig
from paddleport.models.layers import Dropout, LayerNorm, Linear, gelu
from paddleport.models.modeling_bert import BertEmbeddings, BertEncoder, BertPooler, classifier_dropout
from paddleport.models.modeling_utils import (
    BaseModelOutputWithPooling,
    MaskedLMOutput,
    MultipleChoiceModelOutput,
    PretrainedModel,
    QuestionAnsweringModelOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
    UntiedDecoder,
    flatten_choices,
    layer_attention_mask,
    masked_lm_loss,
    question_answering_loss,
    sequence_classification_loss,
    token_classification_loss,
)


def create_position_ids_from_input_ids(input_ids, padding_idx: int):
    """Positions count from ``padding_idx + 1`` over the non-padding tokens; padding keeps ``padding_idx``."""
    mask = (input_ids != padding_idx).astype("int64")
    return paddle.cumsum(mask, axis=1) * mask + padding_idx


class RobertaEmbeddings(BertEmbeddings):
    def __init__(self, config: RobertaConfig):
        super().__init__(config)
        self.padding_idx = config.pad_token_id
        self.position_embeddings.padding_row = config.pad_token_id  # torch's padding_idx: zero at init

    def forward(self, input_ids=None, token_type_ids=None, position_ids=None, inputs_embeds=None):
        words = self.embed_words(input_ids) if inputs_embeds is None else inputs_embeds
        if position_ids is None and inputs_embeds is None:
            position_ids = create_position_ids_from_input_ids(input_ids, self.padding_idx)
        elif position_ids is None:  # transformers: no ids to find the padding in, so every position counts
            start = self.padding_idx + 1
            position_ids = paddle.arange(start, start + words.shape[1], dtype="int64").unsqueeze(0)
        if token_type_ids is None:
            ids = input_ids if inputs_embeds is None else inputs_embeds[:, :, 0]
            token_type_ids = paddle.zeros_like(ids, dtype="int64")
        embeddings = (words + self.token_type_embeddings(token_type_ids)
                      + self.embed_positions(position_ids))
        return self.dropout(self.LayerNorm(embeddings))

    def embed_positions(self, position_ids):
        """Position embeddings whose padding row gets no gradient, like torch's ``padding_idx``."""
        embedded = self.position_embeddings(position_ids)
        return paddle.where((position_ids == self.padding_idx).unsqueeze(-1), embedded.detach(), embedded)


class RobertaEncoder(BertEncoder):
    pass


class RobertaPooler(BertPooler):
    pass


class RobertaPreTrainedModel(PretrainedModel):
    config_class = RobertaConfig
    base_model_prefix = "roberta"


class RobertaModel(RobertaPreTrainedModel):
    initialisable_prefixes = ("pooler.",)

    def __init__(self, config: RobertaConfig, add_pooling_layer: bool = True):
        super().__init__(config)
        self.embeddings = RobertaEmbeddings(config)
        self.encoder = RobertaEncoder(config)
        self.pooler = RobertaPooler(config) if add_pooling_layer else None

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


class RobertaLMHead(nn.Layer):
    """dense -> gelu -> layer_norm -> decoder; the decoder is the word-embedding matrix plus ``bias`` when tied."""

    def __init__(self, config: RobertaConfig, word_embeddings: nn.Embedding):
        super().__init__()
        self.dense = Linear(config.hidden_size, config.hidden_size)
        self.layer_norm = LayerNorm(config.hidden_size, epsilon=config.layer_norm_eps)
        self.bias = self.create_parameter([config.vocab_size], is_bias=True)
        self._word_embeddings = [word_embeddings]  # a list, so the embedding is not registered twice
        self.decoder = None if config.tie_word_embeddings else UntiedDecoder(config)

    def forward(self, features):
        x = self.layer_norm(gelu(self.dense(features)))
        if self.decoder is not None:
            return self.decoder(x)
        return paddle.matmul(x, self._word_embeddings[0].weight, transpose_y=True) + self.bias


class RobertaForMaskedLM(RobertaPreTrainedModel):
    initialisable_prefixes = ("lm_head.",)

    def __init__(self, config: RobertaConfig):
        super().__init__(config)
        self.roberta = RobertaModel(config, add_pooling_layer=False)
        self.lm_head = RobertaLMHead(config, self.roberta.embeddings.word_embeddings)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None, labels=None,
                output_hidden_states=False, output_attentions=False):
        outputs = self.roberta(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                               position_ids=position_ids, output_hidden_states=output_hidden_states,
                               output_attentions=output_attentions)
        logits = self.lm_head(outputs.last_hidden_state)
        loss = None if labels is None else masked_lm_loss(logits, labels)
        return MaskedLMOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states,
                              attentions=outputs.attentions)


class RobertaClassificationHead(nn.Layer):
    """Head for sentence-level classification tasks: on the ``<s>`` token, dense + tanh + out_proj."""

    def __init__(self, config: RobertaConfig):
        super().__init__()
        self.dense = Linear(config.hidden_size, config.hidden_size)
        self.dropout = Dropout(classifier_dropout(config))
        self.out_proj = Linear(config.hidden_size, config.num_labels)

    def forward(self, features):
        x = self.dropout(features[:, 0, :])
        x = self.dropout(paddle.tanh(self.dense(x)))
        return self.out_proj(x)


class RobertaForSequenceClassification(RobertaPreTrainedModel):
    initialisable_prefixes = ("classifier.",)

    def __init__(self, config: RobertaConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.roberta = RobertaModel(config, add_pooling_layer=False)
        self.classifier = RobertaClassificationHead(config)

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, labels=None,
                output_hidden_states=False, output_attentions=False, inputs_embeds=None):
        outputs = self.roberta(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                               position_ids=position_ids, output_hidden_states=output_hidden_states,
                               output_attentions=output_attentions, inputs_embeds=inputs_embeds)
        logits = self.classifier(outputs.last_hidden_state)
        loss = None if labels is None else sequence_classification_loss(self.config, logits, labels)
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states,
                                        attentions=outputs.attentions)


class RobertaForMultipleChoice(RobertaPreTrainedModel):
    initialisable_prefixes = ("classifier.", "roberta.pooler.")

    def __init__(self, config: RobertaConfig):
        super().__init__(config)
        self.roberta = RobertaModel(config)
        self.dropout = Dropout(config.hidden_dropout_prob)
        self.classifier = Linear(config.hidden_size, 1)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None, labels=None,
                output_hidden_states=False, output_attentions=False):
        """Inputs are [batch, choices, seq]; logits [batch, choices]."""
        num_choices = input_ids.shape[1]
        outputs = self.roberta(flatten_choices(input_ids), attention_mask=flatten_choices(attention_mask),
                               token_type_ids=flatten_choices(token_type_ids),
                               position_ids=flatten_choices(position_ids), output_hidden_states=output_hidden_states,
                               output_attentions=output_attentions)
        logits = self.classifier(self.dropout(outputs.pooler_output)).reshape([-1, num_choices])
        loss = None if labels is None else F.cross_entropy(logits, labels.reshape([-1]))
        return MultipleChoiceModelOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states,
                                         attentions=outputs.attentions)


class RobertaForTokenClassification(RobertaPreTrainedModel):
    initialisable_prefixes = ("classifier.",)

    def __init__(self, config: RobertaConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.roberta = RobertaModel(config, add_pooling_layer=False)
        self.dropout = Dropout(classifier_dropout(config))
        self.classifier = Linear(config.hidden_size, config.num_labels)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None, labels=None,
                output_hidden_states=False, output_attentions=False):
        outputs = self.roberta(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                               position_ids=position_ids, output_hidden_states=output_hidden_states,
                               output_attentions=output_attentions)
        logits = self.classifier(self.dropout(outputs.last_hidden_state))
        loss = None if labels is None else token_classification_loss(logits, labels)
        return TokenClassifierOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states,
                                     attentions=outputs.attentions)


class RobertaForQuestionAnswering(RobertaPreTrainedModel):
    initialisable_prefixes = ("qa_outputs.",)

    def __init__(self, config: RobertaConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.roberta = RobertaModel(config, add_pooling_layer=False)
        self.qa_outputs = Linear(config.hidden_size, config.num_labels)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None,
                start_positions=None, end_positions=None, output_hidden_states=False, output_attentions=False):
        outputs = self.roberta(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                               position_ids=position_ids, output_hidden_states=output_hidden_states,
                               output_attentions=output_attentions)
        start_logits, end_logits = self.qa_outputs(outputs.last_hidden_state).split(2, axis=-1)
        start_logits, end_logits = start_logits.squeeze(-1), end_logits.squeeze(-1)
        loss = None
        if start_positions is not None and end_positions is not None:
            loss = question_answering_loss(start_logits, end_logits, start_positions, end_positions)
        return QuestionAnsweringModelOutput(loss=loss, start_logits=start_logits, end_logits=end_logits,
                                            hidden_states=outputs.hidden_states, attentions=outputs.attentions)
