"""DeBERTa-v2/v3 conversion table (transformers ``modeling_deberta_v2.py`` <-> ``paddleport.models.modeling_deberta_v2``).

Which parameters exist follows the config as transformers builds them: absolute positions only with
``position_biased_input``, token types only with ``type_vocab_size`` > 0, ``embed_proj`` (no bias) when
``embedding_size`` differs from ``hidden_size``, the relative-position embeddings with ``relative_attention``,
separate ``pos_key_proj``/``pos_query_proj`` unless ``share_att_key``, the encoder's LayerNorm with ``norm_rel_ebd``
"layer_norm", the first layer's ``ConvLayer`` with ``conv_kernel_size`` > 0. The classification heads pool with
``ContextPooler`` (``pooler.dense``); masked LM is the legacy ``cls.predictions`` head or, with ``legacy`` false,
``lm_predictions.lm_head`` (always tied to the word embeddings).
"""

from __future__ import annotations

from dataclasses import replace

from paddleport.convert.bert import tied_decoder
from paddleport.convert.rules import embedding, layernorm, linear, parameter, single_output
from paddleport.convert.table import ArchitectureTable, ClassLayout, PaddleNLPMap
from paddleport.convert.transforms import (
    CONV1D_BIAS, CONV1D_WEIGHT, EMBEDDING, LINEAR_BIAS, LINEAR_WEIGHT, OUTPUT_EMBEDDING, PARAMETER_BIAS,
)

LAYER = "encoder.layer.{layer}"
ATTENTION = f"{LAYER}.attention.self"


def _when(rules, condition):
    """``rules`` limited to configs where ``condition`` holds too."""
    return tuple(replace(rule, when=lambda c, own=rule.when: own(c) and condition(c)) for rule in rules)


def _relative(kind: str):
    """Whether a layer has its own projection of the relative embeddings for ``kind`` (c2p or p2c)."""
    return lambda c: (c.relative_attention and not c.share_att_key and kind in c.position_attention_types)


def _conv(c) -> bool:
    return c.conv_kernel_size > 0


EMBEDDINGS = (
    *embedding("embeddings.word_embeddings", "vocab_size", "embedding_size"),
    *_when(embedding("embeddings.position_embeddings", "max_position_embeddings", "embedding_size"),
           lambda c: c.position_biased_input),
    *_when(embedding("embeddings.token_type_embeddings", "type_vocab_size", "embedding_size"),
           lambda c: c.type_vocab_size > 0),
    *parameter("embeddings.embed_proj.weight", lambda c: (c.hidden_size, c.embedding_size), LINEAR_WEIGHT,
               when=lambda c: c.embedding_size != c.hidden_size),
    *layernorm("embeddings.LayerNorm"),
)

