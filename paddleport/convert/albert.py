"""ALBERT conversion table (transformers ``modeling_albert.py`` <-> ``paddleport.models.modeling_albert``).

Factorised embeddings (width ``embedding_size``, mapped in by ``encoder.embedding_hidden_mapping_in``) and shared
layer groups: each weight of ``albert_layer_groups.{group}.albert_layers.{inner}`` is one tensor in the checkpoint
and one Paddle parameter, used by every layer application of its group (``conversion.json`` records how many).
"""

from __future__ import annotations

from paddleport.convert.rules import embeddings_rules, layernorm, linear, parameter, single_output
from paddleport.convert.table import ArchitectureTable, ClassLayout
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
)
