"""compare: forward and gradient parity on converted tiny checkpoints, failures named, bad input exit 2."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from paddleport.cli import main
from paddleport.errors import PaddleportError
from tests.fixtures import make_tiny_hf_checkpoint, spy

# What each class outputs beyond embeddings and the layers' hidden states (BertForMaskedLM has no pooler;
# SqueezeBertForMaskedLM computes one, as in transformers).
OUTPUTS_AFTER_LAYERS = {
    "BertModel": ["pooler_output"], "BertForSequenceClassification": ["pooler_output", "logits"],
    "BertForMaskedLM": ["logits"], "SqueezeBertModel": ["pooler_output"],
    "SqueezeBertForSequenceClassification": ["pooler_output", "logits"],
    "SqueezeBertForMaskedLM": ["pooler_output", "logits"],
}
ARCHITECTURES = tuple(OUTPUTS_AFTER_LAYERS)


def converted_pair(root: Path, architecture: str, **overrides) -> tuple[Path, Path]:
    from paddleport.convert import convert_checkpoint

    hf_dir = make_tiny_hf_checkpoint(root / f"hf-{architecture}", architecture, **overrides)
    paddle_dir = root / f"paddle-{architecture}"
    convert_checkpoint(hf_dir, paddle_dir, to="paddle", progress=False)
    return hf_dir, paddle_dir


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("parity")


@pytest.fixture(scope="module", params=ARCHITECTURES)
def graded_report(request, workdir):
    from paddleport.parity.compare import compare_models

    hf_dir, paddle_dir = converted_pair(workdir, request.param)
    return compare_models(hf_dir, paddle_dir, grad=True, limit=12, batch_size=8)


@pytest.fixture(scope="module")
def bert_pair(workdir) -> tuple[Path, Path]:
    return converted_pair(workdir / "cli", "BertForSequenceClassification")


def test_forward_parity_every_head(graded_report):
    names = [diff.name for diff in graded_report.tensors]
    assert names == ["embeddings", "layer.0", "layer.1", *OUTPUTS_AFTER_LAYERS[graded_report.architecture]]
    assert graded_report.first_failure is None
    assert all(diff.max_abs <= 1e-5 and diff.numel > 0 for diff in graded_report.tensors)
    assert graded_report.inputs["shortest"] == 1 and graded_report.inputs["longest"] == 128


def test_gradient_parity_every_head(graded_report):
    grad = graded_report.grad
    from safetensors import safe_open

    with safe_open(Path(graded_report.paddle_dir) / "model.safetensors", "np") as stored:
        parameters = len(list(stored.keys()))  # every parameter of the Paddle checkpoint has its gradient compared
    assert grad is not None and len(grad.tensors) == parameters
    assert grad.loss.max_abs <= 1e-5 * max(1.0, grad.loss.ref_max_abs), grad.loss
    for diff in grad.tensors:
        assert diff.max_abs <= 1e-5 or diff.max_abs <= 1e-5 * diff.ref_max_abs, diff
    assert grad.passed and graded_report.passed


def perturb(paddle_dir: Path, out: Path, tensor: str) -> Path:
    from safetensors.numpy import load_file, save_file

    shutil.copytree(paddle_dir, out)
    weights = load_file(out / "model.safetensors")
    noise = np.random.default_rng(0).standard_normal(weights[tensor].shape).astype(np.float32)
    weights[tensor] = weights[tensor] + 1e-2 * noise  # random: a constant shift would vanish in LayerNorm
    save_file(weights, str(out / "model.safetensors"), metadata={"format": "paddle"})
    return out


def test_perturbed_layer_is_named_first_failure(bert_pair, workdir, capsys):
    hf_dir, paddle_dir = bert_pair
    broken = perturb(paddle_dir, workdir / "broken", "bert.encoder.layer.1.output.dense.weight")
    report_path = workdir / "broken.json"
    assert main(["compare", str(hf_dir), str(broken), "--json", str(report_path), "--limit", "8"]) == 1
    report = json.loads(report_path.read_text())
    assert report["passed"] is False and report["first_failure"] == "layer.1"
    by_name = {t["name"]: t for t in report["tensors"]}
    assert by_name["layer.0"]["max_abs"] <= 1e-5 < by_name["layer.1"]["max_abs"]
    assert "FAIL: first tensor over atol 1e-05 is layer.1" in capsys.readouterr().out


def with_nan_weight(model_dir: Path, out: Path, tensor: str) -> Path:
    from safetensors.numpy import load_file, save_file

    shutil.copytree(model_dir, out)
    weights = load_file(out / "model.safetensors")
    weights[tensor][0, 0] = np.nan
    save_file(weights, str(out / "model.safetensors"), metadata={"format": "pt" if "hf" in out.name else "paddle"})
    return out


@pytest.mark.parametrize("side", ["hf", "paddle"])
def test_nan_weight_on_either_side_fails_forward_and_gradients(bert_pair, workdir, side, capsys):
    """One NaN weight is a failure (never max |Δ| 0.0): counted, its first position named, JSON strict."""
    hf_dir, paddle_dir = bert_pair
    tensor = "bert.encoder.layer.1.output.dense.weight"
    if side == "hf":
        hf_dir = with_nan_weight(hf_dir, workdir / "nan-hf", tensor)
    else:
        paddle_dir = with_nan_weight(paddle_dir, workdir / "nan-paddle", tensor)
    report_path = workdir / f"nan-{side}.json"
    assert main(["compare", str(hf_dir), str(paddle_dir), "--grad", "--limit", "4", "--json", str(report_path)]) == 1
    text = report_path.read_text()
    assert "NaN" not in text and "Infinity" not in text  # strict JSON: non-finite numbers are null
    report = json.loads(text)
    assert report["passed"] is False and report["first_failure"] == "layer.1"
    by_name = {t["name"]: t for t in report["tensors"]}
    assert by_name["layer.0"]["non_finite"] == 0 and by_name["layer.0"]["passed"] is True
    layer = by_name["layer.1"]
    assert layer["max_abs"] is None and layer["non_finite"] > 0 and layer["passed"] is False
    assert layer["first_non_finite"] == {"batch": 0, "index": [0, 0, 0]}
    assert by_name["logits"]["passed"] is False and report["grad"]["passed"] is False
    out = capsys.readouterr().out
    assert "forward FAIL: first tensor over atol 1e-05 is layer.1" in out and "non-finite, first at batch 0" in out
    assert "grad    FAIL at loss" in out or "grad    FAIL at" in out


def test_cli_pass_writes_json(bert_pair, workdir, capsys, monkeypatch):
    from paddleport.parity.porting import engine

    hf_dir, paddle_dir = bert_pair
    report_path = workdir / "pass.json"
    recorded = [spy(monkeypatch, engine, name) for name in ("record_torch", "record_paddle", "gradients")]
    assert main(["compare", str(hf_dir), str(paddle_dir), "--json", str(report_path), "--limit", "8",
                 "--batch-size", "4", "--max-length", "64", "--grad"]) == 0
    report = json.loads(report_path.read_text())
    batches = report["inputs"]["num_batches"]  # the engine's capture of every batch, and its gradient pass
    assert batches > 1 and [len(calls) for calls in recorded] == [batches, batches, 1]
    assert report["passed"] is True and report["atol"] == 1e-5 and report["first_failure"] is None
    assert {"name", "max_abs", "mean_abs", "max_rel"} <= set(report["tensors"][0])
    assert report["inputs"]["longest"] == 64 and "attention mask" in report["positions"]
    assert "forward PASS" in capsys.readouterr().out


def test_plain_text_inputs(bert_pair, tmp_path):
    from paddleport.parity.compare import compare_models

    text = tmp_path / "sentences.txt"
    text.write_text("A first sentence.\n\nAnother, rather longer, sentence about parity.\n")
    report = compare_models(*bert_pair, inputs=text)
    assert report.passed and report.inputs["num_examples"] == 2 + 3  # the three edge cases are added


def edit_config(directory: Path, **changes) -> None:
    path = directory / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def copy_with_config(source: Path, out: Path, **changes) -> Path:
    shutil.copytree(source, out)
    edit_config(out, **changes)
    return out


def test_different_architectures(bert_pair, workdir, capsys):
    _, squeeze_paddle = converted_pair(workdir / "arch", "SqueezeBertForSequenceClassification")
    capsys.readouterr()  # transformers' progress bars while the fixture wrote the checkpoint
    assert main(["compare", str(bert_pair[0]), str(squeeze_paddle)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "architecture SqueezeBertForSequenceClassification differs" in error


def test_different_vocabularies(bert_pair, workdir):
    from paddleport.parity.compare import compare_models

    _, other = converted_pair(workdir / "vocab", "BertForSequenceClassification", vocab_size=30600)
    with pytest.raises(PaddleportError, match="vocabulary size 30600 differs"):
        compare_models(bert_pair[0], other)


def test_config_weights_mismatch(bert_pair, workdir, capsys):
    hf_dir = copy_with_config(bert_pair[0], workdir / "hf-mismatch", intermediate_size=40)
    paddle_dir = copy_with_config(bert_pair[1], workdir / "pd-mismatch", intermediate_size=40)
    assert main(["compare", str(hf_dir), str(paddle_dir)]) == 2
    assert "weights do not match config.json" in capsys.readouterr().err


def test_paddle_weights_missing_a_tensor(bert_pair, workdir):
    from safetensors.numpy import load_file, save_file

    from paddleport.parity.compare import compare_models

    paddle_dir = workdir / "pd-missing"
    shutil.copytree(bert_pair[1], paddle_dir)
    weights = load_file(paddle_dir / "model.safetensors")
    del weights["bert.encoder.layer.0.output.dense.bias"]
    save_file(weights, str(paddle_dir / "model.safetensors"), metadata={"format": "paddle"})
    with pytest.raises(PaddleportError, match="weights do not match config.json") as error:
        compare_models(bert_pair[0], paddle_dir)
    assert error.value.where == str(paddle_dir)


def test_unknown_architecture(bert_pair, workdir, capsys):
    hf_dir = copy_with_config(bert_pair[0], workdir / "hf-gpt2", architectures=["GPT2Model"])
    assert main(["compare", str(hf_dir), str(bert_pair[1])]) == 2
    assert "architecture 'GPT2Model' is not supported" in capsys.readouterr().err


def test_empty_inputs_file(bert_pair, tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    assert main(["compare", *map(str, bert_pair), "--inputs", str(empty)]) == 2
    assert "inputs file holds no sentences" in capsys.readouterr().err


def test_cpu_bfloat16_needs_paddle_kernels(bert_pair):
    from paddleport.parity import devices
    from paddleport.parity.compare import compare_models

    reason = devices.paddle_eager_supports("bfloat16", "cpu")
    if reason is None:
        pytest.skip("this Paddle build has CPU bfloat16 kernels")
    with pytest.raises(PaddleportError, match="bfloat16 cannot be compared on cpu: Paddle eager has no CPU"):
        compare_models(*bert_pair, dtype="bfloat16")


def test_gpu_without_gpu_is_one_line_error(bert_pair, capsys):
    from paddleport.parity import devices

    if devices.gpu_frameworks():
        pytest.skip("a GPU is present")
    assert main(["compare", *map(str, bert_pair), "--device", "gpu"]) == 2
    assert "no GPU available" in capsys.readouterr().err


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_on_cpu_is_a_one_line_error(bert_pair, dtype, capsys):
    """Paddle eager has no CPU float16/bfloat16 matmul: compare says so (exit 2) instead of comparing nothing."""
    from paddleport.parity import devices

    if not devices.paddle_eager_supports(dtype, "cpu"):
        pytest.skip(f"this Paddle build has a CPU {dtype} matmul")
    assert main(["compare", *map(str, bert_pair), "--dtype", dtype]) == 2
    assert f"--dtype: {dtype} cannot be compared on cpu: Paddle eager has no CPU {dtype} matmul kernel" in \
        capsys.readouterr().err


def test_demo_step_prints_verdict_and_table(bert_pair):
    from paddleport.parity.bench import BenchOptions
    from paddleport.parity.demo import demo_step

    step = demo_step(*bert_pair, bench=BenchOptions(batch_sizes=(2,), seq_lens=(8,), iters=2, warmup=1,
                                                     paths=("torch eager", "paddle eager"), isolate=False))
    text = step.text
    assert step.report.passed and step.report.grad.passed
    assert "forward PASS" in text and "grad    PASS" in text
    assert "| torch | eager | float32 |" in text and "| paddle | eager | float32 |" in text


def test_real_minilm_checkpoint_passes_at_1e5(workdir):
    """The real all-MiniLM-L6-v2 on the default QQP inputs: every kept position within 1e-5."""
    from paddleport.convert import convert_checkpoint
    from paddleport.parity.compare import compare_models
    from tests.fixtures import MINILM_DIR

    convert_checkpoint(MINILM_DIR, workdir / "minilm", progress=False)
    report = compare_models(MINILM_DIR, workdir / "minilm")
    assert report.passed, report.verdict()
    assert [diff.name for diff in report.tensors][:2] == ["embeddings", "layer.0"]
    assert max(diff.max_abs for diff in report.tensors) <= 1e-5


def test_positions_follow_each_outputs_meaning_not_its_shape():
    """Per-token outputs are compared where the mask keeps a token; per-sequence outputs on every row, even when
    their width equals the padded length (a 3-label classifier on 3-token batches)."""
    from paddleport.parity.metrics import difference
    from paddleport.parity.outputs import SEQUENCE, TOKEN, compared_outputs, compared_positions

    kept = np.array([[1, 1, 0], [1, 0, 0]])
    hidden = np.zeros((2, 3, 4))
    shifted = hidden.copy()
    shifted[0, 2] = 1.0  # a padding position differs: not compared
    assert difference(shifted, hidden, compared_positions(TOKEN, kept)).max_abs == 0.0
    logits = np.zeros((2, 3))
    wrong = logits.copy()
    wrong[1, 2] = 1.0  # a label column that "looks like" padding by shape: compared
    assert difference(wrong, logits, compared_positions(SEQUENCE, kept)).max_abs == 1.0
    config = {"model_type": "bert", "num_hidden_layers": 2}
    assert compared_outputs(config, "BertForSequenceClassification") == {
        "embeddings": TOKEN, "layer.0": TOKEN, "layer.1": TOKEN, "pooler_output": SEQUENCE, "logits": SEQUENCE}
    assert compared_outputs(config, "BertForMaskedLM") == {
        "embeddings": TOKEN, "layer.0": TOKEN, "layer.1": TOKEN, "logits": TOKEN}
    assert list(compared_outputs({**config, "model_type": "squeezebert"}, "SqueezeBertForMaskedLM"))[-2:] == [
        "pooler_output", "logits"]
