"""make demo: every verdict (forward and gradients per pair, fine-tune) printed; exit 1 when any fails."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.fixtures import make_tiny_hf_checkpoint


def with_nan_weight(hf_dir: Path) -> Path:
    from safetensors.numpy import load_file, save_file

    weights = load_file(hf_dir / "model.safetensors")
    weights["bert.encoder.layer.0.output.dense.weight"][3, 5] = np.nan
    save_file(weights, str(hf_dir / "model.safetensors"), metadata={"format": "pt"})
    return hf_dir


def test_demo_exits_1_and_prints_both_verdicts_when_a_pair_fails(tmp_path, monkeypatch, capsys):
    import paddleport.demo as demo
    from paddleport.cli import main

    pairs = {"tiny": make_tiny_hf_checkpoint(tmp_path / "tiny-hf", "BertForSequenceClassification"),
             "tiny with a NaN weight": with_nan_weight(
                 make_tiny_hf_checkpoint(tmp_path / "broken-hf", "BertForSequenceClassification", seed=1))}
    monkeypatch.setattr(demo, "demo_pairs", lambda minilm, out_dir: pairs)
    assert main(["demo", "--out-dir", str(tmp_path / "out"), "--no-train"]) == 1
    verdicts = capsys.readouterr().out.split("== verdicts ==")[1]
    lines = verdicts.strip().splitlines()
    assert lines[0].startswith("tiny: forward PASS") and lines[1].startswith("tiny: grad    PASS")
    assert lines[2].startswith("tiny with a NaN weight: forward FAIL: first tensor over atol 1e-05 is layer.0")
    assert lines[3].startswith("tiny with a NaN weight: grad    FAIL at loss (1 non-finite")
    assert lines[4] == "FAIL: at least one verdict failed"


def test_demo_result_passes_only_when_every_verdict_passes():
    from paddleport.demo import DemoResult, Verdict
    from paddleport.glue_runners.demo import DemoFineTune

    assert DemoResult([Verdict("a", True, ["forward PASS"])]).passed
    assert not DemoResult([Verdict("a", True, []), Verdict("b", False, [])]).passed
    assert DemoFineTune({}, 0.0, "").passed and not DemoFineTune({}, 0.02, "").passed
    assert not DemoFineTune({}, float("nan"), "").passed and "FAIL" in DemoFineTune({}, 0.02, "").verdict()
