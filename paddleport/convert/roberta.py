"""RoBERTa and XLM-RoBERTa conversion tables (transformers ``modeling_roberta.py`` / ``modeling_xlm_roberta.py``
<-> ``paddleport.models.modeling_roberta`` / ``modeling_xlm_roberta``): BERT's encoder under ``roberta.``,
RoBERTa's own heads."""

from __future__ import annotations

from paddleport.convert.bert import (
    BASE, COMMON_PADDLENLP_TASKS, PADDLENLP_BERT_DEFAULTS, PADDLENLP_EMBEDDINGS, PADDLENLP_ENCODER, PADDLENLP_QA, POOLER,
    paddlenlp_classes, paddlenlp_decoder_copies,
)
from paddleport.convert.rules import layernorm, linear, parameter, single_output
from paddleport.convert.table import ArchitectureTable, ClassLayout, PaddleNLPMap
from paddleport.convert.transforms import LINEAR_BIAS, OUTPUT_EMBEDDING, PARAMETER_BIAS

LM_HEAD = (
    *parameter("lm_head.bias", lambda c: (c.vocab_size,), PARAMETER_BIAS),
    *linear("lm_head.dense", "hidden_size", "hidden_size"),
    *layernorm("lm_head.layer_norm"),
    *parameter("lm_head.decoder.weight", lambda c: (c.vocab_size, c.hidden_size), OUTPUT_EMBEDDING,
               when=lambda c: not c.tie_word_embeddings),
    *parameter("lm_head.decoder.bias", lambda c: (c.vocab_size,), LINEAR_BIAS,
               when=lambda c: not c.tie_word_embeddings),
)

HEADS = {
    # RobertaClassificationHead: dense + tanh + out_proj on the <s> token (no pooler)
    "sequence_classification": (*linear("classifier.dense", "hidden_size", "hidden_size"),
                                *linear("classifier.out_proj", "num_labels", "hidden_size")),
    "token_classification": linear("classifier", "num_labels", "hidden_size"),
    "question_answering": linear("qa_outputs", "num_labels", "hidden_size"),
    "multiple_choice": single_output("classifier"),
    "masked_lm": LM_HEAD,
}


# PaddleNLP 2.8's RoBERTa (``roberta/modeling.py``): BERT's PaddleNLP names under ``roberta.``; its config defaults
# (``roberta/configuration.py``) are a Chinese RoBERTa's: pad id 0, 21128 words, LayerNorm eps 1e-12. Its LM
# head keeps transformers' names; the decoder's bias is linked as ``lm_head.bias`` too.
ROBERTA_PADDLENLP = PaddleNLPMap(
    base_prefix="roberta.",
    rules=(*PADDLENLP_EMBEDDINGS, *PADDLENLP_ENCODER, *PADDLENLP_QA),
    classes=paddlenlp_classes("Roberta", *COMMON_PADDLENLP_TASKS, "ForMultipleChoice", "ForMaskedLM"),
    defaults=dict(PADDLENLP_BERT_DEFAULTS, vocab_size=21128),
    copies=paddlenlp_decoder_copies("roberta.", "lm_head", "lm_head.bias"),
)


def roberta_table(model_type: str, class_prefix: str, paddlenlp: PaddleNLPMap | None = None) -> ArchitectureTable:
    """XLM-RoBERTa is RoBERTa under other class names (transformers generates its file from RoBERTa's)."""
    return ArchitectureTable(
        model_type=model_type,
        base_prefix="roberta.",
        base=BASE,
        pooler=POOLER,
        heads=HEADS,
        classes={
            f"{class_prefix}Model": ClassLayout(prefixed=False, pooler=True),
            f"{class_prefix}ForSequenceClassification": ClassLayout(prefixed=True, pooler=False,
                                                                   head="sequence_classification"),
            f"{class_prefix}ForTokenClassification": ClassLayout(prefixed=True, pooler=False,
                                                                head="token_classification"),
            f"{class_prefix}ForQuestionAnswering": ClassLayout(prefixed=True, pooler=False, head="question_answering"),
            f"{class_prefix}ForMultipleChoice": ClassLayout(prefixed=True, pooler=True, head="multiple_choice"),
            f"{class_prefix}ForMaskedLM": ClassLayout(prefixed=True, pooler=False, head="masked_lm"),
        },
        tied_to_embeddings={"lm_head.decoder.weight": "roberta.embeddings.word_embeddings.weight",
                            "lm_head.decoder.bias": "lm_head.bias"},
        buffers=(r"embeddings\.position_ids$", r"embeddings\.token_type_ids$"),
        paddlenlp=paddlenlp,
    )


ROBERTA = roberta_table("roberta", "Roberta", ROBERTA_PADDLENLP)
XLM_ROBERTA = roberta_table("xlm-roberta", "XLMRoberta")
