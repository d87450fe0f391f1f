"""export: a static inference program that matches eager, written only after it was verified."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from paddleport.cli import main
from paddleport.errors import PaddleportError
from paddleport.parity.metrics import difference
from paddleport.parity.outputs import compared_positions, output_level
from tests.fixtures import make_tiny_hf_checkpoint, openmp_threads


def paddle_checkpoint(root: Path, architecture: str) -> Path:
    from paddleport.convert import convert_checkpoint

    hf_dir = make_tiny_hf_checkpoint(root / f"hf-{architecture}", architecture)
    convert_checkpoint(hf_dir, root / f"paddle-{architecture}", to="paddle", progress=False)
    return root / f"paddle-{architecture}"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("export")


@pytest.mark.parametrize("architecture", ["BertForSequenceClassification", "SqueezeBertModel"])
def test_export_round_trip(workdir, architecture):
    import paddle

    import paddleport.models as models
    from paddleport.parity.export import eager_outputs, export_model
    from paddleport.parity.inference import Predictor

    paddle_dir = paddle_checkpoint(workdir, architecture)
    report = export_model(paddle_dir, workdir / f"out-{architecture}")
    out = Path(report.out_dir)
    assert {"model.json", "model.pdiparams", "config.json", "export_info.json"} <= {p.name for p in out.iterdir()}
    assert max(report.max_abs_diff.values()) <= 1e-5
    assert json.loads((out / "export_info.json").read_text())["outputs"] == report.outputs
    # a shape the export check did not use: batch 5, 33 tokens, with padding
    rng = np.random.default_rng(1)
    mask = (np.arange(33)[None, :] < rng.integers(1, 34, size=(5, 1))).astype(np.int64)
    batch = {"input_ids": rng.integers(1, 30522, size=(5, 33)) * mask, "attention_mask": mask,
             "token_type_ids": np.zeros((5, 33), dtype=np.int64)}
    model = getattr(models, architecture).from_pretrained(paddle_dir)
    expected = eager_outputs(model, batch, report.outputs)
    config = json.loads((paddle_dir / "config.json").read_text())
    # per-token outputs where the mask keeps a token (padding rows are not part of the promise), per-sequence whole
    keeps = [compared_positions(output_level(name, config, architecture), mask) for name in report.outputs]
    for want, got, keep in zip(expected, Predictor(out)(batch), keeps, strict=True):
        assert difference(got, want, keep).within(1e-5)
    loaded = paddle.jit.load(str(out / "model"))
    got = loaded(*(paddle.to_tensor(batch[k]) for k in ("input_ids", "attention_mask", "token_type_ids")))
    got = got[0] if isinstance(got, (list, tuple)) else got
    assert difference(got.numpy(), expected[0], keeps[0]).within(1e-5)


def test_predictor_runs_leave_paddle_threads_as_set(workdir):
    """A paddle.inference run sets Paddle's OpenMP/MKL threads to 1 when it returns; paddleport puts them back, or
    every Paddle eager op after an export or a paddle.inference bench row ran on one thread."""
    from paddleport import runtime
    from paddleport.parity.export import export_model
    from paddleport.parity.inference import Predictor, PredictorOptions

    paddle_dir = paddle_checkpoint(workdir / "threads", "BertModel")
    with runtime.setup("cpu", 2, build_kernels=False):
        out = Path(export_model(paddle_dir, workdir / "threads-out").out_dir)  # its check runs a 1-thread predictor
        assert openmp_threads() == 2
        batch = {name: np.ones((2, 5), dtype=np.int64) for name in ("input_ids", "attention_mask", "token_type_ids")}
        Predictor(out, PredictorOptions(threads=1))(batch)
        assert openmp_threads() == 2


@pytest.mark.parametrize("change, message", [(lambda value: value + 1.0, "differs from eager by 1 > 1e-05"),
                                             (lambda value: np.where(value > 0, np.nan, value), "non-finite")],
                         ids=["shifted", "nan"])
def test_failed_verification_writes_nothing(tmp_path, monkeypatch, change, message):
    from paddleport.parity import export

    paddle_dir = paddle_checkpoint(tmp_path, "BertModel")
    real = export.eager_outputs
    monkeypatch.setattr(export, "eager_outputs",
                        lambda model, batch, names: [change(value) for value in real(model, batch, names)])
    out = tmp_path / "never"
    with pytest.raises(PaddleportError, match=message):
        export.export_model(paddle_dir, out)
    assert not out.exists() and not list(out.parent.glob(".never.*"))


def test_cli_export_refuses_existing_out(workdir, capsys):
    paddle_dir = paddle_checkpoint(workdir / "cli", "BertForMaskedLM")
    out = workdir / "cli-out"
    assert main(["export", str(paddle_dir), str(out)]) == 0
    assert "max |Δ| vs eager" in capsys.readouterr().out
    assert main(["export", str(paddle_dir), str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["export", str(paddle_dir), str(out), "--force"]) == 0
    assert (out / "model.json").is_file()


def test_real_minilm_export_agrees_with_eager_at_kept_positions(workdir):
    """Eager runs paddleport's CPU kernels, the exported program Paddle's ops: they agree where the mask keeps."""
    from paddleport.convert import convert_checkpoint
    from paddleport.parity.export import export_model
    from tests.fixtures import MINILM_DIR

    paddle_dir = workdir / "minilm-paddle"
    convert_checkpoint(MINILM_DIR, paddle_dir, to="paddle", progress=False)
    report = export_model(paddle_dir, workdir / "minilm-export")
    assert max(report.max_abs_diff.values()) <= 1e-5


def test_export_onnx_matches_eager_in_onnxruntime(workdir, capsys):
    """--format onnx: paddle2onnx's model.onnx, checked in ONNX Runtime; no Paddle program left beside it."""
    import paddleport.models as models
    from paddleport.parity.export import eager_outputs
    from paddleport.parity.onnx_runtime import OnnxSession

    paddle_dir = paddle_checkpoint(workdir / "onnx", "BertForSequenceClassification")
    out = workdir / "onnx-out"
    assert main(["export", str(paddle_dir), str(out), "--format", "onnx"]) == 0
    assert "model.onnx" in capsys.readouterr().out
    assert {p.name for p in out.iterdir()} >= {"model.onnx", "config.json", "export_info.json"}
    assert not list(out.glob("model.json")) and not list(out.glob(".program"))
    info = json.loads((out / "export_info.json").read_text())
    assert info["format"] == "onnx" and info["params"] is None and info["max_abs_diff"]["onnxruntime"] <= 1e-5
    rng = np.random.default_rng(2)  # a shape the export check did not use
    mask = (np.arange(21)[None, :] < rng.integers(1, 22, size=(4, 1))).astype(np.int64)
    batch = {"input_ids": rng.integers(1, 30522, size=(4, 21)) * mask, "attention_mask": mask,
             "token_type_ids": np.zeros((4, 21), dtype=np.int64)}
    model = models.BertForSequenceClassification.from_pretrained(paddle_dir)
    expected = eager_outputs(model, batch, info["outputs"])[0]
    assert np.abs(expected - OnnxSession(out / "model.onnx")(batch)[0]).max() <= 1e-5
    from paddleport.parity.export import export_model

    with pytest.raises(PaddleportError, match="unknown format 'tflite'"):
        export_model(paddle_dir, workdir / "never-tflite", fmt="tflite")


