"""Converted models compute what transformers computes: max |delta| <= 1e-5 on logits and every hidden state."""

from __future__ import annotations

import numpy as np
import pytest

from paddleport import models
from paddleport.convert import convert_checkpoint
from paddleport.models.presets import BERT_BASE_UNCASED, SQUEEZEBERT_UNCASED
from tests.checkpoint_variants import write_variant
from tests.fixtures import MINILM_DIR, assert_within, expected_output_names, forward_diffs, make_tiny_hf_model, qqp_batch

ATOL = 1e-5

CASES = [
    ("BertModel", "safetensors", {}),
    ("BertModel", "legacy_bin", {"hidden_act": "gelu_new"}),
    ("BertForSequenceClassification", "bin", {"num_labels": 3}),
    ("BertForSequenceClassification", "legacy_bin", {"num_labels": 2}),
    ("BertForSequenceClassification", "unprefixed_safetensors", {"num_labels": 1, "hidden_act": "relu"}),
    ("BertForSequenceClassification", "sharded_bin", {"num_labels": 2, "hidden_act": "silu"}),
    ("BertForMaskedLM", "sharded_safetensors", {"hidden_act": "gelu_new"}),
    ("BertForMaskedLM", "bin", {}),
    ("SqueezeBertModel", "safetensors", {}),
    ("SqueezeBertModel", "legacy_bin", {"q_groups": 1, "k_groups": 1, "v_groups": 1, "post_attention_groups": 1,
                                        "intermediate_groups": 1, "output_groups": 1}),
    ("SqueezeBertForSequenceClassification", "sharded_safetensors", {"num_labels": 3, "hidden_act": "gelu_new"}),
    ("SqueezeBertForSequenceClassification", "unprefixed_safetensors", {"num_labels": 1, "hidden_act": "relu"}),
    ("SqueezeBertForSequenceClassification", "sharded_bin", {"num_labels": 2}),
    ("SqueezeBertForMaskedLM", "bin", {}),
    ("SqueezeBertForMaskedLM", "safetensors", {"hidden_act": "quick_gelu"}),
    # README's other activations: each through transformers' own implementation
    ("BertModel", "safetensors", {"hidden_act": "gelu_fast"}),
    ("BertForSequenceClassification", "safetensors", {"num_labels": 2, "hidden_act": "gelu_pytorch_tanh"}),
    ("SqueezeBertModel", "safetensors", {"hidden_act": "tanh"}),
]


@pytest.fixture(scope="module")
def batch():
    return qqp_batch()


def assert_close(diffs: dict) -> None:
    assert_within(diffs, ATOL)


@pytest.mark.parametrize("architecture,variant,overrides", CASES,
                         ids=[f"{a}-{v}-{'-'.join(f'{k}={x}' for k, x in o.items())}" for a, v, o in CASES])
def test_converted_tiny_model_matches_transformers(tmp_path, batch, architecture, variant, overrides):
    hf_model = make_tiny_hf_model(architecture, seed=len(overrides), **overrides)
    source = write_variant(hf_model, tmp_path / "hf", variant)
    report = convert_checkpoint(source, tmp_path / "paddle")
    assert not report.newly_initialised and not report.dropped
    paddle_model = getattr(models, architecture).from_pretrained(tmp_path / "paddle")
    diffs = forward_diffs(hf_model, paddle_model, batch)
    assert list(diffs) == expected_output_names(architecture, hf_model.config.to_dict())
    assert ("pooler_output" in diffs) == (architecture.endswith("Model"))  # the base classes' pooled output
    assert_close(diffs)


def test_real_minilm_checkpoint_matches_transformers(tmp_path, batch):
    import transformers

    convert_checkpoint(MINILM_DIR, tmp_path / "minilm")
    hf_model = transformers.BertModel.from_pretrained(str(MINILM_DIR))
    paddle_model = models.AutoModel.from_pretrained(tmp_path / "minilm")
    assert type(paddle_model).__name__ == "BertModel"
    diffs = forward_diffs(hf_model, paddle_model, batch)
    assert list(diffs) == ["last_hidden_state", "pooler_output"] + [f"hidden_states[{i}]" for i in range(7)]
    assert_close(diffs)


@pytest.mark.parametrize("architecture,config", [("BertForSequenceClassification", BERT_BASE_UNCASED),
                                                 ("SqueezeBertForSequenceClassification", SQUEEZEBERT_UNCASED)],
                         ids=["bert-base-uncased", "squeezebert-uncased"])
