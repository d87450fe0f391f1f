"""LoRA in both frameworks: training, parity, adapter conversion, merging and bad input (tiny seeded models):
BERT's Linear layers and SqueezeBERT's grouped 1x1 convolutions (peft's ``lora.Conv1d``)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from paddleport.data import QQP_KSHOT_DIR
from paddleport.errors import PaddleportError
from paddleport.glue_runners import GlueRunConfig, run_glue
from paddleport.glue_runners.parity import TrainParityConfig, run_train_parity
from paddleport.peft.adapters import convert_adapter, load_adapted_model, merge_adapter
from paddleport.peft.lora import ADAPTER_CONFIG, ADAPTER_WEIGHTS, LoraSettings
from paddleport.peft.methods import plan_for_checkpoint
from tests.fixtures import adapter_round_trip, make_tiny_hf_checkpoint

FRAMEWORKS = ("torch", "paddle")
LORA = dict(peft="lora", lora_r=4, lora_alpha=8.0, lora_dropout=0.1, lora_target_modules="query,value")
# SqueezeBERT: every grouped convolution (tiny groups 2 and 4; r 4 is a multiple of both) and the pooler's Linear
SQUEEZEBERT_TARGETS = "query,key,value,conv1d,dense"


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    return make_tiny_hf_checkpoint(tmp_path_factory.mktemp("tiny_bert"), "BertModel")


@pytest.fixture(scope="module")
def tiny_classifier(tmp_path_factory):
    return make_tiny_hf_checkpoint(tmp_path_factory.mktemp("tiny_cls"), "BertForSequenceClassification")


def write_peft_adapter(classifier_dir, out, target_modules: list[str] | str):
    """A peft LoRA directory written by peft itself, with non-trivial A, B, biases and classifier."""
    import peft
    import torch
    import transformers

    torch.manual_seed(1)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(str(classifier_dir))
    adapted = peft.get_peft_model(model, peft.LoraConfig(
        r=4, lora_alpha=8, target_modules=target_modules, bias="all", modules_to_save=["classifier"],
        task_type="SEQ_CLS"))
    with torch.no_grad():
        for name, param in adapted.named_parameters():
            if param.requires_grad:
                param.add_(torch.randn_like(param) * 0.2)
    adapted.save_pretrained(str(out))
    return out


@pytest.fixture(scope="module")
def hf_adapter(tiny_classifier, tmp_path_factory):
    return write_peft_adapter(tiny_classifier, tmp_path_factory.mktemp("adapters") / "hf", ["query", "value", "dense"])


@pytest.fixture(scope="module")
def tiny_squeezebert_classifier(tmp_path_factory):
    return make_tiny_hf_checkpoint(tmp_path_factory.mktemp("tiny_sqz_cls"), "SqueezeBertForSequenceClassification")


@pytest.fixture(scope="module")
def squeezebert_adapter(tiny_squeezebert_classifier, tmp_path_factory):
    """peft's grouped lora.Conv1d on every convolution, a Linear LoRA on the pooler, biases and classifier."""
    return write_peft_adapter(tiny_squeezebert_classifier, tmp_path_factory.mktemp("adapters") / "sqz",
                              SQUEEZEBERT_TARGETS.split(","))


@pytest.fixture(params=["bert", "squeezebert", "squeezebert-layer-0-query"])
def adapter_case(request, tmp_path_factory):
    """(peft adapter dir, its base classifier, a LoRA A key, whether the Paddle layout transposes it)."""
    if request.param == "bert":
        return (request.getfixturevalue("hf_adapter"), request.getfixturevalue("tiny_classifier"),
                "base_model.model.bert.encoder.layer.0.attention.self.query.lora_A.weight", True)
    base = request.getfixturevalue("tiny_squeezebert_classifier")
    if request.param == "squeezebert":
        return (request.getfixturevalue("squeezebert_adapter"), base,
                "base_model.model.transformer.encoder.layers.0.attention.key.lora_A.weight", False)  # Conv1d: same
    # one layer's query only (a regex): a merge also makes layer 1's query dense, the other kinds stay grouped
    adapter = write_peft_adapter(base, tmp_path_factory.mktemp("adapters") / "sqz_q0", r".*layers\.0\.attention\.query")
    return adapter, base, "base_model.model.transformer.encoder.layers.0.attention.query.lora_B.weight", False


