"""BERT conversion table (transformers ``modeling_bert.py`` <-> ``paddleport.models.modeling_bert``)."""

from __future__ import annotations

from paddleport.convert.rules import embeddings_rules, layernorm, linear, parameter, single_output
from paddleport.convert.table import ArchitectureTable, ClassLayout
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
)