def test_full_size_configs_match_transformers(tmp_path, architecture, config):
    hf_model = make_tiny_hf_model(architecture, seed=1, **config)
    hf_model.save_pretrained(tmp_path / "hf")
    convert_checkpoint(tmp_path / "hf", tmp_path / "paddle")
    paddle_model = getattr(models, architecture).from_pretrained(tmp_path / "paddle")
    assert_close(forward_diffs(hf_model, paddle_model, qqp_batch(pairs=3, max_length=128)))


def test_sequence_classification_losses_match_transformers(tmp_path, batch):
    import paddle
    import torch

    for num_labels, problem_type, labels in [
        (3, None, np.array([0, 2, 1, 1, 0, 2, 1])),
        (1, None, np.linspace(0, 5, 7).astype("float32")),
        (3, "multi_label_classification", (np.arange(21).reshape(7, 3) % 2).astype("float32")),
    ]:
        hf_model = make_tiny_hf_model("BertForSequenceClassification", num_labels=num_labels,
                                      problem_type=problem_type).eval()
        hf_model.save_pretrained(tmp_path / f"hf{num_labels}{problem_type}")
        convert_checkpoint(tmp_path / f"hf{num_labels}{problem_type}", tmp_path / f"pd{num_labels}{problem_type}")
        paddle_model = models.AutoModelForSequenceClassification.from_pretrained(
            tmp_path / f"pd{num_labels}{problem_type}")
        with torch.no_grad():
            expected = hf_model(**{k: torch.from_numpy(v) for k, v in batch.items()},
                                labels=torch.from_numpy(labels)).loss.item()
        actual = paddle_model(**{k: paddle.to_tensor(v) for k, v in batch.items()},
                              labels=paddle.to_tensor(labels)).loss.item()
        assert abs(expected - actual) <= 1e-5, (num_labels, problem_type, expected, actual)


def test_save_pretrained_round_trips(tmp_path, batch):
    import paddle

    model = models.SqueezeBertForSequenceClassification.from_config(
        models.SqueezeBertConfig(num_hidden_layers=1, hidden_size=32, embedding_size=32, num_attention_heads=4,
                                 intermediate_size=64, vocab_size=30522))
    model.eval()
    model.save_pretrained(tmp_path / "saved")
    reloaded = models.AutoModelForSequenceClassification.from_pretrained(tmp_path / "saved")
    inputs = {k: paddle.to_tensor(v) for k, v in batch.items()}
    np.testing.assert_array_equal(model(**inputs).logits.numpy(), reloaded(**inputs).logits.numpy())


def test_unsupported_config_options_are_errors(tmp_path):
    from paddleport.errors import PaddleportError

    with pytest.raises(PaddleportError, match="position_embedding_type 'relative_key'"):
        models.BertConfig.from_dict({"position_embedding_type": "relative_key"})
    with pytest.raises(PaddleportError, match="hidden_act 'xielu'"):
        models.BertConfig.from_dict({"hidden_act": "xielu"})
    with pytest.raises(PaddleportError, match="q_groups=5"):
        models.SqueezeBertConfig.from_dict({"q_groups": 5})
    for flag in ("is_decoder", "add_cross_attention"):
        with pytest.raises(PaddleportError, match=f"{flag}=true is not supported"):
            models.BertConfig.from_dict({flag: True})


@pytest.mark.parametrize("fast", [True, False], ids=["paddleport-kernels", "paddle-ops"])
def test_squeezebert_attentions_match_transformers(tmp_path, batch, fast):
    """SqueezeBERT's ``attentions`` are its scaled, masked scores before the softmax, as transformers returns them,
    compared where the attention mask keeps both the query and the key."""
    import paddle
    import torch

    from paddleport.models import layers

    hf_model = make_tiny_hf_model("SqueezeBertModel", seed=3)
    hf_model.save_pretrained(tmp_path / "hf")
    convert_checkpoint(tmp_path / "hf", tmp_path / "paddle")
    paddle_model = models.SqueezeBertModel.from_pretrained(tmp_path / "paddle")
    paddle_model.eval()
    with torch.no_grad():
        expected = hf_model(**{k: torch.from_numpy(v) for k, v in batch.items()}, output_attentions=True).attentions
    layers.set_fast_cpu_paths(fast)
    try:
        with paddle.no_grad():
            actual = paddle_model(**{k: paddle.to_tensor(v) for k, v in batch.items()}, output_attentions=True)
    finally:
        layers.set_fast_cpu_paths(True)
    keep = batch["attention_mask"].astype(bool)
    kept = keep[:, None, :, None] & keep[:, None, None, :]
    assert len(actual.attentions) == len(expected) == hf_model.config.num_hidden_layers
    for want, got in zip(expected, actual.attentions):
        assert list(got.shape) == list(want.shape)
        within = np.broadcast_to(kept, want.shape)
        assert np.abs(got.numpy()[within] - want.numpy()[within]).max() <= ATOL
