"""ERNIE in Paddle, mirroring transformers' ``modeling_ernie.py``: same classes, sub-layer names and forward.

transformers generates its ERNIE from BERT (``modular_ernie.py``), and so does this file: the encoder, pooler and
MLM head are BERT's layers under ERNIE's names. What ERNIE adds: ERNIE 2.0/3.0's task-type embeddings
(``use_task_id``), a ``task_type_vocab_size`` x ``hidden_size`` table whose rows, picked by the ``task_type_ids``
input (zeros when none is given, as transformers), join the word, token-type and position embeddings' sum.
Parameter names equal the Hugging Face ones; ``nn.Linear`` weights are stored ``[in, out]`` (Paddle's layout).
"""

from __future__ import annotations

from dataclasses import dataclass

import paddle
import paddle.nn.functional as F
from paddle import nn

from paddleport.core.configuration import ErnieConfig
from paddleport.models.layers import Dropout, Linear
from paddleport.models.modeling_bert import (BertEmbeddings, BertEncoder, BertLMPredictionHead, BertPooler,
                                             classifier_dropout)
from paddleport.models.modeling_utils import (
    BaseModelOutputWithPooling,
    MaskedLMOutput,
    ModelOutput,
    MultipleChoiceModelOutput,
    NextSentencePredictorOutput,
    PretrainedModel,
    QuestionAnsweringModelOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
    flatten_choices,
    layer_attention_mask,
    masked_lm_loss,
    question_answering_loss,
    sequence_classification_loss,
    token_classification_loss,
)


class ErnieEmbeddings(BertEmbeddings):
    def __init__(self, config: ErnieConfig):
        super().__init__(config)
        self.use_task_id = config.use_task_id
        if config.use_task_id:
            self.task_type_embeddings = nn.Embedding(config.task_type_vocab_size, config.hidden_size)

    def forward(self, input_ids=None, token_type_ids=None, task_type_ids=None, position_ids=None, inputs_embeds=None):
        # inputs_embeds (as transformers): word vectors given instead of ids, e.g. with prompt-tuning's virtual tokens
        words = self.embed_words(input_ids) if inputs_embeds is None else inputs_embeds
        ids = input_ids if inputs_embeds is None else inputs_embeds[:, :, 0]  # the [batch, seq] shape
        if position_ids is None:
            position_ids = paddle.arange(words.shape[1], dtype="int64").unsqueeze(0)
        if token_type_ids is None:
            token_type_ids = paddle.zeros_like(ids, dtype="int64")
        # transformers' order of the sums: words + token types, then positions, then task types
        embeddings = words + self.token_type_embeddings(token_type_ids)
        embeddings = embeddings + self.position_embeddings(position_ids)
        if self.use_task_id:
            if task_type_ids is None:
                task_type_ids = paddle.zeros_like(ids, dtype="int64")
            embeddings = embeddings + self.task_type_embeddings(task_type_ids)
        return self.dropout(self.LayerNorm(embeddings))


class ErnieEncoder(BertEncoder):
    pass


class ErniePooler(BertPooler):
    pass


class ErnieLMPredictionHead(BertLMPredictionHead):
    pass


class ErnieOnlyMLMHead(nn.Layer):
    def __init__(self, config: ErnieConfig, word_embeddings: nn.Embedding):
        super().__init__()
        self.predictions = ErnieLMPredictionHead(config, word_embeddings)

    def forward(self, sequence_output):
        return self.predictions(sequence_output)


class ErnieOnlyNSPHead(nn.Layer):
    def __init__(self, config: ErnieConfig):
        super().__init__()
        self.seq_relationship = Linear(config.hidden_size, 2)

    def forward(self, pooled_output):
        return self.seq_relationship(pooled_output)


class ErniePreTrainingHeads(nn.Layer):
    def __init__(self, config: ErnieConfig, word_embeddings: nn.Embedding):
        super().__init__()
        self.predictions = ErnieLMPredictionHead(config, word_embeddings)
        self.seq_relationship = Linear(config.hidden_size, 2)

    def forward(self, sequence_output, pooled_output):
        return self.predictions(sequence_output), self.seq_relationship(pooled_output)


class ErniePreTrainedModel(PretrainedModel):
    config_class = ErnieConfig
    base_model_prefix = "ernie"