def _token_ids(seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(1000, 5000, size=(3, 11)), np.array([[1] * 11, [1] * 7 + [0] * 4, [1] * 3 + [0] * 8])


def _logits(model, framework, ids, mask):
    if framework == "torch":
        import torch

        with torch.no_grad():
            return model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).logits.numpy()
    import paddle

    with paddle.no_grad():
        return model(input_ids=paddle.to_tensor(ids), attention_mask=paddle.to_tensor(mask)).logits.numpy()


def test_hf_adapter_round_trips_bit_for_bit_and_matches_across_frameworks(adapter_case, tmp_path):
    hf_adapter, tiny_classifier, key, transposes = adapter_case
    original, converted, paddle_dir = adapter_round_trip(hf_adapter, tmp_path)
    assert np.array_equal(converted[key], original[key].T if transposes else original[key])

    ids, mask = _token_ids()
    torch_model, _ = load_adapted_model(hf_adapter, tiny_classifier, "torch", tmp_path / "w1")
    paddle_model, _ = load_adapted_model(paddle_dir, tiny_classifier, "paddle", tmp_path / "w2")
    torch_logits, paddle_logits = _logits(torch_model, "torch", ids, mask), _logits(paddle_model, "paddle", ids, mask)
    assert np.abs(torch_logits - paddle_logits).max() <= 1e-5

    import transformers

    base = transformers.AutoModelForSequenceClassification.from_pretrained(str(tiny_classifier)).eval()
    assert np.abs(_logits(base, "torch", ids, mask) - torch_logits).max() > 1e-2  # the adapter matters


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_merged_model_equals_the_adapted_one(framework, adapter_case, tmp_path):
    """SqueezeBERT: peft refuses to merge a grouped Conv1d; paddleport makes the wrapped kinds dense (groups 1)."""
    hf_adapter, tiny_classifier, _, _ = adapter_case
    adapter = hf_adapter
    if framework == "paddle":
        adapter = tmp_path / "paddle_adapter"
        convert_adapter(hf_adapter, adapter, to="paddle")
    merged = merge_adapter(adapter, tiny_classifier, tmp_path / "merged", framework=framework)
    ids, mask = _token_ids(1)
    adapted, plan = load_adapted_model(adapter, tiny_classifier, framework, tmp_path / "work")
    if framework == "torch":
        import transformers

        merged_model = transformers.AutoModelForSequenceClassification.from_pretrained(str(merged)).eval()
    else:
        from paddleport.models import AutoModelForSequenceClassification

        merged_model = AutoModelForSequenceClassification.from_pretrained(merged)
    assert np.abs(_logits(adapted, framework, ids, mask) - _logits(merged_model, framework, ids, mask)).max() <= 1e-5
    # SqueezeBERT: each wrapped kind of convolution is dense now (groups 1), the others keep their groups
    base_config, merged_config = (json.loads((path / "config.json").read_text()) for path in (tiny_classifier, merged))
    for key in (key for key in base_config if key.endswith("_groups")):
        assert merged_config[key] == (1 if key in plan.grouped_merge else base_config[key]), key


@pytest.mark.parametrize("architecture, targets", [
    ("BertModel", "query,value"),
    ("ErnieModel", "query,value"),  # ERNIE 3.0: with task-type embeddings
    # DeBERTa-v3's shared keys: query_proj also projects the relative embeddings, so its LoRA (and LoRA dropout)
    # runs twice per layer
    ("DebertaV2Model", "query_proj,value_proj"),
    ("SqueezeBertModel", SQUEEZEBERT_TARGETS),  # peft's grouped lora.Conv1d and paddleport's twin, LoRA dropout on NCW
    # the heads peft trains as modules_to_save differ: RoBERTa's / ELECTRA's classifier.dense + out_proj, DistilBERT's
    # pre_classifier; ALBERT's shared layer runs its one LoRA pair at every application
    ("RobertaModel", "query,value"),
    ("XLMRobertaModel", "query,value"),
    ("DistilBertModel", "q_lin,v_lin"),
    ("ElectraModel", "query,value"),
    ("AlbertModel", "query,value"),
])
def test_train_parity_with_lora_and_its_dropout(architecture, targets, tiny_bert, tmp_path):
    overrides = {"share_att_key": True} if architecture == "DebertaV2Model" else {}
    model = tiny_bert if architecture == "BertModel" else make_tiny_hf_checkpoint(tmp_path / "model", architecture,
                                                                                    **overrides)
    report = run_train_parity(TrainParityConfig(model=model, steps=5, dropout=True, lr=1e-2, num_threads=1,
                                                lora_bias="all", **dict(LORA, lora_target_modules=targets)))
    assert report["passed"] and report["max_loss_diff"] <= 1e-4
    assert report["max_param_diff"] <= 1e-4


