"""Bottleneck adapters (Houlsby, Pfeiffer) in both frameworks: train-parity, run-glue, AdapterHub's directory
layout, conversion both ways, compare, and bad input (tiny seeded models)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from paddleport.data import QQP_KSHOT_DIR
from paddleport.errors import PaddleportError
from paddleport.glue_runners import GlueRunConfig, run_glue
from paddleport.glue_runners.parity import TrainParityConfig, run_train_parity
from paddleport.peft.adapters import convert_adapter, load_adapted_model, merge_adapter
from paddleport.peft.bottleneck import BOTTLENECK_FILE, HEAD_CONFIG, HEAD_FILE, BottleneckSettings
from paddleport.peft.methods import plan_for_checkpoint
from tests.fixtures import make_tiny_hf_checkpoint
from tests.test_peft import _logits

FRAMEWORKS = ("torch", "paddle")
ADAPTER = dict(peft="adapter", adapter_config="houlsby", reduction_factor=4)


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    return make_tiny_hf_checkpoint(tmp_path_factory.mktemp("tiny_bert"), "BertModel")


# Architectures whose adapters sit elsewhere than BERT's output blocks (AdapterHub's DistilBERT / ALBERT
# integrations, SqueezeBERT's own layout) and DeBERTa-v2 (BERT-style blocks): each with Houlsby and Pfeiffer.
OTHER_LAYOUTS = [(architecture, config) for architecture in ("DistilBertModel", "AlbertModel", "DebertaV2Model",
                                                             "SqueezeBertModel") for config in ("houlsby", "pfeiffer")]
# The tiny ALBERT has albert-base-v2's hidden dropout 0: on here, so shared masks meet the dropout before the site.
TINY_OVERRIDES = {"AlbertModel": {"hidden_dropout_prob": 0.1}}


def _tiny(path, architecture):
    return make_tiny_hf_checkpoint(path, architecture, **TINY_OVERRIDES.get(architecture, {}))


@pytest.mark.parametrize("architecture,config", [("BertModel", "houlsby"), ("BertModel", "pfeiffer"),
                                                 ("RobertaModel", "houlsby"), ("XLMRobertaModel", "pfeiffer"),
                                                 ("ElectraModel", "houlsby"), ("ErnieModel", "pfeiffer"),
                                                 *OTHER_LAYOUTS])
def test_train_parity_with_adapters_and_dropout(architecture, config, tmp_path):
    model = _tiny(tmp_path / "model", architecture)
    report = run_train_parity(TrainParityConfig(model=model, steps=5, dropout=True, lr=1e-2, num_threads=1,
                                                peft="adapter", adapter_config=config, reduction_factor=4))
    assert report["passed"] and report["max_loss_diff"] <= 1e-4
    assert report["max_param_diff"] <= 1e-4


def test_plan_places_adapters_as_adapterhub(tiny_bert):
    config = json.loads((tiny_bert / "config.json").read_text())
    houlsby = plan_for_checkpoint(config, 2, BottleneckSettings.preset("houlsby", 4))
    pfeiffer = plan_for_checkpoint(config, 2, BottleneckSettings.preset("pfeiffer", 4))
    assert houlsby.adapted == ("bert.encoder.layer.0.attention.output", "bert.encoder.layer.0.output",
                               "bert.encoder.layer.1.attention.output", "bert.encoder.layer.1.output")
    assert pfeiffer.adapted == ("bert.encoder.layer.0.output", "bert.encoder.layer.1.output")
    names = {param.name: param.hf_shape for param in houlsby.trainable}
    assert names["bert.encoder.layer.0.output.adapters.default.adapter_down.0.weight"] == (8, 32)
    assert names["bert.encoder.layer.0.output.adapters.default.adapter_up.weight"] == (32, 8)
    assert {"classifier.weight", "classifier.bias"} <= set(names)
    assert sum(np.prod(shape) for shape in names.values()) == 4 * (32 * 8 + 8 + 8 * 32 + 32) + 2 * 32 + 2


def _outputs(model, framework, ids, mask):
    """Logits and the last hidden state at the positions the attention mask keeps."""
    kept = mask.astype(bool)
    if framework == "torch":
        import torch

        with torch.no_grad():
            out = model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask), output_hidden_states=True)
            return out.logits.numpy(), out.hidden_states[-1].numpy()[kept]
    import paddle

    with paddle.no_grad():
        out = model(input_ids=paddle.to_tensor(ids), attention_mask=paddle.to_tensor(mask), output_hidden_states=True)
        return out.logits.numpy(), out.hidden_states[-1].numpy()[kept]


@pytest.mark.parametrize("architecture,config", OTHER_LAYOUTS)
def test_adapted_forward_is_the_same_in_both_frameworks(architecture, config, tmp_path):
    import torch
    import transformers
    from safetensors.numpy import load_file

    from paddleport.peft import torch_bottleneck

    base = _tiny(tmp_path / "base", architecture)
    plan = plan_for_checkpoint(json.loads((base / "config.json").read_text()), 2,
                               BottleneckSettings.preset(config, 4))
    rng = np.random.default_rng(3)
    ids, mask = rng.integers(1000, 5000, size=(3, 11)), np.array([[1] * 11, [1] * 7 + [0] * 4, [1] * 3 + [0] * 8])
    model = transformers.AutoModelForSequenceClassification.from_pretrained(str(base), num_labels=2).eval()
    unadapted = _outputs(model, "torch", ids, mask)
    model = torch_bottleneck.apply(model, plan)
    adapters = {name: param for name, param in model.named_parameters() if ".adapters." in name}
    assert set(adapters) == {param.name for param in plan.trainable if not plan.is_head(param.name)}
    with torch.no_grad():  # adapter_up zero: the replaced forwards compute transformers' own
        for name, param in adapters.items():
            param.copy_(torch.from_numpy(rng.normal(0.0, 0.3, param.shape).astype(np.float32)))
            param.mul_(0.0 if ".adapter_up." in name else 1.0)
    assert all(np.abs(a - b).max() <= 1e-6 for a, b in zip(_outputs(model, "torch", ids, mask), unadapted))
    with torch.no_grad():  # weights far from their start, so that every adapter changes the output
        for param in adapters.values():
            param.copy_(torch.from_numpy(rng.normal(0.0, 0.3, param.shape).astype(np.float32)))
    torch_dir = torch_bottleneck.save_adapter(model, plan, tmp_path / "torch_adapter", None)

    assert set(load_file(str(torch_dir / BOTTLENECK_FILE))) == set(adapters)  # AdapterHub's names
    paddle_dir = tmp_path / "paddle_adapter"
    convert_adapter(torch_dir, paddle_dir, to="paddle")

    torch_model, _ = load_adapted_model(torch_dir, base, "torch", tmp_path / "w1")
    paddle_model, _ = load_adapted_model(paddle_dir, base, "paddle", tmp_path / "w2")
    torch_out, paddle_out = _outputs(torch_model, "torch", ids, mask), _outputs(paddle_model, "paddle", ids, mask)
    assert all(np.abs(a - b).max() <= 1e-5 for a, b in zip(torch_out, paddle_out))
    assert np.abs(torch_out[1] - unadapted[1]).max() > 1e-3  # the adapters took part


# Houlsby on each layout in `make test`; Pfeiffer (the same code with fewer sites) on them in `make test-full`
@pytest.mark.parametrize("architecture,config", [
    ("BertModel", "houlsby"),
    *(pytest.param(*case, marks=pytest.mark.full) if case[1] == "pfeiffer" else case for case in OTHER_LAYOUTS)])
def test_adapters_train_alike_and_convert_both_ways(architecture, config, tiny_bert, tmp_path):
    from safetensors.numpy import load_file

    base = tiny_bert if architecture == "BertModel" else _tiny(tmp_path / "base", architecture)
    base_config = json.loads((base / "config.json").read_text())
    plan = plan_for_checkpoint(base_config, 2, BottleneckSettings.preset(config, 4))
    results = {}
    for framework in FRAMEWORKS:
        results[framework] = run_glue(GlueRunConfig(
            framework=framework, model=base, output_dir=tmp_path / framework, data_dir=QQP_KSHOT_DIR,
            max_train_samples=16, max_eval_samples=8, max_length=32, batch_size=8, epochs=1, lr=1e-2, num_threads=1,
            progress=False, verbose=False,
            dropout_masks="shared", **(ADAPTER | {"adapter_config": config})))
    trainable = sum(int(np.prod(param.hf_shape)) for param in plan.trainable)  # 2274 for the tiny BERT
    assert results["torch"]["trainable_parameters"] == results["paddle"]["trainable_parameters"] == trainable
    assert abs(results["torch"]["epochs"][0]["train_loss"] - results["paddle"]["epochs"][0]["train_loss"]) <= 1e-5
    torch_dir, paddle_dir = tmp_path / "torch" / "final_model", tmp_path / "paddle" / "final_model"
    for directory in (torch_dir, paddle_dir):  # AdapterHub's files
        assert {path.name for path in directory.iterdir()} == {"adapter_config.json", BOTTLENECK_FILE, HEAD_CONFIG,
                                                                HEAD_FILE}
    saved = json.loads((torch_dir / "adapter_config.json").read_text())
    assert saved["config"]["mh_adapter"] == (config == "houlsby")
    assert saved["config"]["non_linearity"] == {"houlsby": "swish", "pfeiffer": "relu"}[config]
    assert saved["model_type"] == base_config["model_type"] and saved["version"].startswith("adapters.")

    converted = tmp_path / "paddle_as_hf"
    convert_adapter(paddle_dir, converted, to="hf")
    for name in (BOTTLENECK_FILE, HEAD_FILE):
        by_torch, by_paddle = load_file(str(torch_dir / name)), load_file(str(converted / name))
        assert by_torch.keys() == by_paddle.keys()
        assert max(np.abs(by_torch[key] - by_paddle[key]).max() for key in by_torch) <= 1e-5
    # HF -> Paddle -> HF: every tensor bit for bit, config files unchanged
    there, back = tmp_path / "there", tmp_path / "back"
    convert_adapter(torch_dir, there, to="paddle")
    convert_adapter(there, back, to="hf")
    for name in (BOTTLENECK_FILE, HEAD_FILE):
        original, returned = load_file(str(torch_dir / name)), load_file(str(back / name))
        assert all(np.array_equal(original[key], returned[key]) for key in original)
    assert (back / "adapter_config.json").read_text() == (torch_dir / "adapter_config.json").read_text()
    # the torch-trained adapter, converted to Paddle, gives the torch logits
    rng = np.random.default_rng(2)
    ids, mask = rng.integers(1000, 5000, size=(3, 11)), np.array([[1] * 11, [1] * 7 + [0] * 4, [1] * 3 + [0] * 8])
    torch_model, _ = load_adapted_model(torch_dir, base, "torch", tmp_path / "w1")
    paddle_model, _ = load_adapted_model(there, base, "paddle", tmp_path / "w2")
    assert np.abs(_logits(torch_model, "torch", ids, mask) - _logits(paddle_model, "paddle", ids, mask)).max() <= 1e-5

    from paddleport.cli import main as cli_main

    paddle_base = tmp_path / "paddle_base"
    assert cli_main(["convert", str(base), str(paddle_base)]) == 0
    report = tmp_path / "compare.json"
    assert cli_main(["compare", str(base), str(paddle_base), "--hf-adapter", str(torch_dir),
                     "--paddle-adapter", str(paddle_dir), "--limit", "8", "--json", str(report)]) == 0
    assert json.loads(report.read_text())["passed"]


def _one_line_exit_2(capsys, command, message):
    from tests.test_output_safety import run_cli

    code, lines = run_cli(capsys, *command)
    assert code == 2 and len(lines) == 1 and message in lines[0], lines


def test_bad_adapter_input_is_one_line_before_training(tiny_bert, tmp_path, capsys):
    config = json.loads((tiny_bert / "config.json").read_text())
    for factor, message in [(0, "must be positive"), (-2, "must be positive"), (5, "does not divide"),
                            (64, "does not divide")]:
        with pytest.raises(PaddleportError, match=message):
            plan_for_checkpoint(config, 2, BottleneckSettings(reduction_factor=factor))
    out = tmp_path / "run"
    _one_line_exit_2(capsys, ["run-glue", "--framework", "paddle", "--model", str(tiny_bert), "--output-dir", str(out),
                      "--peft", "adapter", "--reduction-factor", "5"], "--reduction-factor")
    assert not out.exists()


def test_every_architecture_takes_adapters_and_one_without_a_layout_is_refused(monkeypatch):
    from dataclasses import replace

    import paddleport.registry as registry
    assert all(entry.no_bottleneck_adapters is None for entry in registry.ARCHITECTURES.values())
    # an architecture without a layout (a future one) is refused with the registry's reason, before any model
    refused = replace(registry.ARCHITECTURES["bert"], bottleneck_layout=None)
    monkeypatch.setitem(registry.CLASS_ARCHITECTURE, "BertForSequenceClassification", refused)
    with pytest.raises(PaddleportError, match="bottleneck adapters cannot adapt bert: paddleport has no adapter"):
        plan_for_checkpoint({"model_type": "bert", "hidden_size": 32}, 2, BottleneckSettings())


def test_adapter_directory_misuse_is_refused(tiny_bert, tmp_path, capsys):
    from paddleport.peft import torch_bottleneck
    import transformers

    config = json.loads((tiny_bert / "config.json").read_text())
    plan = plan_for_checkpoint(config, 2, BottleneckSettings.preset("pfeiffer", 4))
    model = transformers.AutoModelForSequenceClassification.from_pretrained(str(tiny_bert), num_labels=2)
    adapter = torch_bottleneck.save_adapter(torch_bottleneck.apply(model, plan), plan, tmp_path / "adapter", None)
    with pytest.raises(PaddleportError, match="cannot be folded"):
        merge_adapter(adapter, tiny_bert, tmp_path / "merged")
    other = make_tiny_hf_checkpoint(tmp_path / "other", "BertForSequenceClassification", hidden_size=48)
    _one_line_exit_2(capsys, ["compare", str(other), str(other), "--hf-adapter", str(adapter), "--paddle-adapter",
                      str(adapter)], "is an adapter for another base model")
    unsupported = tmp_path / "parallel"
    convert_adapter(adapter, unsupported, to="paddle")
    saved = json.loads((unsupported / "adapter_config.json").read_text())
    saved["config"]["is_parallel"] = True
    (unsupported / "adapter_config.json").write_text(json.dumps(saved))
    _one_line_exit_2(capsys, ["convert", str(unsupported), str(tmp_path / "x"), "--to", "hf"], "is_parallel=True")
    assert not (tmp_path / "merged").exists() and not (tmp_path / "x").exists()


def test_a_run_written_before_the_adapter_options_resumes_and_a_changed_option_is_refused(tmp_path):
    from paddleport.glue_runners.runner import GlueRunConfig, _check_resume_settings

    config = GlueRunConfig(framework="torch", model=tmp_path, output_dir=tmp_path / "out", peft="lora")
    older = {key: value for key, value in config.to_json().items() if key not in ("adapter_config", "reduction_factor")}
    _check_resume_settings(config, older, tmp_path)  # the options it lacks had their defaults
    changed = GlueRunConfig(framework="torch", model=tmp_path, output_dir=tmp_path / "out", peft="adapter",
                            reduction_factor=8)
    with pytest.raises(PaddleportError, match="reduction_factor 16 -> 8"):
        _check_resume_settings(changed, older | {"peft": "adapter"}, tmp_path)
