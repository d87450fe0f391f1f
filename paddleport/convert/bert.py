"""BERT conversion table (transformers ``modeling_bert.py`` <-> ``paddleport.models.modeling_bert``)."""

from __future__ import annotations

from paddleport.convert.rules import embeddings_rules, layernorm, linear, parameter, single_output
from paddleport.convert.table import ArchitectureTable, ClassLayout, PaddleNLPCopy, PaddleNLPMap, Rule
from paddleport.convert.transforms import LINEAR_BIAS, OUTPUT_EMBEDDING, PARAMETER, PARAMETER_BIAS

LAYER = "encoder.layer.{layer}"

# BERT's encoder layers, which RoBERTa and ELECTRA share under the same names.
ENCODER = (
    *linear(f"{LAYER}.attention.self.query", "hidden_size", "hidden_size"),
    *linear(f"{LAYER}.attention.self.key", "hidden_size", "hidden_size"),
    *linear(f"{LAYER}.attention.self.value", "hidden_size", "hidden_size"),
    *linear(f"{LAYER}.attention.output.dense", "hidden_size", "hidden_size"),
    *layernorm(f"{LAYER}.attention.output.LayerNorm"),
    *linear(f"{LAYER}.intermediate.dense", "intermediate_size", "hidden_size"),
    *linear(f"{LAYER}.output.dense", "hidden_size", "intermediate_size"),
    *layernorm(f"{LAYER}.output.LayerNorm"),
)

BASE = (*embeddings_rules("hidden_size"), *ENCODER)

POOLER = linear("pooler.dense", "hidden_size", "hidden_size")

MASKED_LM_HEAD = (
    *parameter("cls.predictions.bias", lambda c: (c.vocab_size,), PARAMETER_BIAS),
    *linear("cls.predictions.transform.dense", "hidden_size", "hidden_size"),
    *layernorm("cls.predictions.transform.LayerNorm"),
    *parameter("cls.predictions.decoder.weight", lambda c: (c.vocab_size, c.hidden_size), OUTPUT_EMBEDDING,
               when=lambda c: not c.tie_word_embeddings),
    *parameter("cls.predictions.decoder.bias", lambda c: (c.vocab_size,), LINEAR_BIAS,
               when=lambda c: not c.tie_word_embeddings),
)

HEADS = {
    "sequence_classification": linear("classifier", "num_labels", "hidden_size"),
    "token_classification": linear("classifier", "num_labels", "hidden_size"),
    "question_answering": linear("qa_outputs", "num_labels", "hidden_size"),
    "multiple_choice": single_output("classifier"),
    "masked_lm": MASKED_LM_HEAD,
    # BertForPreTraining's next-sentence head: known, so that it is reported as dropped, never converted.
    "next_sentence": (*parameter("cls.seq_relationship.weight", lambda c: (2, c.hidden_size), PARAMETER),
                      *parameter("cls.seq_relationship.bias", lambda c: (2,), PARAMETER_BIAS)),
}

# PaddleNLP 2.8 builds BERT's encoder from paddle.nn.TransformerEncoderLayer (``bert/modeling.py``; its
# ``_get_name_mappings`` lists the same pairs), and names the embeddings' LayerNorm ``layer_norm``.
PADDLENLP_LAYER = "encoder.layers.{layer}"
PADDLENLP_EMBEDDINGS = (Rule("embeddings.LayerNorm", "embeddings.layer_norm"),)


def paddlenlp_encoder_rules(*modules: str) -> tuple[Rule, ...]:
    """The rules naming one encoder layer's eight modules (query, key, value, attention output, its LayerNorm,
    intermediate, output, its LayerNorm; transformers' patterns) as paddle.nn.TransformerEncoderLayer does."""
    names = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj", "norm1", "linear1",
             "linear2", "norm2")
    return tuple(Rule(module, f"{PADDLENLP_LAYER}.{name}") for module, name in zip(modules, names, strict=True))


PADDLENLP_ENCODER = paddlenlp_encoder_rules(
    f"{LAYER}.attention.self.query", f"{LAYER}.attention.self.key", f"{LAYER}.attention.self.value",
    f"{LAYER}.attention.output.dense", f"{LAYER}.attention.output.LayerNorm", f"{LAYER}.intermediate.dense",
    f"{LAYER}.output.dense", f"{LAYER}.output.LayerNorm")
