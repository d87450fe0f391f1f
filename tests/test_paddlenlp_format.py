"""PaddleNLP-format checkpoints without PaddleNLP (``make test``): names and shapes as PaddleNLP 2.8.1 builds them
(``tests/data/paddlenlp_state_dicts.json``, recorded from PaddleNLP by ``make test-paddlenlp``), HF -> PaddleNLP ->
HF bit for bit, PaddleNLP's legacy ``model_config.json``, and hostile or unsupported input."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from paddleport.convert import convert_checkpoint
from paddleport.core.tensor_io import open_checkpoint
from paddleport.safe_pickle import load_state
from tests.fixtures import make_tiny_hf_checkpoint
from tests.test_hostile_inputs import one_line_exit_2, poison_pdparams

GOLDEN = json.loads((Path(__file__).parent / "data" / "paddlenlp_state_dicts.json").read_text())
# One class per architecture with a head, and the bare models (the interop test covers the rest of GOLDEN).
CLASSES = ["BertForSequenceClassification", "RobertaForSequenceClassification", "ElectraForPreTraining",
           "AlbertForSequenceClassification", "DistilBertForQuestionAnswering", "AlbertModel", "DistilBertModel",
           "ErnieForQuestionAnswering", "BertForMaskedLM", "RobertaForMaskedLM", "ErnieForPreTraining",
           "DebertaV2ForSequenceClassification"]


def num_labels(class_name: str) -> dict:
    return {"num_labels": 3} if class_name.endswith(("SequenceClassification", "TokenClassification")) else {}


def overrides(class_name: str) -> dict:
    """PaddleNLP's ERNIE computes with LayerNorm epsilon 1e-12 only (the tiny ERNIE has ERNIE 3.0's 1e-5), its
    DeBERTa's ConvLayer with GELU (the tiny DeBERTa's is tanh)."""
    fixed = {"Ernie": {"layer_norm_eps": 1e-12}, "DebertaV2": {"conv_act": "gelu"}}
    return dict(num_labels(class_name), **next((v for k, v in fixed.items() if class_name.startswith(k)), {}))


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """class -> (transformers dir, --to paddlenlp dir, and that converted back with --to hf)."""
    work = tmp_path_factory.mktemp("paddlenlp-format")
    dirs = {}
    for class_name in CLASSES:
        hf = make_tiny_hf_checkpoint(work / class_name / "hf", class_name, seed=1, **overrides(class_name))
        convert_checkpoint(hf, work / class_name / "paddlenlp", to="paddlenlp", progress=False)
        convert_checkpoint(work / class_name / "paddlenlp", work / class_name / "back", to="hf", progress=False)
        dirs[class_name] = (hf, work / class_name / "paddlenlp", work / class_name / "back")
    return dirs


@pytest.mark.parametrize("class_name", CLASSES)
def test_names_and_shapes_are_paddlenlp_s(converted, class_name):
    _, paddlenlp_dir, _ = converted[class_name]
    state = load_state(paddlenlp_dir / "model_state.pdparams")
    written = {name: list(array.shape) for name, array in state.items()}
    expected = GOLDEN[class_name]
    assert {name: expected.get(name) for name in written} == written  # every name and shape PaddleNLP's
    # what PaddleNLP's class holds beyond transformers': a pooler BERT's span heads never read, ALBERT's positions
    assert all(".pooler." in name or name.endswith("embeddings.position_ids") for name in set(expected) - set(written))
    config = json.loads((paddlenlp_dir / "config.json").read_text())
    renamed = {"ElectraForPreTraining": "ElectraDiscriminator", "ErnieForPreTraining": "ErnieForPretraining"}
    assert config["architectures"] == [renamed.get(class_name, class_name)]
    assert "paddlenlp_version" in config


def test_paddlenlp_config_keys(converted):
    """DistilBERT under PaddleNLP's BERT-style keys; values PaddleNLP would otherwise default differently explicit."""
    distilbert = json.loads((converted["DistilBertModel"][1] / "config.json").read_text())
    assert (distilbert["hidden_size"], distilbert["num_hidden_layers"], distilbert["intermediate_size"]) == (32, 2, 37)
    hf, paddlenlp_dir, _ = converted["RobertaForSequenceClassification"]
    roberta, hf_roberta = (json.loads((d / "config.json").read_text()) for d in (paddlenlp_dir, hf))
    assert (roberta["layer_norm_eps"], roberta["pad_token_id"], roberta["num_labels"]) == (
        hf_roberta["layer_norm_eps"], hf_roberta["pad_token_id"], 3)
    bert = json.loads((converted["BertForSequenceClassification"][1] / "config.json").read_text())
    assert bert["type_vocab_size"] == 2  # PaddleNLP's BertConfig defaults to 16