def test_export_onnx_of_tanh_gelu_model_matches_eager(tmp_path):
    """paddle2onnx 2.1 lowers Paddle's gelu(approximate=True) as the exact erf GELU; the ONNX export traces tanh-GELU
    as its formula instead, so ALBERT (gelu_new) in ONNX Runtime matches eager (it was 1.5e-3 off at full size)."""
    from paddleport.convert import convert_checkpoint
    from paddleport.parity.export import export_model

    # activations of a few units, where the two GELUs differ by up to 4.7e-4
    hf_dir = make_tiny_hf_checkpoint(tmp_path / "hf", "AlbertModel", hidden_act="gelu_new", initializer_range=0.5)
    convert_checkpoint(hf_dir, tmp_path / "paddle", to="paddle", progress=False)
    report = export_model(tmp_path / "paddle", tmp_path / "onnx", fmt="onnx")
    assert report.max_abs_diff["onnxruntime"] <= 1e-5


def test_export_onnx_after_a_paddle_export_in_the_same_process_keeps_tanh_gelu(tmp_path):
    """The bench traces the paddle.inference program first, then the ONNX one: dy2static's converted functions
    keep the module globals of their first conversion, so a rebound flag left ALBERT's ONNX file with erf-GELU."""
    from paddleport.convert import convert_checkpoint
    from paddleport.parity.export import export_model

    hf_dir = make_tiny_hf_checkpoint(tmp_path / "hf", "AlbertModel", hidden_act="gelu_new", initializer_range=0.5)
    convert_checkpoint(hf_dir, tmp_path / "paddle", to="paddle", progress=False)
    export_model(tmp_path / "paddle", tmp_path / "program", fmt="paddle")
    report = export_model(tmp_path / "paddle", tmp_path / "onnx", fmt="onnx")
    assert report.max_abs_diff["onnxruntime"] <= 1e-5


@pytest.mark.parametrize("make_source, message", [
    (lambda root: root / "missing", "model directory does not exist"),
    (lambda root: (root / "empty").mkdir() or root / "empty", "config.json is missing"),
    (lambda root: ((root / "bad").mkdir(), (root / "bad" / "config.json").write_text("{not json"))[0] or root / "bad",
     "config.json is not valid JSON"),
], ids=["missing-dir", "no-config", "unparsable-config"])
def test_export_bad_inputs_are_one_line_errors(tmp_path, capsys, make_source, message):
    source = make_source(tmp_path)
    assert main(["export", str(source), str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("paddleport: error: ") and message in error and len(error.splitlines()) == 1
    assert not (tmp_path / "out").exists()
