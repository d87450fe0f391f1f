"""ELECTRA conversion table (transformers ``modeling_electra.py`` <-> ``paddleport.models.modeling_electra``).

BERT's encoder under ``electra.``, embeddings of width ``embedding_size`` projected to ``hidden_size`` by
``embeddings_project`` when the two differ (generators, small models); no pooler.
"""

from __future__ import annotations

from paddleport.convert.bert import (
    COMMON_PADDLENLP_TASKS, ENCODER, PADDLENLP_BERT_DEFAULTS, PADDLENLP_EMBEDDINGS, PADDLENLP_ENCODER, PADDLENLP_QA,
    paddlenlp_classes,
)
from paddleport.convert.rules import embeddings_rules, layernorm, linear, parameter, single_output
from paddleport.convert.table import ArchitectureTable, ClassLayout, PaddleNLPMap
from paddleport.convert.transforms import LINEAR_BIAS, LINEAR_WEIGHT, OUTPUT_EMBEDDING


def _projected(config) -> bool:
    return config.embedding_size != config.hidden_size


BASE = (
    *embeddings_rules("embedding_size"),
    *parameter("embeddings_project.weight", lambda c: (c.hidden_size, c.embedding_size), LINEAR_WEIGHT,
               when=_projected),
    *parameter("embeddings_project.bias", lambda c: (c.hidden_size,), LINEAR_BIAS, when=_projected),
    *ENCODER,
)

HEADS = {
    # ElectraClassificationHead: dense + gelu + out_proj on the first token
    "sequence_classification": (*linear("classifier.dense", "hidden_size", "hidden_size"),
                                *linear("classifier.out_proj", "num_labels", "hidden_size")),
    "token_classification": linear("classifier", "num_labels", "hidden_size"),
    "question_answering": linear("qa_outputs", "num_labels", "hidden_size"),
    "multiple_choice": (
        *parameter("sequence_summary.summary.weight", lambda c: (c.summary_size, c.hidden_size), LINEAR_WEIGHT,
                   when=lambda c: c.summary_use_proj),
        *parameter("sequence_summary.summary.bias", lambda c: (c.summary_size,), LINEAR_BIAS,
                   when=lambda c: c.summary_use_proj),
        *single_output("classifier"),
    ),
    "masked_lm": (
        *linear("generator_predictions.dense", "embedding_size", "hidden_size"),
        *layernorm("generator_predictions.LayerNorm", "embedding_size"),
        *parameter("generator_lm_head.bias", lambda c: (c.vocab_size,), LINEAR_BIAS),
        *parameter("generator_lm_head.weight", lambda c: (c.vocab_size, c.embedding_size), OUTPUT_EMBEDDING,
                   when=lambda c: not c.tie_word_embeddings),
    ),
    "pretraining": (*linear("discriminator_predictions.dense", "hidden_size", "hidden_size"),
                    *single_output("discriminator_predictions.dense_prediction")),
}

# PaddleNLP 2.8's ELECTRA (``electra/modeling.py``): BERT's PaddleNLP encoder names under ``electra.``; the
# discriminator is its ElectraDiscriminator (same head names). Its generator (ElectraForMaskedLM: a separate
# ``generator_lm_head_bias``) and multiple-choice head (``sequence_summary.dense``) are not mapped.
ELECTRA_PADDLENLP = PaddleNLPMap(
    base_prefix="electra.",
    rules=(*PADDLENLP_EMBEDDINGS, *PADDLENLP_ENCODER, *PADDLENLP_QA),
    classes={**paddlenlp_classes("Electra", *COMMON_PADDLENLP_TASKS), "ElectraForPreTraining": "ElectraDiscriminator"},
    defaults=dict(PADDLENLP_BERT_DEFAULTS, vocab_size=22608, embedding_size=768, type_vocab_size=2),
)

ELECTRA = ArchitectureTable(
    model_type="electra",
    base_prefix="electra.",
    base=BASE,
    pooler=(),
    heads=HEADS,
    classes={
        "ElectraModel": ClassLayout(prefixed=False, pooler=False),
        "ElectraForSequenceClassification": ClassLayout(prefixed=True, pooler=False, head="sequence_classification"),
        "ElectraForTokenClassification": ClassLayout(prefixed=True, pooler=False, head="token_classification"),
        "ElectraForQuestionAnswering": ClassLayout(prefixed=True, pooler=False, head="question_answering"),
        "ElectraForMultipleChoice": ClassLayout(prefixed=True, pooler=False, head="multiple_choice"),
        "ElectraForMaskedLM": ClassLayout(prefixed=True, pooler=False, head="masked_lm"),
        "ElectraForPreTraining": ClassLayout(prefixed=True, pooler=False, head="pretraining"),
    },
    tied_to_embeddings={"generator_lm_head.weight": "electra.embeddings.word_embeddings.weight"},
    buffers=(r"embeddings\.position_ids$", r"embeddings\.token_type_ids$"),
    paddlenlp=ELECTRA_PADDLENLP,
)
