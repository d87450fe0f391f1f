"""A hand-written Paddle SqueezeBERT in the style of the 2021 port: its own attribute names, its sub-layers defined
in another order than transformers', NCW layout inside the encoder like the original. ``rules.py`` says which
torch module each layer is; ``paddleport diff`` checks it against transformers' SqueezeBertModel."""

import math

import paddle
from paddle import nn


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of an [N, C, W] tensor."""

    def forward(self, x):
        return super().forward(x.transpose([0, 2, 1])).transpose([0, 2, 1])


class Embeddings(nn.Layer):
    def __init__(self, cfg):
        super().__init__()
        self.drop = nn.Dropout(cfg["hidden_dropout_prob"])
        self.layer_norm = nn.LayerNorm(cfg["hidden_size"], epsilon=cfg["layer_norm_eps"])
        self.token_type = nn.Embedding(cfg["type_vocab_size"], cfg["embedding_size"])
        self.position = nn.Embedding(cfg["max_position_embeddings"], cfg["embedding_size"])
        self.word = nn.Embedding(cfg["vocab_size"], cfg["embedding_size"])

    def forward(self, input_ids, token_type_ids):
        positions = paddle.arange(input_ids.shape[1], dtype="int64").unsqueeze(0)
        x = self.word(input_ids) + self.position(positions) + self.token_type(token_type_ids)
        return self.drop(self.layer_norm(x))


class SelfAttention(nn.Layer):
    def __init__(self, cfg):
        super().__init__()
        hidden = cfg["hidden_size"]
        self.heads, self.head_dim = cfg["num_attention_heads"], hidden // cfg["num_attention_heads"]
        self.attn_drop = nn.Dropout(cfg["attention_probs_dropout_prob"])
        self.v = nn.Conv1D(hidden, hidden, 1, groups=cfg["v_groups"])
        self.k = nn.Conv1D(hidden, hidden, 1, groups=cfg["k_groups"])
        self.q = nn.Conv1D(hidden, hidden, 1, groups=cfg["q_groups"])

    def forward(self, x, mask):
        batch, _, length = x.shape
        heads = lambda t: t.reshape([batch, self.heads, self.head_dim, length])  # noqa: E731  [N, H, D, W]
        q, k, v = heads(self.q(x)).transpose([0, 1, 3, 2]), heads(self.k(x)), heads(self.v(x)).transpose([0, 1, 3, 2])
        scores = paddle.matmul(q, k) / math.sqrt(self.head_dim)
        if mask is not None:
            scores = scores + mask
        context = paddle.matmul(self.attn_drop(nn.functional.softmax(scores, axis=-1)), v)  # [N, H, W, D]
        return context.transpose([0, 1, 3, 2]).reshape([batch, self.heads * self.head_dim, length])


class ConvDropNorm(nn.Layer):
    def __init__(self, cin, cout, groups, dropout, eps):
        super().__init__()
        self.ln = ChannelLayerNorm(cout, epsilon=eps)
        self.drop = nn.Dropout(dropout)
        self.conv = nn.Conv1D(cin, cout, 1, groups=groups)

    def forward(self, x, residual):
        return self.ln(self.drop(self.conv(x)) + residual)


class ConvGelu(nn.Layer):
    def __init__(self, cin, cout, groups):
        super().__init__()
        self.act = nn.GELU()
        self.conv = nn.Conv1D(cin, cout, 1, groups=groups)

    def forward(self, x):
        return self.act(self.conv(x))


class Block(nn.Layer):
    def __init__(self, cfg):
        super().__init__()
        hidden, inner, eps, p = cfg["hidden_size"], cfg["intermediate_size"], cfg["layer_norm_eps"], \
            cfg["hidden_dropout_prob"]
        self.ffn_out = ConvDropNorm(inner, hidden, cfg["output_groups"], p, eps)
        self.ffn_in = ConvGelu(hidden, inner, cfg["intermediate_groups"])
        self.attn_out = ConvDropNorm(hidden, hidden, cfg["post_attention_groups"], p, eps)
        self.attn = SelfAttention(cfg)

    def forward(self, x, mask):
        attended = self.attn_out(self.attn(x, mask), x)
        return self.ffn_out(self.ffn_in(attended), attended)


class Encoder(nn.Layer):
    def __init__(self, cfg):
        super().__init__()
        self.blocks = nn.LayerList([Block(cfg) for _ in range(cfg["num_hidden_layers"])])

    def forward(self, x, mask):
        x = x.transpose([0, 2, 1])  # [N, W, C] -> [N, C, W]
        for block in self.blocks:
            x = block(x, mask)
        return x.transpose([0, 2, 1])


class SqueezeBert(nn.Layer):
    def __init__(self, cfg):
        super().__init__()
        self.pool_act = nn.Tanh()
        self.pool_dense = nn.Linear(cfg["hidden_size"], cfg["hidden_size"])
        self.encoder = Encoder(cfg)
        self.emb = Embeddings(cfg)

    def forward(self, input_ids, attention_mask, token_type_ids):
        additive = (1.0 - attention_mask.astype("float32"))[:, None, None, :] * float(paddle.finfo(paddle.float32).min)
        sequence = self.encoder(self.emb(input_ids, token_type_ids), additive)
        return sequence, self.pool_act(self.pool_dense(sequence[:, 0]))


def build():
    from examples.squeezebert.torch_reference import CONFIG

    return SqueezeBert(CONFIG)
