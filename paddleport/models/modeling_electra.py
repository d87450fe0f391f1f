"""ELECTRA in Paddle, mirroring transformers' ``modeling_electra.py``: same classes, sub-layer names and forward.

The encoder is BERT's; the embeddings have width ``embedding_size``, projected to ``hidden_size`` by
``embeddings_project`` when the two differ; no pooler. ``ElectraForPreTraining`` is the discriminator,
``ElectraForMaskedLM`` the generator. Parameter names equal the Hugging Face ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import paddle
import paddle.nn.functional as F
from paddle import nn

from paddleport.core.configuration import ElectraConfig
from paddleport.models.layers import Dropout, LayerNorm, Linear, gelu
from paddleport.models.modeling_bert import BertEmbeddings, BertEncoder, classifier_dropout
from paddleport.models.modeling_utils import (
    ACT2FN,
    BaseModelOutput,
    MaskedLMOutput,
    ModelOutput,
    MultipleChoiceModelOutput,
    PretrainedModel,
    QuestionAnsweringModelOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
    flatten_choices,
    layer_attention_mask,
    masked_lm_loss,
    output_decoder,
    question_answering_loss,
    sequence_classification_loss,
    token_classification_loss,
)


@dataclass
class ElectraForPreTrainingOutput(ModelOutput):
    loss: paddle.Tensor | None = None
    logits: paddle.Tensor = None
    hidden_states: tuple[paddle.Tensor, ...] | None = None
    attentions: tuple[paddle.Tensor, ...] | None = None


class ElectraEmbeddings(BertEmbeddings):
    """BERT's embeddings at width ``embedding_size`` (their LayerNorm too)."""

    def __init__(self, config: ElectraConfig):
        super().__init__(config, embedding_size=config.embedding_size)
        self.LayerNorm = LayerNorm(config.embedding_size, epsilon=config.layer_norm_eps)


class ElectraEncoder(BertEncoder):
    pass


class ElectraDiscriminatorPredictions(nn.Layer):
    """Prediction module for the discriminator, made up of two dense layers."""

    def __init__(self, config: ElectraConfig):
        super().__init__()
        self.dense = Linear(config.hidden_size, config.hidden_size)
        self.activation = ACT2FN[config.hidden_act]
        self.dense_prediction = Linear(config.hidden_size, 1)

    def forward(self, discriminator_hidden_states):
        return self.dense_prediction(self.activation(self.dense(discriminator_hidden_states))).squeeze(-1)


class ElectraGeneratorPredictions(nn.Layer):
    """Prediction module for the generator, made up of two dense layers."""

    def __init__(self, config: ElectraConfig):
        super().__init__()
        self.LayerNorm = LayerNorm(config.embedding_size, epsilon=config.layer_norm_eps)
        self.dense = Linear(config.hidden_size, config.embedding_size)

    def forward(self, generator_hidden_states):
        return self.LayerNorm(gelu(self.dense(generator_hidden_states)))


class ElectraPreTrainedModel(PretrainedModel):
    config_class = ElectraConfig
    base_model_prefix = "electra"


class ElectraModel(ElectraPreTrainedModel):
    def __init__(self, config: ElectraConfig):
        super().__init__(config)
        self.embeddings = ElectraEmbeddings(config)
        if config.embedding_size != config.hidden_size:
            self.embeddings_project = Linear(config.embedding_size, config.hidden_size)
        self.encoder = ElectraEncoder(config)

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                output_hidden_states=False, output_attentions=False, inputs_embeds=None):
        embedding_output = self.embeddings(input_ids, token_type_ids=token_type_ids, position_ids=position_ids,
                                           inputs_embeds=inputs_embeds)
        if hasattr(self, "embeddings_project"):
            embedding_output = self.embeddings_project(embedding_output)
        mask = layer_attention_mask(attention_mask, embedding_output.dtype, self.config.num_attention_heads)
        sequence_output, hidden_states, attentions = self.encoder(
            embedding_output, mask, output_hidden_states=output_hidden_states, output_attentions=output_attentions)
        return BaseModelOutput(last_hidden_state=sequence_output, hidden_states=hidden_states, attentions=attentions)


class ElectraClassificationHead(nn.Layer):
    """Head for sentence-level classification tasks: on the first token, dense + gelu + out_proj."""

    def __init__(self, config: ElectraConfig):
        super().__init__()
        self.dense = Linear(config.hidden_size, config.hidden_size)
        self.dropout = Dropout(classifier_dropout(config))
        self.out_proj = Linear(config.hidden_size, config.num_labels)

    def forward(self, features):
        x = self.dropout(features[:, 0, :])
        x = self.dropout(gelu(self.dense(x)))  # although BERT uses tanh here, the ELECTRA authors used gelu
        return self.out_proj(x)


class ElectraSequenceSummary(nn.Layer):
    """A single vector per sequence (first / last token or mean), projected and activated as the config says."""

    def __init__(self, config: ElectraConfig):
        super().__init__()
        self.summary_type = config.summary_type
        self.summary = Linear(config.hidden_size, config.summary_size) if config.summary_use_proj else None
        self.activation = ACT2FN[config.summary_activation] if config.summary_activation else None
        self.first_dropout = Dropout(config.summary_first_dropout)
        self.last_dropout = Dropout(config.summary_last_dropout)

    def forward(self, hidden_states):
        if self.summary_type == "first":
            output = hidden_states[:, 0]
        elif self.summary_type == "last":
            output = hidden_states[:, -1]
        else:
            output = hidden_states.mean(axis=1)
        output = self.first_dropout(output)
        if self.summary is not None:
            output = self.summary(output)
        if self.activation is not None:
            output = self.activation(output)
        return self.last_dropout(output)