# PaddleNLP's question-answering heads call their Linear ``classifier``.
PADDLENLP_QA = (Rule("qa_outputs", "classifier"),)
# BertConfig.__init__ of PaddleNLP 2.8 (``bert/configuration.py``): what a saved config.json may leave out.
PADDLENLP_BERT_DEFAULTS = dict(
    vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
    hidden_act="gelu", hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1, max_position_embeddings=512,
    type_vocab_size=16, initializer_range=0.02, pad_token_id=0, layer_norm_eps=1e-12,
)


def paddlenlp_classes(prefix: str, *tasks: str) -> dict[str, str]:
    """transformers class -> PaddleNLP class, where PaddleNLP uses the same name."""
    return {f"{prefix}{task}": f"{prefix}{task}" for task in tasks}


COMMON_PADDLENLP_TASKS = ("Model", "ForSequenceClassification", "ForTokenClassification", "ForQuestionAnswering")

# BertLMPredictionHead (ERNIE's is the same): ``transform`` Linear, ``layer_norm``, and a TransposedLinear decoder
# ([vocab, hidden], as transformers), tied to the word embeddings, whose bias PaddleNLP also links as
# ``decoder_bias``: its state dict holds both names (and the tied weight), and so does what it saves.
PADDLENLP_MLM_HEAD = (
    Rule("cls.predictions.transform.dense", "cls.predictions.transform"),
    Rule("cls.predictions.transform.LayerNorm", "cls.predictions.layer_norm"),
    Rule("cls.predictions.bias", "cls.predictions.decoder_bias"),
)


def paddlenlp_decoder_copies(base_prefix: str, head: str, bias: str,
                             heads: tuple[str, ...] = ("masked_lm",)) -> tuple[PaddleNLPCopy, ...]:
    """A tied TransposedLinear decoder ``head``.decoder (in classes with one of the table's ``heads``): its weight
    is the word embeddings, its bias ``bias``."""
    return (PaddleNLPCopy(f"{head}.decoder.bias", bias, heads),
            PaddleNLPCopy(f"{head}.decoder.weight", f"{base_prefix}embeddings.word_embeddings.weight", heads,
                          when=lambda config: config.tie_word_embeddings))


BERT_PADDLENLP = PaddleNLPMap(
    base_prefix="bert.",
    rules=(*PADDLENLP_EMBEDDINGS, *PADDLENLP_ENCODER, *PADDLENLP_QA, *PADDLENLP_MLM_HEAD),
    classes=paddlenlp_classes("Bert", *COMMON_PADDLENLP_TASKS, "ForMultipleChoice", "ForMaskedLM"),
    defaults=PADDLENLP_BERT_DEFAULTS,
    copies=paddlenlp_decoder_copies("bert.", "cls.predictions", "cls.predictions.decoder_bias"),
)


def tied_decoder(base_prefix: str) -> dict[str, str]:
    """transformers ties the MLM decoder to the word embeddings and its bias to cls.predictions.bias."""
    return {"cls.predictions.decoder.weight": f"{base_prefix}embeddings.word_embeddings.weight",
            "cls.predictions.decoder.bias": "cls.predictions.bias"}


BERT = ArchitectureTable(
    model_type="bert",
    base_prefix="bert.",
    base=BASE,
    pooler=POOLER,
    heads=HEADS,
    classes={
        "BertModel": ClassLayout(prefixed=False, pooler=True),
        "BertForSequenceClassification": ClassLayout(prefixed=True, pooler=True, head="sequence_classification"),
        "BertForTokenClassification": ClassLayout(prefixed=True, pooler=False, head="token_classification"),
        "BertForQuestionAnswering": ClassLayout(prefixed=True, pooler=False, head="question_answering"),
        "BertForMultipleChoice": ClassLayout(prefixed=True, pooler=True, head="multiple_choice"),
        "BertForMaskedLM": ClassLayout(prefixed=True, pooler=False, head="masked_lm"),
    },
    tied_to_embeddings=tied_decoder("bert."),
    buffers=(r"embeddings\.position_ids$", r"embeddings\.token_type_ids$"),
    paddlenlp=BERT_PADDLENLP,
)
