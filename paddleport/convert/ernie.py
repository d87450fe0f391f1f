"""ERNIE conversion table (transformers ``modeling_ernie.py`` <-> ``paddleport.models.modeling_ernie``): BERT's
embeddings and encoder under ``ernie.``, plus ERNIE 2.0/3.0's task-type embeddings where ``use_task_id``."""

from __future__ import annotations

from paddleport.convert.bert import (
    COMMON_PADDLENLP_TASKS, ENCODER, MASKED_LM_HEAD, PADDLENLP_BERT_DEFAULTS, PADDLENLP_EMBEDDINGS, PADDLENLP_ENCODER,
    PADDLENLP_MLM_HEAD, PADDLENLP_QA, POOLER, paddlenlp_classes, paddlenlp_decoder_copies, tied_decoder,
)
from paddleport.convert.bert import HEADS as BERT_HEADS
from paddleport.convert.rules import embeddings_rules, parameter
from paddleport.convert.table import ArchitectureTable, ClassLayout, PaddleNLPMap
from paddleport.convert.transforms import EMBEDDING, LINEAR_BIAS, LINEAR_WEIGHT

TASK_TYPE_EMBEDDINGS = parameter("embeddings.task_type_embeddings.weight",
                                 lambda c: (c.task_type_vocab_size, c.hidden_size), EMBEDDING,
                                 when=lambda c: c.use_task_id)

BASE = (*embeddings_rules("hidden_size"), *TASK_TYPE_EMBEDDINGS, *ENCODER)

# The next-sentence classifier on the pooled output (is-next / random), of ErnieForPreTraining and
# ErnieForNextSentencePrediction
NEXT_SENTENCE = (*parameter("cls.seq_relationship.weight", lambda c: (2, c.hidden_size), LINEAR_WEIGHT),
                 *parameter("cls.seq_relationship.bias", lambda c: (2,), LINEAR_BIAS))

HEADS = {
    **{task: BERT_HEADS[task] for task in ("sequence_classification", "token_classification",
                                           "question_answering", "multiple_choice", "masked_lm")},
    # ErnieForPreTraining's two heads (masked LM over the tokens + next sentence over the pooled output): a head of
    # its own name, since ELECTRA's "pretraining" head is another one (per-token logits)
    "masked_lm_and_next_sentence": (*MASKED_LM_HEAD, *NEXT_SENTENCE),
    "next_sentence_prediction": NEXT_SENTENCE,
}

# PaddleNLP 2.8's ERNIE (``ernie/modeling.py``): BERT's PaddleNLP names under ``ernie.``, task-type embeddings under
# transformers' name. Its ``task_id`` (the task type PaddleNLP fills in when no task_type_ids are given; transformers
# fills 0) stays in config.json. Its _init_weights sets every LayerNorm's epsilon to 1e-12, whatever
# layer_norm_eps says. ErnieForMaskedLM has BERT's PaddleNLP head; ErnieForPreTraining is PaddleNLP's
# ErnieForPretraining (that head plus cls.seq_relationship, a Linear under transformers' name).
ERNIE_PADDLENLP = PaddleNLPMap(
    base_prefix="ernie.",
    rules=(*PADDLENLP_EMBEDDINGS, *PADDLENLP_ENCODER, *PADDLENLP_QA, *PADDLENLP_MLM_HEAD),
    classes={**paddlenlp_classes("Ernie", *COMMON_PADDLENLP_TASKS, "ForMultipleChoice", "ForMaskedLM"),
             "ErnieForPreTraining": "ErnieForPretraining"},
    # ErnieConfig.__init__ (``ernie/configuration.py``)
    defaults=dict(PADDLENLP_BERT_DEFAULTS, task_type_vocab_size=3, use_task_id=False),
    fixed={"layer_norm_eps": 1e-12},
    copies=paddlenlp_decoder_copies("ernie.", "cls.predictions", "cls.predictions.decoder_bias",
                                    heads=("masked_lm", "masked_lm_and_next_sentence")),
)

ERNIE = ArchitectureTable(
    model_type="ernie",
    base_prefix="ernie.",
    base=BASE,
    pooler=POOLER,
    heads=HEADS,
    classes={
        "ErnieModel": ClassLayout(prefixed=False, pooler=True),
        "ErnieForSequenceClassification": ClassLayout(prefixed=True, pooler=True, head="sequence_classification"),
        "ErnieForTokenClassification": ClassLayout(prefixed=True, pooler=False, head="token_classification"),
        "ErnieForQuestionAnswering": ClassLayout(prefixed=True, pooler=False, head="question_answering"),
        "ErnieForMultipleChoice": ClassLayout(prefixed=True, pooler=True, head="multiple_choice"),
        "ErnieForMaskedLM": ClassLayout(prefixed=True, pooler=False, head="masked_lm"),
        "ErnieForPreTraining": ClassLayout(prefixed=True, pooler=True, head="masked_lm_and_next_sentence"),
        "ErnieForNextSentencePrediction": ClassLayout(prefixed=True, pooler=True, head="next_sentence_prediction"),
    },
    tied_to_embeddings=tied_decoder("ernie."),
    buffers=(r"embeddings\.position_ids$", r"embeddings\.token_type_ids$"),
    paddlenlp=ERNIE_PADDLENLP,
)