class ElectraForSequenceClassification(ElectraPreTrainedModel):
    initialisable_prefixes = ("classifier.",)

    def __init__(self, config: ElectraConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.electra = ElectraModel(config)
        self.classifier = ElectraClassificationHead(config)

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, labels=None,
                output_hidden_states=False, output_attentions=False, inputs_embeds=None):
        outputs = self.electra(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                               position_ids=position_ids, output_hidden_states=output_hidden_states,
                               output_attentions=output_attentions, inputs_embeds=inputs_embeds)
        logits = self.classifier(outputs.last_hidden_state)
        loss = None if labels is None else sequence_classification_loss(self.config, logits, labels)
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states,
                                        attentions=outputs.attentions)


class ElectraForPreTraining(ElectraPreTrainedModel):
    """The discriminator: one "replaced?" logit per token; BCE loss over the tokens the attention mask keeps."""

    initialisable_prefixes = ("discriminator_predictions.",)

    def __init__(self, config: ElectraConfig):
        super().__init__(config)
        self.electra = ElectraModel(config)
        self.discriminator_predictions = ElectraDiscriminatorPredictions(config)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None, labels=None,
                output_hidden_states=False, output_attentions=False):
        outputs = self.electra(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                               position_ids=position_ids, output_hidden_states=output_hidden_states,
                               output_attentions=output_attentions)
        logits = self.discriminator_predictions(outputs.last_hidden_state)
        loss = None
        if labels is not None:
            losses = F.binary_cross_entropy_with_logits(logits, labels.astype(logits.dtype), reduction="none")
            if attention_mask is None:
                loss = losses.mean()
            else:
                kept = (attention_mask == 1).astype(losses.dtype)
                loss = (losses * kept).sum() / kept.sum()
        return ElectraForPreTrainingOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states,
                                           attentions=outputs.attentions)


class ElectraForMaskedLM(ElectraPreTrainedModel):
    """The generator: vocabulary logits through ``generator_predictions`` and ``generator_lm_head``."""

    initialisable_prefixes = ("generator_predictions.", "generator_lm_head.")

    def __init__(self, config: ElectraConfig):
        super().__init__(config)
        self.electra = ElectraModel(config)
        self.generator_predictions = ElectraGeneratorPredictions(config)
        self.generator_lm_head = output_decoder(config, self.electra.embeddings.word_embeddings)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None, labels=None,
                output_hidden_states=False, output_attentions=False):
        outputs = self.electra(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                               position_ids=position_ids, output_hidden_states=output_hidden_states,
                               output_attentions=output_attentions)
        logits = self.generator_lm_head(self.generator_predictions(outputs.last_hidden_state))
        loss = None if labels is None else masked_lm_loss(logits, labels)
        return MaskedLMOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states,
                              attentions=outputs.attentions)


class ElectraForTokenClassification(ElectraPreTrainedModel):
    initialisable_prefixes = ("classifier.",)

    def __init__(self, config: ElectraConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.electra = ElectraModel(config)
        self.dropout = Dropout(classifier_dropout(config))
        self.classifier = Linear(config.hidden_size, config.num_labels)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None, labels=None,
                output_hidden_states=False, output_attentions=False):
        outputs = self.electra(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                               position_ids=position_ids, output_hidden_states=output_hidden_states,
                               output_attentions=output_attentions)
        logits = self.classifier(self.dropout(outputs.last_hidden_state))
        loss = None if labels is None else token_classification_loss(logits, labels)
        return TokenClassifierOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states,
                                     attentions=outputs.attentions)


class ElectraForQuestionAnswering(ElectraPreTrainedModel):
    initialisable_prefixes = ("qa_outputs.",)

    def __init__(self, config: ElectraConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.electra = ElectraModel(config)
        self.qa_outputs = Linear(config.hidden_size, config.num_labels)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None,
                start_positions=None, end_positions=None, output_hidden_states=False, output_attentions=False):
        outputs = self.electra(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                               position_ids=position_ids, output_hidden_states=output_hidden_states,
                               output_attentions=output_attentions)
        start_logits, end_logits = (part.squeeze(-1) for part in
                                    self.qa_outputs(outputs.last_hidden_state).split(2, axis=-1))
        loss = None
        if start_positions is not None and end_positions is not None:
            loss = question_answering_loss(start_logits, end_logits, start_positions, end_positions)
        return QuestionAnsweringModelOutput(loss=loss, start_logits=start_logits, end_logits=end_logits,
                                            hidden_states=outputs.hidden_states, attentions=outputs.attentions)


class ElectraForMultipleChoice(ElectraPreTrainedModel):
    initialisable_prefixes = ("sequence_summary.", "classifier.")

    def __init__(self, config: ElectraConfig):
        super().__init__(config)
        self.electra = ElectraModel(config)
        self.sequence_summary = ElectraSequenceSummary(config)
        self.classifier = Linear(config.hidden_size, 1)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None, labels=None,
                output_hidden_states=False, output_attentions=False):
        """Inputs are [batch, choices, seq]; logits [batch, choices]."""
        num_choices = input_ids.shape[1]
        outputs = self.electra(flatten_choices(input_ids), attention_mask=flatten_choices(attention_mask),
                               token_type_ids=flatten_choices(token_type_ids),
                               position_ids=flatten_choices(position_ids), output_hidden_states=output_hidden_states,
                               output_attentions=output_attentions)
        logits = self.classifier(self.sequence_summary(outputs.last_hidden_state)).reshape([-1, num_choices])
        loss = None if labels is None else F.cross_entropy(logits, labels.reshape([-1]))
        return MultipleChoiceModelOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states,
                                         attentions=outputs.attentions)
