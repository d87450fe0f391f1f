"""paddleport diff rules: transformers' SqueezeBERT names (left) -> the 2021-style Paddle port's (right).

The first rule that matches wins; a rule naming a module renames its parameters and sub-modules too, so the
specific rules come before the module-level ones. ``{i}`` matches one name segment (the layer index).
"""

from paddleport.convert.table import Rule

LAYER, BLOCK = "encoder.layers.{i}", "encoder.blocks.{i}"

RULES = [
    Rule("embeddings.word_embeddings", "emb.word"),
    Rule("embeddings.position_embeddings", "emb.position"),
    Rule("embeddings.token_type_embeddings", "emb.token_type"),
    Rule("embeddings.LayerNorm", "emb.layer_norm"),
    Rule("embeddings.dropout", "emb.drop"),
    Rule("embeddings", "emb"),
    Rule(f"{LAYER}.attention.query", f"{BLOCK}.attn.q"),
    Rule(f"{LAYER}.attention.key", f"{BLOCK}.attn.k"),
    Rule(f"{LAYER}.attention.value", f"{BLOCK}.attn.v"),
    Rule(f"{LAYER}.attention.dropout", f"{BLOCK}.attn.attn_drop"),
    Rule(f"{LAYER}.attention", f"{BLOCK}.attn"),
    *(rule for torch_part, paddle_part in (("post_attention", "attn_out"), ("output", "ffn_out")) for rule in (
        Rule(f"{LAYER}.{torch_part}.conv1d", f"{BLOCK}.{paddle_part}.conv"),
        Rule(f"{LAYER}.{torch_part}.layernorm", f"{BLOCK}.{paddle_part}.ln"),
        Rule(f"{LAYER}.{torch_part}.dropout", f"{BLOCK}.{paddle_part}.drop"),
        Rule(f"{LAYER}.{torch_part}", f"{BLOCK}.{paddle_part}"),
    )),
    Rule(f"{LAYER}.intermediate.conv1d", f"{BLOCK}.ffn_in.conv"),
    Rule(f"{LAYER}.intermediate", f"{BLOCK}.ffn_in"),
    Rule("encoder.layers", "encoder.blocks"),
    Rule("pooler.dense", "pool_dense"),
    Rule("pooler.activation", "pool_act"),
]