@pytest.mark.parametrize("class_name", CLASSES)
def test_round_trip_is_bit_exact(converted, class_name):
    hf, _, back = converted[class_name]
    with open_checkpoint(hf) as original, open_checkpoint(back) as returned:
        assert sorted(original.names()) == sorted(returned.names())
        for name in original.names():
            a, b = original.read(name), returned.read(name)
            assert a.dtype == b.dtype and np.array_equal(a, b), name
    report = json.loads((back / "conversion.json").read_text())
    assert report["source_architecture"] == class_name and report["direction"] == "hf"
    state = load_state(converted[class_name][1] / "model_state.pdparams")
    # named as in the PaddleNLP file; the copies PaddleNLP keeps of a tied tensor skipped as tied
    assert {record["source"] for record in report["tensors"]} | set(report["tied"]) == set(state)


def test_legacy_model_config_json(tmp_path, converted):
    """PaddleNLP's older ``model_config.json``: ``init_args`` nested per class, ``init_class``, ``num_classes``."""
    hf, paddlenlp_dir, back = converted["BertForSequenceClassification"]
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "model_state.pdparams").write_bytes((paddlenlp_dir / "model_state.pdparams").read_bytes())
    config = json.loads((paddlenlp_dir / "config.json").read_text())
    base = {key: config[key] for key in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                                         "intermediate_size", "max_position_embeddings", "type_vocab_size")}
    (legacy / "model_config.json").write_text(json.dumps(
        {"init_args": [{"init_args": [base], "init_class": "BertModel"}], "init_class": "BertForSequenceClassification",
         "num_classes": 3}))
    convert_checkpoint(legacy, tmp_path / "hf", to="hf", progress=False)
    with open_checkpoint(hf) as original, open_checkpoint(tmp_path / "hf") as returned:
        assert all(np.array_equal(original.read(name), returned.read(name)) for name in original.names())
    written = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert written["architectures"] == ["BertForSequenceClassification"] and len(written["id2label"]) == 3
    assert written["model_type"] == "bert" and written["layer_norm_eps"] == 1e-12


def test_a_config_without_paddlenlp_version_is_told_by_the_names(tmp_path, converted):
    """An older or hand-written PaddleNLP config.json (no paddlenlp_version): PaddleNLP's tensor names say it."""
    hf, paddlenlp_dir, _ = converted["BertForSequenceClassification"]
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "model_state.pdparams").write_bytes((paddlenlp_dir / "model_state.pdparams").read_bytes())
    config = json.loads((paddlenlp_dir / "config.json").read_text())
    del config["paddlenlp_version"]
    (bare / "config.json").write_text(json.dumps(config))
    convert_checkpoint(bare, tmp_path / "hf", to="hf", progress=False)
    with open_checkpoint(hf) as original, open_checkpoint(tmp_path / "hf") as returned:
        assert all(np.array_equal(original.read(name), returned.read(name)) for name in original.names())
    # paddleport's own pdparams output is not mistaken for PaddleNLP's
    convert_checkpoint(hf, tmp_path / "paddle", to="paddle", fmt="pdparams", progress=False)
    convert_checkpoint(tmp_path / "paddle", tmp_path / "hf2", to="hf", progress=False)
    sources = {record["source"] for record in json.loads((tmp_path / "hf2" / "conversion.json").read_text())["tensors"]}
    assert "bert.encoder.layer.0.attention.self.query.weight" in sources


