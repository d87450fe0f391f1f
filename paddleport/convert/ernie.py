"""ERNIE conversion table (transformers ``modeling_ernie.py`` <-> ``paddleport.models.modeling_ernie``): BERT's
embeddings and encoder under ``ernie.``, plus ERNIE 2.0/3.0's task-type embeddings where ``use_task_id``."""

from __future__ import annotations

from paddleport.convert.bert import ENCODER, HEADS, POOLER, tied_decoder
from paddleport.convert.rules import embeddings_rules, parameter
from paddleport.convert.table import ArchitectureTable, ClassLayout
from paddleport.convert.transforms import EMBEDDING

TASK_TYPE_EMBEDDINGS = parameter("embeddings.task_type_embeddings.weight",
                                 lambda c: (c.task_type_vocab_size, c.hidden_size), EMBEDDING,
                                 when=lambda c: c.use_task_id)

BASE = (*embeddings_rules("hidden_size"), *TASK_TYPE_EMBEDDINGS, *ENCODER)

ERNIE = ArchitectureTable(
    model_type="ernie",
    base_prefix="ernie.",
    base=BASE,
    pooler=POOLER,
    # BERT's heads under the same names; the next-sentence head of ErnieForPreTraining checkpoints is known, so that
    # converting one into another class reports it as dropped
    heads=HEADS,
    classes={
        "ErnieModel": ClassLayout(prefixed=False, pooler=True),
        "ErnieForSequenceClassification": ClassLayout(prefixed=True, pooler=True, head="sequence_classification"),
        "ErnieForTokenClassification": ClassLayout(prefixed=True, pooler=False, head="token_classification"),
        "ErnieForQuestionAnswering": ClassLayout(prefixed=True, pooler=False, head="question_answering"),
        "ErnieForMultipleChoice": ClassLayout(prefixed=True, pooler=True, head="multiple_choice"),
        "ErnieForMaskedLM": ClassLayout(prefixed=True, pooler=False, head="masked_lm"),
    },
    tied_to_embeddings=tied_decoder("ernie."),
    buffers=(r"embeddings\.position_ids$", r"embeddings\.token_type_ids$"),
)
