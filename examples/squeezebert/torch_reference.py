"""The reference: transformers' SqueezeBertModel, a tiny randomly initialised one (no download)."""

import torch

CONFIG = dict(vocab_size=64, hidden_size=16, embedding_size=16, num_hidden_layers=2, num_attention_heads=4,
              intermediate_size=32, max_position_embeddings=32, type_vocab_size=2, q_groups=2, k_groups=2,
              v_groups=2, post_attention_groups=1, intermediate_groups=4, output_groups=2, hidden_act="gelu",
              layer_norm_eps=1e-12, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)


def build():
    from transformers import SqueezeBertConfig, SqueezeBertModel

    torch.manual_seed(0)
    return SqueezeBertModel(SqueezeBertConfig(**CONFIG))