def test_malicious_paddlenlp_checkpoint_runs_nothing(tmp_path, capsys, converted):
    """A PaddleNLP directory whose .pdparams pickle runs a command: one line, exit 2, nothing run or written."""
    hostile = tmp_path / "hostile"
    hostile.mkdir()
    paddlenlp_dir = converted["BertForSequenceClassification"][1]
    for name in ("model_state.pdparams", "config.json"):
        (hostile / name).write_bytes((paddlenlp_dir / name).read_bytes())
    canary = tmp_path / "canary"
    poison_pdparams(hostile / "model_state.pdparams", canary)
    with open(hostile / "model_state.pdparams", "rb") as stream:
        assert b"system" in stream.read()  # the file really holds the call
    line = one_line_exit_2(capsys, ["convert", hostile, tmp_path / "out", "--to", "hf"],
                           "model_state.pdparams", "unsafe content refused: pickle references")
    assert "\n" not in line and not canary.exists() and not (tmp_path / "out").exists()


def test_unsupported_paddlenlp_requests_are_one_line(tmp_path, capsys, converted):
    hf, paddlenlp_dir, _ = converted["BertForSequenceClassification"]
    electra = converted["ElectraForPreTraining"][0]
    one_line_exit_2(capsys, ["convert", electra, tmp_path / "a", "--to", "paddlenlp", "--arch", "ElectraForMaskedLM"],
                    "ElectraForMaskedLM has no PaddleNLP counterpart")
    one_line_exit_2(capsys, ["convert", paddlenlp_dir, tmp_path / "b", "--to", "paddle"],
                    "PaddleNLP checkpoint", "--to hf")
    squeezebert = make_tiny_hf_checkpoint(tmp_path / "sq", "SqueezeBertModel")
    one_line_exit_2(capsys, ["convert", squeezebert, tmp_path / "c", "--to", "paddlenlp"],
                    "squeezebert", "has no PaddleNLP name map")
    ernie_3 = make_tiny_hf_checkpoint(tmp_path / "ernie", "ErnieModel")  # layer_norm_eps 1e-5
    one_line_exit_2(capsys, ["convert", ernie_3, tmp_path / "d", "--to", "paddlenlp"],
                    "layer_norm_eps is 1e-05", "always computes with 1e-12")
    deberta_tanh = make_tiny_hf_checkpoint(tmp_path / "deberta", "DebertaV2Model")  # a ConvLayer with tanh
    one_line_exit_2(capsys, ["convert", deberta_tanh, tmp_path / "e", "--to", "paddlenlp"],
                    "conv_act is tanh", "always computes with gelu")
    assert not any((tmp_path / name).exists() for name in "abcde")


def test_reading_takes_the_epsilon_paddlenlp_computes_with(tmp_path, converted):
    """A PaddleNLP ERNIE config saying layer_norm_eps 1e-5 still computes with 1e-12: transformers gets 1e-12."""
    paddlenlp_dir = converted["ErnieForQuestionAnswering"][1]
    said = tmp_path / "said"
    said.mkdir()
    (said / "model_state.pdparams").write_bytes((paddlenlp_dir / "model_state.pdparams").read_bytes())
    config = json.loads((paddlenlp_dir / "config.json").read_text())
    (said / "config.json").write_text(json.dumps(dict(config, layer_norm_eps=1e-5)))
    convert_checkpoint(said, tmp_path / "hf", to="hf", progress=False)
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["layer_norm_eps"] == 1e-12


def test_a_fused_paddlenlp_encoder_is_refused(tmp_path, capsys, converted):
    fused = tmp_path / "fused"
    fused.mkdir()
    paddlenlp_dir = converted["BertForSequenceClassification"][1]
    (fused / "model_state.pdparams").write_bytes((paddlenlp_dir / "model_state.pdparams").read_bytes())
    config = json.loads((paddlenlp_dir / "config.json").read_text())
    (fused / "config.json").write_text(json.dumps(dict(config, fuse=True)))
    one_line_exit_2(capsys, ["convert", fused, tmp_path / "out", "--to", "hf"], "fuse=true")
