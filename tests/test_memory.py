"""estimate-memory: counts from the conversion table (no model built), the terms' behaviour, a measured step."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from paddleport.errors import PaddleportError
from paddleport.memory import MemoryRequest, estimate_memory
from paddleport.peft.lora import LoraSettings
from tests.fixtures import make_tiny_hf_checkpoint, tiny_config

# A 3B-parameter BERT-shaped config (never built: only its config.json is read).
BERT_3B = dict(model_type="bert", architectures=["BertModel"], vocab_size=30522, hidden_size=2560,
               num_hidden_layers=36, num_attention_heads=32, intermediate_size=10240, max_position_embeddings=512,
               type_vocab_size=2, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)


def test_a_3b_config_is_estimated_from_its_config_alone(tmp_path):
    config = tmp_path / "config.json"
    config.write_text(json.dumps(BERT_3B))
    full = estimate_memory(MemoryRequest(config, batch_size=8, max_length=512))
    assert 2.8e9 < full.parameters < 3.0e9 and full.trainable == full.parameters
    assert full.bytes["optimizer state"] == 8 * full.parameters
    # gradients are freed after each step and made layer by layer in backward: at the peak (the start of
    # backward, activations larger than all gradients) one layer's gradients exist
    hidden, intermediate = BERT_3B["hidden_size"], BERT_3B["intermediate_size"]
    one_layer = 4 * hidden * hidden + 2 * hidden * intermediate + 9 * hidden + intermediate
    assert full.bytes["activations"] > 4 * full.parameters
    assert full.bytes["gradients at the peak"] == 4 * one_layer
    lora = estimate_memory(MemoryRequest(config, batch_size=8, max_length=512, lora=LoraSettings(r=16)))
    assert lora.trainable < full.trainable / 100 and lora.bytes["optimizer state"] < full.bytes["optimizer state"] / 100
    checkpointed = estimate_memory(MemoryRequest(config, 8, 512, gradient_checkpointing=True))
    assert checkpointed.bytes["activations"] < full.bytes["activations"] / 5
    bf16 = estimate_memory(MemoryRequest(config, 8, 512, amp="bf16"))
    assert bf16.bytes["activations"] < 0.6 * full.bytes["activations"]
    sgd = estimate_memory(MemoryRequest(config, 8, 512, optimizer="sgd"))
    assert sgd.bytes["optimizer state"] == 0
    paddle = estimate_memory(MemoryRequest(config, 8, 512, framework="paddle"))  # no masks, no matmul copy
    assert paddle.bytes["activations"] < full.bytes["activations"]
    lora_paddle = estimate_memory(MemoryRequest(config, 8, 512, lora=LoraSettings(r=16), framework="paddle"))
    inputs = "Linear inputs (x, context, LN output, GELU output) x 36 layers"
    assert lora.activation_terms[inputs] == 0 < lora_paddle.activation_terms[inputs]  # Paddle's frozen matmuls keep them
    from paddleport.peft.bottleneck import BottleneckSettings

    adapter = estimate_memory(MemoryRequest(config, 8, 512, lora=BottleneckSettings.preset("houlsby", 16)))
    assert lora.trainable < adapter.trainable < full.trainable / 20 and adapter.request["peft"] == "adapter"
    assert "total (estimate)" in full.table() and json.loads(json.dumps(full.as_json()))["total"] == full.total


def test_parameter_counts_equal_the_models(tmp_path):
    import transformers

    model_dir = make_tiny_hf_checkpoint(tmp_path / "bert", "BertModel")
    model = transformers.BertForSequenceClassification(tiny_config("BertForSequenceClassification", num_labels=2))
    estimate = estimate_memory(MemoryRequest(model_dir, batch_size=2, max_length=16))
    assert estimate.parameters == sum(param.numel() for param in model.parameters())
    import peft

    adapted = peft.get_peft_model(model, peft.LoraConfig(r=4, target_modules=["query", "value"],
                                                         modules_to_save=["classifier"], task_type="SEQ_CLS"))
    lora = estimate_memory(MemoryRequest(model_dir, 2, 16, lora=LoraSettings(r=4)))
    assert lora.trainable == sum(param.numel() for param in adapted.parameters() if param.requires_grad)


@pytest.mark.parametrize("architecture", ("DistilBertModel", "AlbertModel", "DebertaV2Model", "SqueezeBertModel"))
def test_adapter_counts_equal_the_adapted_models(architecture, tmp_path):
    """Architectures with their own config names (DistilBERT's dim, n_layers), shared layers (ALBERT), a head
    outside the base model (DistilBERT's pre_classifier, DeBERTa's pooler), channel-first blocks (SqueezeBERT)."""
    import transformers

    from paddleport.peft import torch_bottleneck
    from paddleport.peft.bottleneck import BottleneckSettings
    from paddleport.peft.methods import plan_for_checkpoint

    model_dir = make_tiny_hf_checkpoint(tmp_path / "model", architecture)
    settings = BottleneckSettings.preset("houlsby", 4)
    estimate = estimate_memory(MemoryRequest(model_dir, batch_size=2, max_length=16, lora=settings))
    plan = plan_for_checkpoint(json.loads((model_dir / "config.json").read_text()), 2, settings)
    model = torch_bottleneck.apply(
        transformers.AutoModelForSequenceClassification.from_pretrained(str(model_dir), num_labels=2), plan)
    assert estimate.parameters == sum(param.numel() for param in model.parameters())
    assert estimate.trainable == sum(param.numel() for param in model.parameters() if param.requires_grad)
    assert estimate.activation_terms["adapter paths (input, bottleneck activations) x 2 layers"] > 0


def test_bad_input(tmp_path):
    with pytest.raises(PaddleportError, match="must be positive"):
        estimate_memory(MemoryRequest(tmp_path, batch_size=0, max_length=8))
    with pytest.raises(PaddleportError, match="has no config.json"):
        estimate_memory(MemoryRequest(tmp_path, batch_size=1, max_length=8))


@pytest.mark.parametrize("framework", ("torch", "paddle"))
def test_measure_runs_a_real_step(framework, tmp_path):
    model_dir = make_tiny_hf_checkpoint(tmp_path / "bert", "BertModel")
    report = tmp_path / "memory.json"
    command = [sys.executable, "-m", "paddleport", "estimate-memory", "--model", str(model_dir), "--batch-size", "4",
               "--max-length", "32", "--peft", "lora", "--measure", "--framework", framework, "--json", str(report)]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    measured = json.loads(report.read_text())["measured"]
    assert measured["framework"] == framework and measured["peak_bytes"] > 0
    assert "measured peak" in result.stdout
