"""XLM-RoBERTa in Paddle: RoBERTa under XLM-RoBERTa's class names and config (transformers generates its
``modeling_xlm_roberta.py`` from RoBERTa's the same way)."""

from __future__ import annotations

from paddleport.core.configuration import XLMRobertaConfig
from paddleport.models import modeling_roberta as roberta


class XLMRobertaModel(roberta.RobertaModel):
    config_class = XLMRobertaConfig


class XLMRobertaForSequenceClassification(roberta.RobertaForSequenceClassification):
    config_class = XLMRobertaConfig


class XLMRobertaForTokenClassification(roberta.RobertaForTokenClassification):
    config_class = XLMRobertaConfig


class XLMRobertaForQuestionAnswering(roberta.RobertaForQuestionAnswering):
    config_class = XLMRobertaConfig


class XLMRobertaForMultipleChoice(roberta.RobertaForMultipleChoice):
    config_class = XLMRobertaConfig


class XLMRobertaForMaskedLM(roberta.RobertaForMaskedLM):
    config_class = XLMRobertaConfig
