"""ALBERT conversion table (transformers ``modeling_albert.py`` <-> ``paddleport.models.modeling_albert``).

Factorised embeddings (width ``embedding_size``, mapped in by ``encoder.embedding_hidden_mapping_in``) and shared
layer groups: each weight of ``albert_layer_groups.{group}.albert_layers.{inner}`` is one tensor in the checkpoint
and one Paddle parameter, used by every layer application of its group (``conversion.json`` records how many).
"""

from __future__ import annotations

from paddleport.convert.rules import embeddings_rules, layernorm, linear, parameter, single_output
from paddleport.convert.table import ArchitectureTable, ClassLayout, PaddleNLPMap, Rule
from paddleport.convert.transforms import LINEAR_BIAS, OUTPUT_EMBEDDING, PARAMETER_BIAS

SHARED_LAYER = "encoder.albert_layer_groups.{group}.albert_layers.{inner}"

BASE = (
    *embeddings_rules("embedding_size"),
    *linear("encoder.embedding_hidden_mapping_in", "hidden_size", "embedding_size"),
    *linear(f"{SHARED_LAYER}.attention.query", "hidden_size", "hidden_size"),
    *linear(f"{SHARED_LAYER}.attention.key", "hidden_size", "hidden_size"),
    *linear(f"{SHARED_LAYER}.attention.value", "hidden_size", "hidden_size"),
    *linear(f"{SHARED_LAYER}.attention.dense", "hidden_size", "hidden_size"),
    *layernorm(f"{SHARED_LAYER}.attention.LayerNorm"),
    *linear(f"{SHARED_LAYER}.ffn", "intermediate_size", "hidden_size"),
    *linear(f"{SHARED_LAYER}.ffn_output", "hidden_size", "intermediate_size"),
    *layernorm(f"{SHARED_LAYER}.full_layer_layer_norm"),
)

MLM_HEAD = (
    *parameter("predictions.bias", lambda c: (c.vocab_size,), PARAMETER_BIAS),
    *linear("predictions.dense", "embedding_size", "hidden_size"),
    *layernorm("predictions.LayerNorm", "embedding_size"),
    *parameter("predictions.decoder.weight", lambda c: (c.vocab_size, c.embedding_size), OUTPUT_EMBEDDING,
               when=lambda c: not c.tie_word_embeddings),
    *parameter("predictions.decoder.bias", lambda c: (c.vocab_size,), LINEAR_BIAS,
               when=lambda c: not c.tie_word_embeddings),
)

HEADS = {
    "sequence_classification": linear("classifier", "num_labels", "hidden_size"),
    "token_classification": linear("classifier", "num_labels", "hidden_size"),
    "question_answering": linear("qa_outputs", "num_labels", "hidden_size"),
    "multiple_choice": single_output("classifier"),
    "masked_lm": MLM_HEAD,
    # AlbertForPreTraining's sentence-order head: known, so that it is reported as dropped, never converted.
    "sentence_order": linear("sop_classifier.classifier", "num_labels", "hidden_size"),
}


def layer_applications(config, hf_name: str) -> int:
    """How many of the ``num_hidden_layers`` applications use the parameter ``hf_name`` (1 outside the groups)."""
    marker = "albert_layer_groups."
    if marker not in hf_name:
        return 1
    group = int(hf_name.split(marker, 1)[1].split(".", 1)[0])
    return sum(config.group_of_layer(layer) == group for layer in range(config.num_hidden_layers))


# PaddleNLP 2.8's ALBERT (``albert/modeling.py``) keeps transformers' names under ``transformer.``, except its
# LayerNorms (``layer_norm``); it also saves the ``embeddings.position_ids`` buffer (skipped by name on reading).
# AlbertForMaskedLM is not mapped (its decoder is tied differently); AlbertForMultipleChoice keeps the names.
ALBERT_PADDLENLP = PaddleNLPMap(
    base_prefix="transformer.",
    rules=(Rule("embeddings.LayerNorm", "embeddings.layer_norm"),
           Rule(f"{SHARED_LAYER}.attention.LayerNorm", f"{SHARED_LAYER}.attention.layer_norm")),
    classes={f"Albert{task}": f"Albert{task}" for task in (
        "Model", "ForSequenceClassification", "ForTokenClassification", "ForQuestionAnswering", "ForMultipleChoice")},
    # AlbertConfig.__init__ (``albert/configuration.py``)
    defaults=dict(
        vocab_size=30000, embedding_size=128, hidden_size=768, num_hidden_layers=12, num_hidden_groups=1,
        num_attention_heads=12, intermediate_size=3072, inner_group_num=1, hidden_act="gelu", hidden_dropout_prob=0,
        attention_probs_dropout_prob=0, max_position_embeddings=512, type_vocab_size=2, initializer_range=0.02,
        layer_norm_eps=1e-12, pad_token_id=0,
    ),
)

ALBERT = ArchitectureTable(
    model_type="albert",
    base_prefix="albert.",
    base=BASE,
    pooler=linear("pooler", "hidden_size", "hidden_size"),
    heads=HEADS,
    classes={
        "AlbertModel": ClassLayout(prefixed=False, pooler=True),
        "AlbertForSequenceClassification": ClassLayout(prefixed=True, pooler=True, head="sequence_classification"),
        "AlbertForTokenClassification": ClassLayout(prefixed=True, pooler=False, head="token_classification"),
        "AlbertForQuestionAnswering": ClassLayout(prefixed=True, pooler=False, head="question_answering"),
        "AlbertForMultipleChoice": ClassLayout(prefixed=True, pooler=True, head="multiple_choice"),
        "AlbertForMaskedLM": ClassLayout(prefixed=True, pooler=False, head="masked_lm"),
    },
    tied_to_embeddings={"predictions.decoder.weight": "albert.embeddings.word_embeddings.weight",
                        "predictions.decoder.bias": "predictions.bias"},
    buffers=(r"embeddings\.position_ids$", r"embeddings\.token_type_ids$"),
    uses=layer_applications,
    paddlenlp=ALBERT_PADDLENLP,
)