@pytest.mark.parametrize("architecture", ["BertModel", "SqueezeBertModel"])
def test_lora_dropout_draws_the_shared_masks(architecture, tiny_bert, tmp_path):
    from paddleport.glue_runners.backends.base import BackendOptions, make_backend
    from paddleport.glue_runners.backends.torch_dropout import SharedMaskDropout
    from paddleport.peft.lora import LoraSettings

    model = tiny_bert if architecture == "BertModel" else make_tiny_hf_checkpoint(tmp_path / "model", architecture)
    settings = LoraSettings(r=2, lora_alpha=4, lora_dropout=0.2, target_modules=("query",))
    torch_backend = make_backend("torch", BackendOptions(dropout_masks="shared", peft=settings))
    torch_backend.load_model(model, 2, tmp_path)
    lora_dropouts = {name: type(module) for name, module in torch_backend.model.base_model.model.named_modules()
                     if "lora_dropout." in name}
    assert lora_dropouts and set(lora_dropouts.values()) == {SharedMaskDropout}
    paddle_backend = make_backend("paddle", BackendOptions(dropout_masks="shared", peft=settings))
    paddle_backend.load_model(model, 2, tmp_path)
    paddle_names = {name for name, layer in paddle_backend.model.named_sublayers() if "lora_dropout." in name}
    assert paddle_names == set(lora_dropouts)
    assert all(layer.mask_stream is paddle_backend.mask_stream for name, layer in
               paddle_backend.model.named_sublayers() if name in paddle_names)


@pytest.mark.parametrize("architecture", ["BertModel", "SqueezeBertModel"])
def test_lora_trains_in_both_frameworks_alike_and_saves_peft_directories(architecture, tiny_bert, tmp_path):
    from safetensors.numpy import load_file

    model, options = tiny_bert, LORA
    if architecture == "SqueezeBertModel":
        model = make_tiny_hf_checkpoint(tmp_path / "model", architecture)
        options = dict(LORA, lora_target_modules=SQUEEZEBERT_TARGETS)
    results = {}
    for framework in FRAMEWORKS:
        out = tmp_path / framework
        results[framework] = run_glue(GlueRunConfig(
            framework=framework, model=model, output_dir=out, data_dir=QQP_KSHOT_DIR, max_length=64,
            batch_size=8, epochs=1, lr=1e-2, num_threads=1, progress=False, verbose=False, dropout_masks="shared",
            **options))
        assert (out / "final_model" / ADAPTER_CONFIG).is_file() and (out / "final_model" / ADAPTER_WEIGHTS).is_file()
    torch_metrics, paddle_metrics = results["torch"], results["paddle"]
    assert torch_metrics["trainable_parameters"] == paddle_metrics["trainable_parameters"] < 5000
    assert abs(torch_metrics["epochs"][0]["train_loss"] - paddle_metrics["epochs"][0]["train_loss"]) <= 1e-5

    import peft
    import transformers

    torch_dir, paddle_dir = tmp_path / "torch" / "final_model", tmp_path / "paddle" / "final_model"
    base = transformers.AutoModelForSequenceClassification.from_pretrained(str(model), num_labels=2)
    peft.PeftModel.from_pretrained(base, str(torch_dir))  # a standard peft directory
    converted = tmp_path / "paddle_as_hf"
    convert_adapter(paddle_dir, converted, to="hf")
    trained_by_torch, trained_by_paddle = load_file(str(torch_dir / ADAPTER_WEIGHTS)), load_file(
        str(converted / ADAPTER_WEIGHTS))
    assert trained_by_torch.keys() == trained_by_paddle.keys()
    assert max(np.abs(trained_by_torch[k] - trained_by_paddle[k]).max() for k in trained_by_torch) <= 1e-5
    # the torch-trained adapter, converted to Paddle, gives the torch logits
    ids, mask = _token_ids(2)
    paddle_from_torch = tmp_path / "torch_as_paddle"
    convert_adapter(torch_dir, paddle_from_torch, to="paddle")
    torch_model, _ = load_adapted_model(torch_dir, model, "torch", tmp_path / "w1")
    paddle_model, _ = load_adapted_model(paddle_from_torch, model, "paddle", tmp_path / "w2")
    assert np.abs(_logits(torch_model, "torch", ids, mask) - _logits(paddle_model, "paddle", ids, mask)).max() <= 1e-5


