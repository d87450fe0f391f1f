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
# config.json of roberta-base: positions start after the padding index (514 = 512 + 2), one token type
ROBERTA_BASE = dict(
    vocab_size=50265, hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
    hidden_act="gelu", max_position_embeddings=514, type_vocab_size=1, layer_norm_eps=1e-5, pad_token_id=1,
    bos_token_id=0, eos_token_id=2,
)
XLM_ROBERTA_BASE = dict(ROBERTA_BASE, vocab_size=250002)
DISTILBERT_BASE_UNCASED = dict(
    vocab_size=30522, dim=768, n_layers=6, n_heads=12, hidden_dim=3072, activation="gelu",
    max_position_embeddings=512, sinusoidal_pos_embds=False, pad_token_id=0, dropout=0.1, attention_dropout=0.1,
    qa_dropout=0.1, seq_classif_dropout=0.2,
)
ELECTRA_BASE_DISCRIMINATOR = dict(
    vocab_size=30522, embedding_size=768, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
    intermediate_size=3072, hidden_act="gelu", max_position_embeddings=512, type_vocab_size=2,
    layer_norm_eps=1e-12, pad_token_id=0,
)
ALBERT_BASE_V2 = dict(
    vocab_size=30000, embedding_size=128, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
    intermediate_size=3072, hidden_act="gelu_new", num_hidden_groups=1, inner_group_num=1,
    max_position_embeddings=512, type_vocab_size=2, layer_norm_eps=1e-12, pad_token_id=0, hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0, classifier_dropout_prob=0.1,
)
# allenai/scibert_scivocab_uncased: a BERT with its own 31,090-token vocabulary
SCIBERT_SCIVOCAB_UNCASED = dict(BERT_BASE_UNCASED, vocab_size=31090)
# config.json of nghuyong/ernie-3.0-base-zh (transformers' ERNIE 3.0 base): 2048 positions, four token types,
# task-type embeddings on
ERNIE_3_0_BASE_ZH = dict(
    vocab_size=40000, hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
    hidden_act="gelu", max_position_embeddings=2048, type_vocab_size=4, use_task_id=True, task_type_vocab_size=3,
    layer_norm_eps=1e-5, pad_token_id=0,
)
# config.json of microsoft/deberta-v3-base: relative attention only (256 log buckets over 512 positions, p2c + c2p,
# shared key projections, LayerNorm-ed relative embeddings), no absolute positions, no token types
DEBERTA_V3_BASE = dict(
    vocab_size=128100, hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
    hidden_act="gelu", hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1, max_position_embeddings=512,
    type_vocab_size=0, layer_norm_eps=1e-7, initializer_range=0.02, relative_attention=True, position_buckets=256,
    max_relative_positions=-1, pos_att_type="p2c|c2p", norm_rel_ebd="layer_norm", share_att_key=True,
    position_biased_input=False, pad_token_id=0,
)

# Each published config above by its Hub name, with the base-model class it belongs to (a head's class follows from
# the registry: ``architecture_of_class(name).class_name(task)``). The benchmarks and the full-size tests read it.
PUBLISHED = {
    "bert-base-uncased": ("BertModel", BERT_BASE_UNCASED),
    "squeezebert-uncased": ("SqueezeBertModel", SQUEEZEBERT_UNCASED),
    "roberta-base": ("RobertaModel", ROBERTA_BASE),
    "xlm-roberta-base": ("XLMRobertaModel", XLM_ROBERTA_BASE),
    "distilbert-base-uncased": ("DistilBertModel", DISTILBERT_BASE_UNCASED),
    "electra-base-discriminator": ("ElectraModel", ELECTRA_BASE_DISCRIMINATOR),
    "albert-base-v2": ("AlbertModel", ALBERT_BASE_V2),
    "scibert-scivocab-uncased": ("BertModel", SCIBERT_SCIVOCAB_UNCASED),
    "ernie-3.0-base-zh": ("ErnieModel", ERNIE_3_0_BASE_ZH),
    "deberta-v3-base": ("DebertaV2Model", DEBERTA_V3_BASE),
}
