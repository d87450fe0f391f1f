"""DistilBERT conversion table (transformers ``modeling_distilbert.py`` <-> ``paddleport.models.modeling_distilbert``).

No token-type embeddings, no pooler; sizes are the config's own keys (``dim``, ``hidden_dim``).
"""

from __future__ import annotations

from paddleport.convert.rules import embedding, layernorm, linear, parameter, single_output
from paddleport.convert.bert import PADDLENLP_EMBEDDINGS, PADDLENLP_QA, paddlenlp_encoder_rules
from paddleport.convert.table import ArchitectureTable, ClassLayout, PaddleNLPMap
from paddleport.convert.transforms import LINEAR_BIAS, OUTPUT_EMBEDDING

LAYER = "transformer.layer.{layer}"

BASE = (
    *embedding("embeddings.word_embeddings", "vocab_size", "dim"),
    *embedding("embeddings.position_embeddings", "max_position_embeddings", "dim"),
    *layernorm("embeddings.LayerNorm", "dim"),
    *linear(f"{LAYER}.attention.q_lin", "dim", "dim"),
    *linear(f"{LAYER}.attention.k_lin", "dim", "dim"),
    *linear(f"{LAYER}.attention.v_lin", "dim", "dim"),
    *linear(f"{LAYER}.attention.out_lin", "dim", "dim"),
    *layernorm(f"{LAYER}.sa_layer_norm", "dim"),
    *linear(f"{LAYER}.ffn.lin1", "hidden_dim", "dim"),
    *linear(f"{LAYER}.ffn.lin2", "dim", "hidden_dim"),
    *layernorm(f"{LAYER}.output_layer_norm", "dim"),
)

HEADS = {
    "sequence_classification": (*linear("pre_classifier", "dim", "dim"), *linear("classifier", "num_labels", "dim")),
    "token_classification": linear("classifier", "num_labels", "dim"),
    "question_answering": linear("qa_outputs", "num_labels", "dim"),
    "multiple_choice": (*linear("pre_classifier", "dim", "dim"),
                        *single_output("classifier", "dim")),
    "masked_lm": (
        *linear("vocab_transform", "dim", "dim"),
        *layernorm("vocab_layer_norm", "dim"),
        *parameter("vocab_projector.bias", lambda c: (c.vocab_size,), LINEAR_BIAS),
        *parameter("vocab_projector.weight", lambda c: (c.vocab_size, c.dim), OUTPUT_EMBEDDING,
                   when=lambda c: not c.tie_word_embeddings),
    ),
}

# PaddleNLP 2.8's DistilBERT (``distilbert/modeling.py``) builds its encoder from paddle.nn.TransformerEncoderLayer
# and takes BERT's config keys (its configuration.py maps transformers' ``dim``, ``n_layers``... onto them).
DISTILBERT_PADDLENLP = PaddleNLPMap(
    base_prefix="distilbert.",
    rules=(
        *PADDLENLP_EMBEDDINGS,
        *paddlenlp_encoder_rules(
            f"{LAYER}.attention.q_lin", f"{LAYER}.attention.k_lin", f"{LAYER}.attention.v_lin",
            f"{LAYER}.attention.out_lin", f"{LAYER}.sa_layer_norm", f"{LAYER}.ffn.lin1", f"{LAYER}.ffn.lin2",
            f"{LAYER}.output_layer_norm"),
        *PADDLENLP_QA,
    ),
    classes={f"DistilBert{task}": f"DistilBert{task}" for task in (
        "Model", "ForSequenceClassification", "ForTokenClassification", "ForQuestionAnswering")},
    # DistilBertConfig.__init__ (``distilbert/configuration.py``), under PaddleNLP's keys
    defaults=dict(
        vocab_size=30522, hidden_size=768, num_hidden_layers=6, num_attention_heads=12, intermediate_size=3072,
        hidden_act="gelu", hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1, max_position_embeddings=512,
        initializer_range=0.02, pad_token_id=0,
    ),
    config_keys={"hidden_size": "dim", "num_hidden_layers": "n_layers", "num_attention_heads": "n_heads",
                 "intermediate_size": "hidden_dim", "hidden_act": "activation", "hidden_dropout_prob": "dropout",
                 "attention_probs_dropout_prob": "attention_dropout"},
)

DISTILBERT = ArchitectureTable(
    model_type="distilbert",
    base_prefix="distilbert.",
    base=BASE,
    pooler=(),
    heads=HEADS,
    classes={
        "DistilBertModel": ClassLayout(prefixed=False, pooler=False),
        "DistilBertForSequenceClassification": ClassLayout(prefixed=True, pooler=False,
                                                           head="sequence_classification"),
        "DistilBertForTokenClassification": ClassLayout(prefixed=True, pooler=False, head="token_classification"),
        "DistilBertForQuestionAnswering": ClassLayout(prefixed=True, pooler=False, head="question_answering"),
        "DistilBertForMultipleChoice": ClassLayout(prefixed=True, pooler=False, head="multiple_choice"),
        "DistilBertForMaskedLM": ClassLayout(prefixed=True, pooler=False, head="masked_lm"),
    },
    tied_to_embeddings={"vocab_projector.weight": "distilbert.embeddings.word_embeddings.weight"},
    buffers=(r"embeddings\.position_ids$",),
    paddlenlp=DISTILBERT_PADDLENLP,
)
