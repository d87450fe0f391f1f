"""train-parity: 20 optimizer steps in torch and Paddle agree to 1e-4 per step (tiny BERT, tiny SqueezeBERT),
with dropout off and with dropout on (shared masks)."""

from __future__ import annotations

import json

import pytest

from paddleport.data import QQP_KSHOT_DIR
from paddleport.glue_runners import TrainParityConfig, run_train_parity
from tests.fixtures import make_tiny_hf_checkpoint


@pytest.mark.parametrize("dropout", [False, True], ids=["dropout-off", "shared-dropout"])
@pytest.mark.parametrize("architecture", ["BertModel", "SqueezeBertModel"])
def test_twenty_steps_agree(architecture, dropout, tmp_path):
    model = make_tiny_hf_checkpoint(tmp_path / "model", architecture)
    report = run_train_parity(TrainParityConfig(model=model, steps=20, data_dir=QQP_KSHOT_DIR, num_threads=1,
                                                dropout=dropout))
    assert report["passed"], report
    assert report["dropout"] is dropout
    assert len(report["losses"]) == 20 and report["max_loss_diff"] <= 1e-4
    assert report["losses"][0]["torch"] != report["losses"][-1]["torch"]  # the steps did train
    assert report["max_param_diff"] < 1e-4


def test_cli_writes_json_and_exit_code(tmp_path, capsys):
    from paddleport.cli import main

    model = make_tiny_hf_checkpoint(tmp_path / "model", "BertForSequenceClassification")  # trained head kept
    report_path = tmp_path / "parity.json"
    code = main(["train-parity", "--model", str(model), "--steps", "3", "--data-dir", str(QQP_KSHOT_DIR),
                 "--num-threads", "1", "--json", str(report_path)])
    assert code == 0
    assert "PASS" in capsys.readouterr().out
    assert json.loads(report_path.read_text())["steps"] == 3
    code = main(["train-parity", "--model", str(model), "--steps", "2", "--data-dir", str(QQP_KSHOT_DIR),
                 "--num-threads", "1", "--tolerance", "-1"])  # an impossible tolerance: the check fails
    assert code == 1 and "FAIL" in capsys.readouterr().out