class ErnieModel(ErniePreTrainedModel):
    initialisable_prefixes = ("pooler.",)

    def __init__(self, config: ErnieConfig, add_pooling_layer: bool = True):
        super().__init__(config)
        self.embeddings = ErnieEmbeddings(config)
        self.encoder = ErnieEncoder(config)
        self.pooler = ErniePooler(config) if add_pooling_layer else None

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, task_type_ids=None, position_ids=None,
                output_hidden_states=False, output_attentions=False, inputs_embeds=None):
        embedding_output = self.embeddings(input_ids, token_type_ids=token_type_ids, task_type_ids=task_type_ids,
                                           position_ids=position_ids, inputs_embeds=inputs_embeds)
        mask = layer_attention_mask(attention_mask, embedding_output.dtype, self.config.num_attention_heads)
        sequence_output, hidden_states, attentions = self.encoder(
            embedding_output, mask, output_hidden_states=output_hidden_states, output_attentions=output_attentions)
        return BaseModelOutputWithPooling(
            last_hidden_state=sequence_output,
            pooler_output=self.pooler(sequence_output) if self.pooler is not None else None,
            hidden_states=hidden_states, attentions=attentions)


class ErnieForSequenceClassification(ErniePreTrainedModel):
    initialisable_prefixes = ("classifier.", "ernie.pooler.")

    def __init__(self, config: ErnieConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.ernie = ErnieModel(config)
        self.dropout = Dropout(classifier_dropout(config))
        self.classifier = Linear(config.hidden_size, config.num_labels)

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, task_type_ids=None,
                position_ids=None, labels=None, output_hidden_states=False, output_attentions=False,
                inputs_embeds=None):
        outputs = self.ernie(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                             task_type_ids=task_type_ids, position_ids=position_ids,
                             output_hidden_states=output_hidden_states, output_attentions=output_attentions,
                             inputs_embeds=inputs_embeds)
        logits = self.classifier(self.dropout(outputs.pooler_output))
        loss = None if labels is None else sequence_classification_loss(self.config, logits, labels)
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states,
                                        attentions=outputs.attentions)


class ErnieForTokenClassification(ErniePreTrainedModel):
    initialisable_prefixes = ("classifier.",)

    def __init__(self, config: ErnieConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.ernie = ErnieModel(config, add_pooling_layer=False)
        self.dropout = Dropout(classifier_dropout(config))
        self.classifier = Linear(config.hidden_size, config.num_labels)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, task_type_ids=None, position_ids=None,
                labels=None, output_hidden_states=False, output_attentions=False):
        outputs = self.ernie(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                             task_type_ids=task_type_ids, position_ids=position_ids,
                             output_hidden_states=output_hidden_states, output_attentions=output_attentions)
        logits = self.classifier(self.dropout(outputs.last_hidden_state))
        loss = None if labels is None else token_classification_loss(logits, labels)
        return TokenClassifierOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states,
                                     attentions=outputs.attentions)


class ErnieForQuestionAnswering(ErniePreTrainedModel):
    initialisable_prefixes = ("qa_outputs.",)

    def __init__(self, config: ErnieConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.ernie = ErnieModel(config, add_pooling_layer=False)
        self.qa_outputs = Linear(config.hidden_size, config.num_labels)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, task_type_ids=None, position_ids=None,
                start_positions=None, end_positions=None, output_hidden_states=False, output_attentions=False):
        outputs = self.ernie(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                             task_type_ids=task_type_ids, position_ids=position_ids,
                             output_hidden_states=output_hidden_states, output_attentions=output_attentions)
        start_logits, end_logits = self.qa_outputs(outputs.last_hidden_state).split(2, axis=-1)
        start_logits, end_logits = start_logits.squeeze(-1), end_logits.squeeze(-1)
        loss = None
        if start_positions is not None and end_positions is not None:
            loss = question_answering_loss(start_logits, end_logits, start_positions, end_positions)
        return QuestionAnsweringModelOutput(loss=loss, start_logits=start_logits, end_logits=end_logits,
                                            hidden_states=outputs.hidden_states, attentions=outputs.attentions)


