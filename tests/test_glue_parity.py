"""train-parity: 20 optimizer steps in torch and Paddle agree within tolerances scaled to the run (tiny BERT, tiny
SqueezeBERT, dropout off and on with shared masks); a Paddle optimizer that skips weight decay, decays LayerNorm
weights, or a NaN loss at any step fails it."""

from __future__ import annotations

import json

import pytest

from paddleport.data import QQP_KSHOT_DIR
from paddleport.glue_runners import TrainParityConfig, run_train_parity
from paddleport.parity.porting.training import FLOAT32_EPS, LOSS_NOISE_ULPS
from tests.fixtures import make_tiny_hf_checkpoint, spy


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    return make_tiny_hf_checkpoint(tmp_path_factory.mktemp("parity") / "bert", "BertModel")


@pytest.mark.parametrize("dropout", [False, True], ids=["dropout-off", "shared-dropout"])
@pytest.mark.parametrize("architecture", ["BertModel", "SqueezeBertModel"])
def test_twenty_steps_agree(architecture, dropout, tmp_path):
    model = make_tiny_hf_checkpoint(tmp_path / "model", architecture)
    report = run_train_parity(TrainParityConfig(model=model, steps=20, data_dir=QQP_KSHOT_DIR, num_threads=1,
                                                dropout=dropout))
    assert report["passed"], report["failures"]
    assert report["dropout"] is dropout and len(report["losses"]) == 20
    scale = max(1.0, *(abs(row["torch"]) for row in report["losses"]))
    assert report["tolerance"] == LOSS_NOISE_ULPS * FLOAT32_EPS * scale  # ~3.8e-6 for a loss near 0.69
    assert max(row["abs_diff"] for row in report["losses"]) == report["max_loss_diff"] <= report["tolerance"]
    assert report["losses"][0]["torch"] != report["losses"][-1]["torch"]  # the steps did train
    assert 1e-4 < report["max_param_movement"] < 1e-2  # lr 1e-4 x 20 steps, warm-up and decay
    assert report["param_worst_vs_tolerance"] <= 1.0 and report["non_finite_losses"] == 0


def paddle_decays(monkeypatch, rule):
    """Deliberate bug: the Paddle backend's AdamW decays the parameters ``rule`` picks (torch's stays right)."""
    from paddleport.glue_runners.backends import paddle_backend

    monkeypatch.setattr(paddle_backend, "uses_weight_decay", rule)


def test_cli_passes_then_fails_when_paddle_skips_weight_decay(tiny_bert, tmp_path, capsys, monkeypatch):
    from paddleport.cli import main

    report_path = tmp_path / "parity.json"
    arguments = ["train-parity", "--model", str(tiny_bert), "--steps", "20", "--data-dir", str(QQP_KSHOT_DIR),
                 "--num-threads", "1", "--json", str(report_path)]
    assert main(arguments) == 0
    assert capsys.readouterr().out.rstrip().endswith("PASS")
    assert json.loads(report_path.read_text())["steps"] == 20
    paddle_decays(monkeypatch, lambda name: False)
    assert main(arguments) == 1
    out = capsys.readouterr().out
    assert "FAIL: parameter bert.embeddings.word_embeddings.weight differs by" in out and out.rstrip().endswith("FAIL")
    report = json.loads(report_path.read_text())
    assert report["passed"] is False and report["param_worst_vs_tolerance"] > 2  # caught with a margin
    assert report["max_loss_diff"] <= report["tolerance"]  # the losses alone would not have seen it


def test_layernorm_weights_decayed_on_paddle_side_fail(tiny_bert, monkeypatch):
    paddle_decays(monkeypatch, lambda name: not name.lower().endswith("bias"))
    report = run_train_parity(TrainParityConfig(model=tiny_bert, steps=20, data_dir=QQP_KSHOT_DIR, num_threads=1))
    assert not report["passed"] and "LayerNorm.weight" in report["param_worst_name"], report["failures"]


def test_nan_paddle_loss_at_a_later_step_fails(tiny_bert, monkeypatch, capsys):
    """A NaN loss at step 3 (not the first) on the Paddle side: the step, the count, strict JSON, exit 1."""
    from paddleport.cli import main
    from paddleport.glue_runners.backends.paddle_backend import PaddleBackend

    real, calls = PaddleBackend.forward_backward, []

    def forward_backward(self, batch, scale):
        calls.append(1)
        loss = real(self, batch, scale)
        return float("nan") if len(calls) == 3 else loss

    monkeypatch.setattr(PaddleBackend, "forward_backward", forward_backward)
    assert main(["train-parity", "--model", str(tiny_bert), "--steps", "4", "--data-dir", str(QQP_KSHOT_DIR),
                 "--num-threads", "1"]) == 1
    out = capsys.readouterr().out
    assert "FAIL: step 3: loss not finite" in out and "1 non-finite" in out


def test_explicit_tolerance_is_used(tiny_bert, tmp_path, capsys, monkeypatch):
    from paddleport.cli import main
    from paddleport.glue_runners import parity

    stepped, judged = spy(monkeypatch, parity, "run_side"), spy(monkeypatch, parity, "judge_training")
    code = main(["train-parity", "--model", str(tiny_bert), "--steps", "2", "--data-dir", str(QQP_KSHOT_DIR),
                 "--num-threads", "1", "--tolerance", "-1"])  # an impossible tolerance: the check fails
    assert code == 1 and "FAIL: step 1: loss differs by" in capsys.readouterr().out
    assert len(stepped) == 2 and len(judged) == 1  # both runs stepped and judged by the porting engine