def test_bad_lora_input_is_one_line_before_training(tiny_bert, tmp_path, capsys):
    from paddleport.cli import main
    from tests.test_output_safety import messages

    squeezebert = make_tiny_hf_checkpoint(tmp_path / "squeezebert", "SqueezeBertModel")
    config = json.loads((tiny_bert / "config.json").read_text())
    squeezebert_config = json.loads((squeezebert / "config.json").read_text())
    cases = [
        (config, LoraSettings(target_modules=("query", "nothing")), "'nothing' matches no module"),
        (config, LoraSettings(r=0), "must be positive"),
        (config, LoraSettings(target_modules=("LayerNorm",)), "not a Linear or a Conv1d"),
        # peft's grouped lora.Conv1d splits r over the groups (tiny k_groups 4)
        (squeezebert_config, LoraSettings(r=6, target_modules=("query", "key")),
         r"6 is not a multiple of the 4 groups of .*attention.key \(k_groups=4\).*multiple of 4"),
    ]
    for model_config, settings, message in cases:
        with pytest.raises(PaddleportError, match=message):
            plan_for_checkpoint(model_config, 2, settings)
    out = tmp_path / "run"
    for framework in FRAMEWORKS:
        assert main(["run-glue", "--framework", framework, "--model", str(squeezebert), "--output-dir", str(out),
                     "--peft", "lora", "--lora-r", "3"]) == 2
        lines = messages(capsys.readouterr().err)
        assert len(lines) == 1 and "--lora-r" in lines[0] and "3 is not a multiple of the 2 groups" in lines[0], lines
        assert not out.exists()


def test_adapter_for_another_base_model_is_refused(hf_adapter, tmp_path):
    other = make_tiny_hf_checkpoint(tmp_path / "other", "BertForSequenceClassification", hidden_size=48)
    command = [sys.executable, "-m", "paddleport", "merge", str(hf_adapter), str(other), str(tmp_path / "out")]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "adapter for another base model" in lines[0]
    assert not (tmp_path / "out").exists()
    shutil.rmtree(other)


def test_compare_adapted_models(adapter_case, tmp_path):
    from paddleport.convert import convert_checkpoint
    from paddleport.parity.compare import compare_models

    hf_adapter, tiny_classifier, _, _ = adapter_case
    paddle_base, paddle_adapter = tmp_path / "paddle_base", tmp_path / "paddle_adapter"
    convert_checkpoint(tiny_classifier, paddle_base, to="paddle")
    convert_adapter(hf_adapter, paddle_adapter, to="paddle")
    report = compare_models(tiny_classifier, paddle_base, hf_adapter=hf_adapter, paddle_adapter=paddle_adapter,
                            limit=8, max_length=32)
    assert report.passed and {diff.name for diff in report.tensors} >= {"layer.1", "logits"}
    assert max(diff.max_abs for diff in report.tensors) <= 1e-5
    with pytest.raises(PaddleportError, match="in pairs"):
        compare_models(tiny_classifier, paddle_base, hf_adapter=hf_adapter, limit=8)


@pytest.mark.parametrize("command", ["merge-into-base", "merge-into-adapter-parent", "convert-into-adapter"])
def test_force_never_replaces_the_adapter_or_base_being_read(command, hf_adapter, tiny_classifier, tmp_path, capsys):
    from paddleport.cli import main
    from tests.test_output_safety import messages

    arguments = {
        "merge-into-base": ["merge", hf_adapter, tiny_classifier, tiny_classifier, "--force"],
        "merge-into-adapter-parent": ["merge", hf_adapter, tiny_classifier, hf_adapter.parent, "--force"],
        "convert-into-adapter": ["convert", hf_adapter, hf_adapter, "--to", "paddle", "--force"],
    }[command]
    before = {path: path.read_bytes() for root in (hf_adapter, tiny_classifier) for path in root.iterdir()}
    assert main([str(argument) for argument in arguments]) == 2
    lines = messages(capsys.readouterr().err)
    assert len(lines) == 1 and "which this command reads; choose another output directory" in lines[0], lines
    assert {path: path.read_bytes() for root in (hf_adapter, tiny_classifier) for path in root.iterdir()} == before