class ErnieForMultipleChoice(ErniePreTrainedModel):
    initialisable_prefixes = ("classifier.", "ernie.pooler.")

    def __init__(self, config: ErnieConfig):
        super().__init__(config)
        self.ernie = ErnieModel(config)
        self.dropout = Dropout(classifier_dropout(config))
        self.classifier = Linear(config.hidden_size, 1)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, task_type_ids=None, position_ids=None,
                labels=None, output_hidden_states=False, output_attentions=False):
        """Inputs are [batch, choices, seq]; logits [batch, choices]. ``task_type_ids`` is flattened like the
        other inputs (transformers 5 passes it on unflattened, which only its default of None survives)."""
        num_choices = input_ids.shape[1]
        outputs = self.ernie(flatten_choices(input_ids), attention_mask=flatten_choices(attention_mask),
                             token_type_ids=flatten_choices(token_type_ids),
                             task_type_ids=flatten_choices(task_type_ids), position_ids=flatten_choices(position_ids),
                             output_hidden_states=output_hidden_states, output_attentions=output_attentions)
        logits = self.classifier(self.dropout(outputs.pooler_output)).reshape([-1, num_choices])
        loss = None if labels is None else F.cross_entropy(logits, labels.reshape([-1]))
        return MultipleChoiceModelOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states,
                                         attentions=outputs.attentions)


class ErnieForMaskedLM(ErniePreTrainedModel):
    initialisable_prefixes = ("cls.",)

    def __init__(self, config: ErnieConfig):
        super().__init__(config)
        self.ernie = ErnieModel(config, add_pooling_layer=False)
        self.cls = ErnieOnlyMLMHead(config, self.ernie.embeddings.word_embeddings)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, task_type_ids=None, position_ids=None,
                labels=None, output_hidden_states=False, output_attentions=False):
        outputs = self.ernie(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                             task_type_ids=task_type_ids, position_ids=position_ids,
                             output_hidden_states=output_hidden_states, output_attentions=output_attentions)
        logits = self.cls(outputs.last_hidden_state)
        loss = None if labels is None else masked_lm_loss(logits, labels)
        return MaskedLMOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states,
                              attentions=outputs.attentions)


@dataclass
class ErnieForPreTrainingOutput(ModelOutput):
    loss: paddle.Tensor | None = None
    prediction_logits: paddle.Tensor = None
    seq_relationship_logits: paddle.Tensor = None
    hidden_states: tuple[paddle.Tensor, ...] | None = None
    attentions: tuple[paddle.Tensor, ...] | None = None


class ErnieForPreTraining(ErniePreTrainedModel):
    """Masked LM over the tokens and next-sentence prediction over the pooled output; the loss (both labels given)
    is their sum, as transformers'."""

    initialisable_prefixes = ("cls.", "ernie.pooler.")
    main_output_names = ("prediction_logits", "seq_relationship_logits")

    def __init__(self, config: ErnieConfig):
        super().__init__(config)
        self.ernie = ErnieModel(config)
        self.cls = ErniePreTrainingHeads(config, self.ernie.embeddings.word_embeddings)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, task_type_ids=None, position_ids=None,
                labels=None, next_sentence_label=None, output_hidden_states=False, output_attentions=False):
        outputs = self.ernie(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                             task_type_ids=task_type_ids, position_ids=position_ids,
                             output_hidden_states=output_hidden_states, output_attentions=output_attentions)
        prediction_scores, seq_relationship_score = self.cls(outputs.last_hidden_state, outputs.pooler_output)
        loss = None
        if labels is not None and next_sentence_label is not None:
            loss = (masked_lm_loss(prediction_scores, labels)
                    + F.cross_entropy(seq_relationship_score.reshape([-1, 2]), next_sentence_label.reshape([-1])))
        return ErnieForPreTrainingOutput(loss=loss, prediction_logits=prediction_scores,
                                         seq_relationship_logits=seq_relationship_score,
                                         hidden_states=outputs.hidden_states, attentions=outputs.attentions)


class ErnieForNextSentencePrediction(ErniePreTrainedModel):
    initialisable_prefixes = ("cls.", "ernie.pooler.")

    def __init__(self, config: ErnieConfig):
        super().__init__(config)
        self.ernie = ErnieModel(config)
        self.cls = ErnieOnlyNSPHead(config)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, task_type_ids=None, position_ids=None,
                labels=None, output_hidden_states=False, output_attentions=False):
        outputs = self.ernie(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                             task_type_ids=task_type_ids, position_ids=position_ids,
                             output_hidden_states=output_hidden_states, output_attentions=output_attentions)
        logits = self.cls(outputs.pooler_output)
        loss = None if labels is None else F.cross_entropy(logits.reshape([-1, 2]), labels.reshape([-1]))
        return NextSentencePredictorOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states,
                                           attentions=outputs.attentions)