ENCODER = (
    *linear(f"{ATTENTION}.query_proj", "hidden_size", "hidden_size"),
    *linear(f"{ATTENTION}.key_proj", "hidden_size", "hidden_size"),
    *linear(f"{ATTENTION}.value_proj", "hidden_size", "hidden_size"),
    *_when(linear(f"{ATTENTION}.pos_key_proj", "hidden_size", "hidden_size"), _relative("c2p")),
    *_when(linear(f"{ATTENTION}.pos_query_proj", "hidden_size", "hidden_size"), _relative("p2c")),
    *linear(f"{LAYER}.attention.output.dense", "hidden_size", "hidden_size"),
    *layernorm(f"{LAYER}.attention.output.LayerNorm"),
    *linear(f"{LAYER}.intermediate.dense", "intermediate_size", "hidden_size"),
    *linear(f"{LAYER}.output.dense", "hidden_size", "intermediate_size"),
    *layernorm(f"{LAYER}.output.LayerNorm"),
    *parameter("encoder.rel_embeddings.weight", lambda c: (2 * c.relative_span, c.hidden_size), EMBEDDING,
               when=lambda c: c.relative_attention),
    *_when(layernorm("encoder.LayerNorm"), lambda c: "layer_norm" in c.rel_embedding_norms),
    *parameter("encoder.conv.conv.weight",
               lambda c: (c.hidden_size, c.hidden_size // c.conv_groups, c.conv_kernel_size), CONV1D_WEIGHT,
               when=_conv),
    *parameter("encoder.conv.conv.bias", lambda c: (c.hidden_size,), CONV1D_BIAS, when=_conv),
    *_when(layernorm("encoder.conv.LayerNorm"), _conv),
)

CONTEXT_POOLER = linear("pooler.dense", "pooler_hidden_size", "pooler_hidden_size")


def _legacy(c) -> bool:
    return c.legacy


# BERT's layout at width embedding_size; with tie_word_embeddings false the decoder has a weight and bias of its own
LEGACY_MASKED_LM = (
    *parameter("cls.predictions.bias", lambda c: (c.vocab_size,), PARAMETER_BIAS),
    *linear("cls.predictions.transform.dense", "embedding_size", "hidden_size"),
    *layernorm("cls.predictions.transform.LayerNorm", "embedding_size"),
    *parameter("cls.predictions.decoder.weight", lambda c: (c.vocab_size, c.embedding_size), OUTPUT_EMBEDDING,
               when=lambda c: not c.tie_word_embeddings),
    *parameter("cls.predictions.decoder.bias", lambda c: (c.vocab_size,), LINEAR_BIAS,
               when=lambda c: not c.tie_word_embeddings),
)
# legacy false: dense + act + LayerNorm, then the word embeddings (always) plus this head's bias
MASKED_LM = (
    *linear("lm_predictions.lm_head.dense", "hidden_size", "hidden_size"),
    *layernorm("lm_predictions.lm_head.LayerNorm"),
    *parameter("lm_predictions.lm_head.bias", lambda c: (c.vocab_size,), PARAMETER_BIAS),
)
# What the original DeBERTa pre-training checkpoints (microsoft/deberta-v3-base...) hold besides the encoder:
# the replaced-token-detection head and the masked-LM head of the other layout. transformers ignores them on
# loading; here they are known, so that converting such a checkpoint reports them as dropped.
PRETRAINING_EXTRAS = (
    *linear("mask_predictions.dense", "hidden_size", "hidden_size"),
    *layernorm("mask_predictions.LayerNorm"),
    *single_output("mask_predictions.classifier"),
    *_when(MASKED_LM, _legacy),
    *_when(LEGACY_MASKED_LM, lambda c: not c.legacy),
    # transformers' _keys_to_ignore_on_load_unexpected: absolute positions a relative-only model does not use
    *_when(embedding("deberta.embeddings.position_embeddings", "max_position_embeddings", "embedding_size"),
           lambda c: not c.position_biased_input),
)

HEADS = {
    "sequence_classification": (*CONTEXT_POOLER, *linear("classifier", "num_labels", "hidden_size")),
    "token_classification": linear("classifier", "num_labels", "hidden_size"),
    "question_answering": linear("qa_outputs", "num_labels", "hidden_size"),
    "multiple_choice": (*CONTEXT_POOLER, *single_output("classifier")),
    "masked_lm": (*_when(LEGACY_MASKED_LM, _legacy), *_when(MASKED_LM, lambda c: not c.legacy)),
    "pretraining_extras": PRETRAINING_EXTRAS,
}

# PaddleNLP 2.8's DeBERTa-v2 (``deberta_v2/modeling.py``) keeps transformers' names under ``deberta.`` (the
# ContextPooler's ``pooler.dense`` on the head). Its config class holds ``share_attn_key``, but its model reads
# transformers' keys (``share_att_key``, ``position_buckets``, ``norm_rel_ebd``, ``conv_kernel_size``...) with
# getattr defaults, listed below. Its ConvLayer applies GELU whatever ``conv_act`` says (transformers' default is
# tanh). Its DebertaV2ForMaskedLM (an untied [in, out] Linear decoder) is not mapped.
DEBERTA_V2_PADDLENLP = PaddleNLPMap(
    base_prefix="deberta.",
    rules=(),
    classes={f"DebertaV2{task}": f"DebertaV2{task}" for task in (
        "Model", "ForSequenceClassification", "ForTokenClassification", "ForQuestionAnswering", "ForMultipleChoice")},
    # DebertaV2Config.__init__ (``deberta_v2/configuration.py``) and modeling.py's getattr defaults
    defaults=dict(
        vocab_size=128100, hidden_size=1536, num_hidden_layers=24, num_attention_heads=24, intermediate_size=6144,
        hidden_act="gelu", hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1, max_position_embeddings=512,
        type_vocab_size=0, initializer_range=0.02, layer_norm_eps=1e-7, relative_attention=False,
        max_relative_positions=-1, pad_token_id=0, position_biased_input=True, pos_att_type=None, pooler_dropout=0,
        pooler_hidden_act="gelu", share_att_key=False, position_buckets=-1, norm_rel_ebd="none", conv_kernel_size=0,
        conv_groups=1, conv_act="tanh",
    ),
    fixed={"conv_act": "gelu"},
    fixed_when={"conv_act": _conv},
)

DEBERTA_V2 = ArchitectureTable(
    model_type="deberta-v2",
    base_prefix="deberta.",
    base=(*EMBEDDINGS, *ENCODER),
    pooler=(),
    heads=HEADS,
    classes={
        "DebertaV2Model": ClassLayout(prefixed=False, pooler=False),
        # ContextPooler is the head's own sub-layer (pooler.dense, in the head's rules): the class has a pooler
        # whose output compare checks, but no base-model pooler parameters
        "DebertaV2ForSequenceClassification": ClassLayout(prefixed=True, pooler=True, head="sequence_classification"),
        "DebertaV2ForTokenClassification": ClassLayout(prefixed=True, pooler=False, head="token_classification"),
        "DebertaV2ForQuestionAnswering": ClassLayout(prefixed=True, pooler=False, head="question_answering"),
        "DebertaV2ForMultipleChoice": ClassLayout(prefixed=True, pooler=True, head="multiple_choice"),
        "DebertaV2ForMaskedLM": ClassLayout(prefixed=True, pooler=False, head="masked_lm"),
    },
    # the legacy head's decoder is the word embeddings plus cls.predictions.bias, as in BERT
    tied_to_embeddings=tied_decoder("deberta."),
    buffers=(r"embeddings\.position_ids$",),
    paddlenlp=DEBERTA_V2_PADDLENLP,
)
