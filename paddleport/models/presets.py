"""Published configurations used by the demo, the full-size tests and the benchmarks (weights are seeded)."""

BERT_BASE_UNCASED = dict(
    vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
    hidden_act="gelu", max_position_embeddings=512, type_vocab_size=2, layer_norm_eps=1e-12, pad_token_id=0,
)
SQUEEZEBERT_UNCASED = dict(
    vocab_size=30528, hidden_size=768, embedding_size=768, num_hidden_layers=12, num_attention_heads=12,
    intermediate_size=3072, hidden_act="gelu", max_position_embeddings=512, type_vocab_size=2,
    layer_norm_eps=1e-12, pad_token_id=0, q_groups=4, k_groups=4, v_groups=4, post_attention_groups=1,
    intermediate_groups=4, output_groups=4,
)
