"""SqueezeBERT conversion table (transformers ``modeling_squeezebert.py`` <-> ``paddleport.models``)."""

from __future__ import annotations

from paddleport.convert.bert import HEADS, tied_decoder
from paddleport.convert.rules import conv1d, embeddings_rules, layernorm, linear
from paddleport.convert.table import ArchitectureTable, ClassLayout

LAYER = "encoder.layers.{layer}"

BASE = (
    *embeddings_rules("embedding_size"),
    *conv1d(f"{LAYER}.attention.query", "hidden_size", "hidden_size", "q_groups"),
    *conv1d(f"{LAYER}.attention.key", "hidden_size", "hidden_size", "k_groups"),
    *conv1d(f"{LAYER}.attention.value", "hidden_size", "hidden_size", "v_groups"),
    *conv1d(f"{LAYER}.post_attention.conv1d", "hidden_size", "hidden_size", "post_attention_groups"),
    *layernorm(f"{LAYER}.post_attention.layernorm"),
    *conv1d(f"{LAYER}.intermediate.conv1d", "intermediate_size", "hidden_size", "intermediate_groups"),
    *conv1d(f"{LAYER}.output.conv1d", "hidden_size", "intermediate_size", "output_groups"),
    *layernorm(f"{LAYER}.output.layernorm"),
)

SQUEEZEBERT = ArchitectureTable(
    model_type="squeezebert",
    base_prefix="transformer.",
    base=BASE,
    pooler=linear("pooler.dense", "hidden_size", "hidden_size"),
    heads=HEADS,  # the classifier and MLM heads are BERT's, under the same names
    classes={
        "SqueezeBertModel": ClassLayout(prefixed=False, pooler=True),
        "SqueezeBertForSequenceClassification": ClassLayout(prefixed=True, pooler=True,
                                                            head="sequence_classification"),
        "SqueezeBertForTokenClassification": ClassLayout(prefixed=True, pooler=True, head="token_classification"),
        "SqueezeBertForQuestionAnswering": ClassLayout(prefixed=True, pooler=True, head="question_answering"),
        "SqueezeBertForMultipleChoice": ClassLayout(prefixed=True, pooler=True, head="multiple_choice"),
        "SqueezeBertForMaskedLM": ClassLayout(prefixed=True, pooler=True, head="masked_lm"),
    },
    tied_to_embeddings=tied_decoder("transformer."),
    buffers=(r"embeddings\.position_ids$",),
)
