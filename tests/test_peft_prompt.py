"""Prompt tuning and p-tuning in both frameworks: the adapted forward against peft's on every architecture,
train-parity, run-glue, adapter conversion and compare, bad input (tiny seeded models)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from paddleport.data import QQP_KSHOT_DIR
from paddleport.errors import PaddleportError
from paddleport.glue_runners import GlueRunConfig, run_glue
from paddleport.glue_runners.parity import TrainParityConfig, run_train_parity
from paddleport.peft.adapters import convert_adapter, load_adapted_model, merge_adapter
from paddleport.peft.lora import ADAPTER_CONFIG, ADAPTER_WEIGHTS
from paddleport.peft.methods import framework_module, plan_for_checkpoint
from paddleport.peft.prompt import ENCODER_STATE, PROMPT_EMBEDDINGS, PromptSettings, prompt_initial_values
from paddleport.registry import ARCHITECTURES
from tests.fixtures import adapter_round_trip, make_tiny_hf_checkpoint, tiny_config

FRAMEWORKS = ("torch", "paddle")
PROMPT = dict(method="prompt", num_virtual_tokens=3)
P_TUNING_MLP = dict(method="p-tuning", num_virtual_tokens=3, encoder_hidden_size=16)
P_TUNING_LSTM = dict(P_TUNING_MLP, encoder_reparameterization_type="LSTM")
INIT_TEXT = "Are these questions the same?"  # 8 tokens with [CLS] and [SEP] (MiniLM's WordPiece)
# Every method on several architectures, each architecture once (the forward is the same code for every method).
VARIANT_OF = {"bert": PROMPT, "squeezebert": P_TUNING_LSTM, "roberta": P_TUNING_MLP, "xlm-roberta": PROMPT,
              "distilbert": P_TUNING_MLP, "electra": P_TUNING_LSTM, "albert": PROMPT}


def _inputs(model_type: str, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = rng.integers(1000, 5000, size=(3, 9))
    batch = {"input_ids": ids, "attention_mask": np.array([[1] * 9, [1] * 5 + [0] * 4, [1] * 2 + [0] * 7])}
    if "token_type_ids" in ARCHITECTURES[model_type].input_names:
        batch["token_type_ids"] = np.array([[0] * 4 + [1] * 5] * 3)
    if "task_type_ids" in ARCHITECTURES[model_type].input_names:  # ERNIE 3.0: what run-glue feeds (zeros)
        batch["task_type_ids"] = np.zeros_like(ids)
    return batch


def _logits(model, framework: str, batch: dict[str, np.ndarray]) -> np.ndarray:
    if framework == "torch":
        import torch

        with torch.no_grad():
            return model(**{key: torch.tensor(value) for key, value in batch.items()}).logits.numpy()
    import paddle

    with paddle.no_grad():
        return model(**{key: paddle.to_tensor(value) for key, value in batch.items()}).logits.numpy()


@pytest.mark.parametrize("model_type", sorted(ARCHITECTURES))
def test_adapted_forward_equals_peft_on_every_architecture(model_type, tmp_path):
    """Same prompt parameters in both: the Paddle wrapper computes what peft's forward computes (virtual tokens,
    extended mask and token types, the model's positions for inputs_embeds), padding rows included. An
    architecture the registry refuses is refused with its reason, before any model is built."""
    import paddle
    import torch
    import transformers

    from paddleport.convert import convert_checkpoint
    from paddleport.models import AutoModelForSequenceClassification

    entry = ARCHITECTURES[model_type]
    class_name = entry.class_name("sequence_classification")
    settings = PromptSettings(**VARIANT_OF.get(model_type, PROMPT))
    if entry.no_prompt_learning:
        with pytest.raises(PaddleportError, match=f"cannot adapt {model_type}: "):
            plan_for_checkpoint(tiny_config(class_name).to_dict(), 2, settings)
        return
    hf_dir = make_tiny_hf_checkpoint(tmp_path / "hf", class_name)
    convert_checkpoint(hf_dir, tmp_path / "paddle", to="paddle")
    plan = plan_for_checkpoint(json.loads((hf_dir / "config.json").read_text()), 2, settings)
    torch_model = framework_module(plan, "torch").apply(
        transformers.AutoModelForSequenceClassification.from_pretrained(str(hf_dir)), plan).eval()
    paddle_model = framework_module(plan, "paddle").apply(
        AutoModelForSequenceClassification.from_pretrained(tmp_path / "paddle"), plan)
    paddle_model.eval()
    by_name = {param.name: param for param in plan.params}
    torch_parameters = dict(framework_module(plan, "torch").canonical_parameters(torch_model))
    paddle_state = paddle_model.state_dict()
    values = prompt_initial_values({param.name: param.hf_shape for param in plan.params}, seed=3)
    assert set(values) == {param.name for param in plan.encoder_params}  # the table, and p-tuning's encoder
    with torch.no_grad():
        for name, value in values.items():
            torch_parameters[name].copy_(torch.from_numpy(value))
            paddle_state[by_name[name].paddle_name].set_value(
                paddle.to_tensor(by_name[name].transform.to_paddle(value)))
    batch = _inputs(model_type)
    torch_logits, paddle_logits = _logits(torch_model, "torch", batch), _logits(paddle_model, "paddle", batch)
    assert np.abs(torch_logits - paddle_logits).max() <= 1e-5
    base = transformers.AutoModelForSequenceClassification.from_pretrained(str(hf_dir)).eval()
    assert np.abs(_logits(base, "torch", batch) - torch_logits).max() > 1e-3  # the virtual tokens matter
    if "task_type_ids" in batch:  # left out, as peft + transformers run without them (task type 0 everywhere)
        assert torch_model.config.use_task_id
        without = {key: value for key, value in batch.items() if key != "task_type_ids"}
        assert np.array_equal(_logits(torch_model, "torch", without), torch_logits)
        assert np.abs(_logits(paddle_model, "paddle", without) - torch_logits).max() <= 1e-5
        batch["task_type_ids"][0, 3] = 1  # peft cannot extend them: refused in both frameworks
        for model, framework in ((torch_model, "torch"), (paddle_model, "paddle")):
            with pytest.raises(PaddleportError, match="task_type_ids: must be all zeros"):
                _logits(model, framework, batch)


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    return make_tiny_hf_checkpoint(tmp_path_factory.mktemp("tiny_bert"), "BertModel")


@pytest.fixture(scope="module")
def tiny_ernie(tmp_path_factory):  # ERNIE 3.0's form: use_task_id, task-type embeddings
    return make_tiny_hf_checkpoint(tmp_path_factory.mktemp("tiny_ernie"), "ErnieForSequenceClassification")


@pytest.fixture(scope="module")
def tiny_roberta(tmp_path_factory):
    return make_tiny_hf_checkpoint(tmp_path_factory.mktemp("tiny_roberta"), "RobertaForSequenceClassification")


@pytest.mark.parametrize("model, options", [
    ("tiny_roberta", dict(peft="prompt", num_virtual_tokens=4)),  # the classifier head's own dropout, shared
    ("tiny_bert", dict(peft="p-tuning", num_virtual_tokens=4, encoder_reparameterization_type="LSTM",
                       encoder_hidden_size=8)),
    ("tiny_ernie", dict(peft="prompt", num_virtual_tokens=4)),  # task types left out
])
def test_train_parity_with_virtual_tokens(model, options, request):
    report = run_train_parity(TrainParityConfig(model=request.getfixturevalue(model), steps=5, dropout=True, lr=1e-2,
                                                num_threads=1, **options))
    assert report["passed"] and report["max_loss_diff"] <= 1e-4
    assert report["max_param_diff"] <= 1e-4


@pytest.mark.parametrize("model, options", [
    ("tiny_bert", dict(peft="p-tuning", num_virtual_tokens=4, encoder_hidden_size=16)),
    ("tiny_ernie", dict(peft="prompt", num_virtual_tokens=4)),  # run-glue feeds zero task types: left out
    ("tiny_bert", dict(peft="prompt", num_virtual_tokens=10, prompt_tuning_init="TEXT",
                       prompt_tuning_init_text=INIT_TEXT)),
])
def test_prompt_learning_trains_in_both_frameworks_alike_and_saves_peft_directories(model, options, request,
                                                                                   tmp_path):
    import peft
    import transformers
    from safetensors.numpy import load_file

    model_dir = request.getfixturevalue(model)
    results = {}
    for framework in FRAMEWORKS:
        results[framework] = run_glue(GlueRunConfig(
            framework=framework, model=model_dir, output_dir=tmp_path / framework, data_dir=QQP_KSHOT_DIR,
            max_length=60, batch_size=8, epochs=1, lr=1e-2, num_threads=1, progress=False, verbose=False,
            dropout_masks="shared", **options))
    assert results["torch"]["trainable_parameters"] == results["paddle"]["trainable_parameters"]
    assert abs(results["torch"]["epochs"][0]["train_loss"] - results["paddle"]["epochs"][0]["train_loss"]) <= 1e-5
    torch_dir, paddle_dir = tmp_path / "torch" / "final_model", tmp_path / "paddle" / "final_model"
    peft_type = {"prompt": "PROMPT_TUNING", "p-tuning": "P_TUNING"}[options["peft"]]
    adapter_config = json.loads((torch_dir / ADAPTER_CONFIG).read_text())
    assert adapter_config["peft_type"] == peft_type
    by_paddle = json.loads((paddle_dir / ADAPTER_CONFIG).read_text())
    # what peft writes, but its version stamp and its doubled modules_to_save (["classifier", "score"] twice)
    differing = {key for key in by_paddle.keys() | adapter_config.keys()
                 if by_paddle.get(key) != adapter_config.get(key)}
    assert differing <= {"peft_version", "modules_to_save"}, differing
    assert adapter_config.get("prompt_tuning_init_text") == options.get("prompt_tuning_init_text")
    base = transformers.AutoModelForSequenceClassification.from_pretrained(str(model_dir), num_labels=2)
    peft.PeftModel.from_pretrained(base, str(torch_dir))  # a standard peft directory
    assert (paddle_dir / ENCODER_STATE).is_file() == (options["peft"] == "p-tuning")
    adapter_round_trip(torch_dir, tmp_path / "round_trip")  # HF -> Paddle -> HF bit for bit
    converted = tmp_path / "paddle_as_hf"
    convert_adapter(paddle_dir, converted, to="hf")
    by_torch, by_paddle = load_file(str(torch_dir / ADAPTER_WEIGHTS)), load_file(str(converted / ADAPTER_WEIGHTS))
    assert by_torch.keys() == by_paddle.keys() and PROMPT_EMBEDDINGS in by_torch
    assert max(np.abs(by_torch[key] - by_paddle[key]).max() for key in by_torch) <= 1e-5
    # the torch-trained adapter, converted to Paddle, gives the torch logits
    torch_as_paddle = tmp_path / "torch_as_paddle"
    convert_adapter(torch_dir, torch_as_paddle, to="paddle")
    batch = _inputs(json.loads((model_dir / "config.json").read_text())["model_type"], seed=2)
    torch_model, _ = load_adapted_model(torch_dir, model_dir, "torch", tmp_path / "w1")
    paddle_model, _ = load_adapted_model(torch_as_paddle, model_dir, "paddle", tmp_path / "w2")
    assert np.abs(_logits(torch_model, "torch", batch) - _logits(paddle_model, "paddle", batch)).max() <= 1e-5


@pytest.mark.parametrize("num_virtual_tokens", [5, 19])  # the text's 8 tokens cut, and repeated
def test_text_init_is_peft_own_and_paddle_starts_bit_for_bit(num_virtual_tokens, tiny_ernie, tmp_path):
    """TEXT: torch's table is the one peft builds (the word embeddings of the tokenized text, special tokens
    included, repeated/cut); the Paddle side starts from the same table bit for bit. The shared seeded
    initialisation leaves it alone."""
    import torch
    import transformers

    from paddleport.glue_runners.backends.base import BackendOptions, make_backend
    from paddleport.glue_runners.checkpoint_info import inspect_model_dir
    from paddleport.glue_runners.runner import load_backend_model

    settings = PromptSettings(method="prompt", num_virtual_tokens=num_virtual_tokens, prompt_tuning_init="TEXT",
                              prompt_tuning_init_text=INIT_TEXT, tokenizer_name_or_path=str(tiny_ernie))
    tables = {framework: load_backend_model(make_backend(framework, BackendOptions(peft=settings)),
                                            inspect_model_dir(tiny_ernie), 2, 0, tmp_path / framework
                                            ).get_parameters()["prompt_encoder.embedding.weight"]
              for framework in FRAMEWORKS}
    assert tables["torch"].dtype == tables["paddle"].dtype == np.float32
    assert np.array_equal(tables["torch"], tables["paddle"])
    # peft's own, built here without paddleport: the table is the text's word embeddings
    import peft

    model = transformers.AutoModelForSequenceClassification.from_pretrained(str(tiny_ernie))
    config = peft.PromptTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=num_virtual_tokens,
                                     prompt_tuning_init="TEXT", prompt_tuning_init_text=INIT_TEXT,
                                     tokenizer_name_or_path=str(tiny_ernie))
    by_peft = peft.get_peft_model(model, config).prompt_encoder["default"].embedding.weight.detach().numpy()
    assert np.array_equal(by_peft, tables["torch"])
    ids = transformers.AutoTokenizer.from_pretrained(str(tiny_ernie))(INIT_TEXT)["input_ids"]
    assert len(ids) == 8 and ids[0] == 101  # [CLS] ... [SEP]
    rows = [ids[index % len(ids)] for index in range(num_virtual_tokens)]
    with torch.no_grad():
        assert np.array_equal(tables["paddle"], model.get_input_embeddings().weight[rows].numpy())


@pytest.fixture(scope="module")
def hf_prompt_adapter(tiny_roberta, tmp_path_factory):
    """A prompt-tuning directory written by peft itself, with a non-trivial prompt and classifier."""
    import peft
    import torch
    import transformers

    torch.manual_seed(1)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(str(tiny_roberta))
    adapted = peft.get_peft_model(model, peft.PromptTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=5))
    with torch.no_grad():
        for param in adapted.parameters():
            if param.requires_grad:
                param.add_(torch.randn_like(param) * 0.2)
    out = tmp_path_factory.mktemp("prompt_adapters") / "hf"
    adapted.save_pretrained(str(out))
    return out


def test_hf_prompt_adapter_round_trips_bit_for_bit_and_compares(hf_prompt_adapter, tiny_roberta, tmp_path):
    from paddleport.convert import convert_checkpoint
    from paddleport.parity.compare import compare_models

    original, transposed, paddle_adapter = adapter_round_trip(hf_prompt_adapter, tmp_path)
    key = "base_model.classifier.dense.weight"
    assert np.array_equal(transposed[key], original[key].T)
    assert np.array_equal(transposed[PROMPT_EMBEDDINGS], original[PROMPT_EMBEDDINGS])

    paddle_base = tmp_path / "paddle_base"
    convert_checkpoint(tiny_roberta, paddle_base, to="paddle")
    report = compare_models(tiny_roberta, paddle_base, hf_adapter=hf_prompt_adapter, paddle_adapter=paddle_adapter,
                            limit=8, max_length=32)
    assert report.passed and {diff.name for diff in report.tensors} >= {"embeddings", "layer.1", "logits"}
    assert max(diff.max_abs for diff in report.tensors) <= 1e-5


def test_bad_prompt_input_is_one_line_before_training(tiny_bert, hf_prompt_adapter, tmp_path, monkeypatch, capsys):
    from tests.test_output_safety import run_cli

    config = json.loads((tiny_bert / "config.json").read_text())
    cases = [
        (PromptSettings(num_virtual_tokens=0), "--num-virtual-tokens: must be positive"),
        (PromptSettings(method="p-tuning", encoder_hidden_size=-1), "--encoder-hidden-size: must be positive"),
    ]
    text = dict(method="prompt", prompt_tuning_init_text="Same?", tokenizer_name_or_path=str(tiny_bert))
    cases += [
        (PromptSettings(prompt_tuning_init="TEXT", tokenizer_name_or_path=str(tiny_bert)),
         "--prompt-tuning-init-text: is required by --prompt-tuning-init TEXT"),
        (PromptSettings(**dict(text, method="p-tuning"), prompt_tuning_init="TEXT"),
         "--prompt-tuning-init: is for prompt tuning .* p-tuning .* has no TEXT initialisation"),
        (PromptSettings(**text), "--prompt-tuning-init-text: is only read with --prompt-tuning-init TEXT"),
        (PromptSettings(**dict(text, tokenizer_name_or_path=str(tmp_path)), prompt_tuning_init="TEXT"),
         "has no tokenizer files"),
        (PromptSettings(prompt_tuning_init="SAMPLE_VOCAB"), "--prompt-tuning-init: must be one of RANDOM, TEXT"),
    ]
    for settings, message in cases:
        with pytest.raises(PaddleportError, match=message):
            plan_for_checkpoint(config, 2, settings)
    with pytest.raises(PaddleportError, match=r"--prompt-tuning-init-text: gives token ids \[101, 2168, 1029\] "
                                              "outside the model's 100 word embeddings"):
        plan_for_checkpoint(config | {"vocab_size": 100}, 2, PromptSettings(**text, prompt_tuning_init="TEXT"))
    for options, message in [
        (["--prompt-tuning-init", "text"], "--prompt-tuning-init-text: is required"),
        (["--peft", "p-tuning", "--prompt-tuning-init", "TEXT", "--prompt-tuning-init-text", "Same?"],
         "--prompt-tuning-init: is for prompt tuning"),
    ]:
        out = tmp_path / "text_run"
        code, lines = run_cli(capsys, "run-glue", "--framework", "torch", "--model", tiny_bert, "--output-dir", out,
                              "--peft", "prompt", *options)
        assert code == 2 and len(lines) == 1 and message in lines[0] and not out.exists(), lines
    no_tokenizer = tmp_path / "no_tokenizer"
    no_tokenizer.mkdir()
    for name in ("config.json", "model.safetensors"):
        (no_tokenizer / name).write_bytes((tiny_bert / name).read_bytes())
    code, lines = run_cli(capsys, "run-glue", "--framework", "paddle", "--model", no_tokenizer, "--output-dir",
                          tmp_path / "text_run", "--peft", "prompt", "--prompt-tuning-init", "TEXT",
                          "--prompt-tuning-init-text", "Same?")
    assert code == 2 and len(lines) == 1 and "has no tokenizer files" in lines[0], lines
    assert not (tmp_path / "text_run").exists()
    # an architecture whose Paddle model takes no inputs_embeds is refused with the registry's reason
    import paddleport.registry as registry

    refused = replace(registry.ARCHITECTURES["bert"], no_prompt_learning="no inputs_embeds here")
    monkeypatch.setitem(registry.CLASS_ARCHITECTURE, "BertForSequenceClassification", refused)
    with pytest.raises(PaddleportError, match="p-tuning cannot adapt bert: no inputs_embeds here"):
        plan_for_checkpoint(config, 2, PromptSettings(method="p-tuning"))
    monkeypatch.undo()

    out = tmp_path / "run"
    code, lines = run_cli(capsys, "run-glue", "--framework", "paddle", "--model", tiny_bert, "--output-dir", out,
                          "--peft", "prompt", "--num-virtual-tokens", "100", "--max-length", "64")
    assert code == 2 and len(lines) == 1, lines
    assert "--max-length" in lines[0] and "less 100 virtual tokens" in lines[0] and not out.exists()

    other = make_tiny_hf_checkpoint(tmp_path / "other", "RobertaForSequenceClassification", hidden_size=48)
    code, lines = run_cli(capsys, "compare", other, other, "--hf-adapter", hf_prompt_adapter, "--paddle-adapter",
                          hf_prompt_adapter)
    assert code == 2 and len(lines) == 1 and "adapter for another base model" in lines[0], lines
    with pytest.raises(PaddleportError, match="no weights to merge them into"):
        merge_adapter(hf_prompt_adapter, other, tmp_path / "merged")
    assert not (tmp_path / "merged").exists()


def test_layer_norm_input_gradient_under_a_frozen_weight():
    """Paddle 3.3.1's CPU layer_norm backward drops a frozen weight from the input's gradient; paddleport's
    LayerNorm fallback (used where the kernels are not) applies the weight after the norm instead."""
    import paddle
    import torch

    from paddleport.models.layers import LayerNorm, _paddle_layer_norm

    rng = np.random.default_rng(0)
    x, weight, upstream = (rng.standard_normal(shape).astype(np.float32) for shape in ((2, 5, 8), (8,), (2, 5, 8)))
    layer = LayerNorm(8)
    layer.weight.set_value(paddle.to_tensor(weight))
    layer.weight.stop_gradient = layer.bias.stop_gradient = True
    ours = paddle.to_tensor(x, stop_gradient=False)
    (_paddle_layer_norm(layer, ours) * paddle.to_tensor(upstream)).sum().backward()
    reference = torch.tensor(x, requires_grad=True)
    normalized = torch.nn.functional.layer_norm(reference, (8,), torch.tensor(weight), torch.zeros(8), 1e-5)
    (normalized * torch.tensor(upstream)).sum().backward()
    assert np.abs(ours.grad.numpy() - reference.grad.numpy()).max() <= 1e-5


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_p_tuning_checkpoint_reloads_its_encoder_exactly(framework, tiny_bert, tmp_path):
    """peft's file holds only the encoder's output: run-glue's checkpoints keep the MLP/LSTM beside it, so a
    resumed run continues from the same encoder."""
    from paddleport.glue_runners.backends.base import BackendOptions, make_backend
    from paddleport.glue_runners.checkpoint_info import inspect_model_dir
    from paddleport.glue_runners.runner import load_backend_model

    options = BackendOptions(peft=PromptSettings(**P_TUNING_LSTM))
    saved, resumed = (load_backend_model(make_backend(framework, options), inspect_model_dir(tiny_bert), 2, seed,
                                         tmp_path / f"work{seed}") for seed in (0, 5))
    saved.save_model(tmp_path / "checkpoint")
    assert (tmp_path / "checkpoint" / ENCODER_STATE).is_file()
    resumed.load_model_weights(tmp_path / "checkpoint")
    expected, loaded = saved.get_parameters(), resumed.get_parameters()
    assert any("lstm_head" in name for name in expected)
    assert all(np.array_equal(expected[name], loaded[name]) for name in expected)
