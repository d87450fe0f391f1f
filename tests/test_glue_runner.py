"""End-to-end GLUE fine-tuning in both frameworks on tiny models and the 32-row QQP k-shot split."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from paddleport import runtime
from paddleport.data import QQP_KSHOT_DIR
from paddleport.glue_runners import GlueRunConfig, run_glue
from paddleport.glue_runners.checkpoints import list_checkpoints
from paddleport.glue_runners.trainer import NonFiniteLossError, Trainer
from tests.fixtures import make_tiny_hf_checkpoint

FRAMEWORKS = ("torch", "paddle")
EPOCH_FIELDS = {"epoch", "train_loss", "eval_loss", "eval_accuracy", "eval_f1", "epoch_time_s"}


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    return make_tiny_hf_checkpoint(tmp_path_factory.mktemp("tiny_bert"), "BertModel")


def small_config(framework, model, out, **overrides) -> GlueRunConfig:
    settings = dict(framework=framework, model=model, output_dir=out, data_dir=QQP_KSHOT_DIR, max_length=64,
                    batch_size=8, epochs=2, lr=1e-3, num_threads=1, progress=False, verbose=False)
    return GlueRunConfig(**{**settings, **overrides})


def read_final_weights(framework, out):
    from safetensors.numpy import load_file

    return load_file(str(out / "final_model" / "model.safetensors"))


@pytest.fixture()
def data_with_test(tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    for name in ("train.tsv", "dev.tsv"):
        shutil.copy(QQP_KSHOT_DIR / name, data_dir / name)
    rows = [line.split("\t") for line in (QQP_KSHOT_DIR / "dev.tsv").read_text().splitlines()[1:]]
    (data_dir / "test.tsv").write_text("id\tquestion1\tquestion2\n" + "".join(
        f"{index}\t{row[3]}\t{row[4]}\n" for index, row in enumerate(rows)))
    return data_dir


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_trains_evaluates_predicts_and_reports(framework, tiny_bert, data_with_test, tmp_path):
    out = tmp_path / "out"
    metrics = run_glue(small_config(framework, tiny_bert, out, data_dir=data_with_test, do_predict=True))
    stored = json.loads((out / "metrics.json").read_text())
    assert stored["framework"] == framework and stored["task"] == "qqp"
    assert stored["runtime"]["cpu"] == runtime.detect_cpu().as_json() and stored["runtime"]["threads"] >= 1
    assert [row["epoch"] for row in stored["epochs"]] == [1, 2]
    assert all(EPOCH_FIELDS <= set(row) for row in stored["epochs"])
    for key in ("total_train_time_s", "train_samples_per_s", "peak_memory_mb"):
        assert stored[key] > 0
    assert metrics["global_steps"] == 8  # 32 rows / batch 8 * 2 epochs
    assert np.isfinite([row["train_loss"] for row in stored["epochs"]]).all()
    assert (out / "curves.png").stat().st_size > 0
    assert (out / "best_model" / "model.safetensors").is_file()
    lines = (out / "predictions" / "QQP.tsv").read_text().splitlines()
    assert lines[0] == "index\tprediction" and len(lines) == 33
    assert {line.split("\t")[1] for line in lines[1:]} <= {"0", "1"}


def test_final_models_load_with_each_frameworks_from_pretrained(tiny_bert, tmp_path):
    import transformers

    from paddleport.convert import convert_checkpoint
    from paddleport.models import AutoModelForSequenceClassification

    for framework in FRAMEWORKS:
        run_glue(small_config(framework, tiny_bert, tmp_path / framework, epochs=1, max_steps=1))
    transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "torch" / "final_model")
    paddle_model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "paddle" / "final_model")
    assert paddle_model.config.num_labels == 2
    convert_checkpoint(tmp_path / "paddle" / "final_model", tmp_path / "back_to_hf", to="hf")
    transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "back_to_hf")


def log_steps(out):
    return [json.loads(line)["step"] for line in (out / "train_log.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("dropout_masks", ["shared", "native"])
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_resume_after_interruption_equals_uninterrupted(framework, dropout_masks, tiny_bert, tmp_path, monkeypatch):
    """Dropout on (the tiny BERT's 0.1): exact only if RNG and mask state come back from the checkpoint."""
    common = dict(save_steps=3, epochs=2, dropout_masks=dropout_masks)
    reference = run_glue(small_config(framework, tiny_bert, tmp_path / "full", **common))
    out = tmp_path / "interrupted"
    stopped = run_glue(small_config(framework, tiny_bert, out, stop_after_steps=7, **common))
    assert stopped["status"] == "interrupted" and not (out / "metrics.json").exists()
    assert list_checkpoints(out / "checkpoints")[-1].name == "step-00000006"  # mid-epoch 2
    assert log_steps(out) == list(range(1, 8))
    kept_lines = (out / "train_log.jsonl").read_text().splitlines()[:6]
    with (out / "train_log.jsonl").open("a") as log:
        log.write('{"step": 8, "epoch": 2, "lo')  # killed while writing step 8's line
    steps_run = []
    original_step = Trainer._train_step
    monkeypatch.setattr(Trainer, "_train_step", lambda self, batches: (steps_run.append(self.state.global_step),
                                                                        original_step(self, batches))[1])
    with pytest.warns(UserWarning, match="dropped its torn last line 8"):
        resumed = run_glue(small_config(framework, tiny_bert, out, resume=True, **common))
    assert steps_run == [6, 7]  # continued at the saved step 6 of 8, not from 0
    assert log_steps(out) == list(range(1, 9))
    assert (out / "train_log.jsonl").read_text().splitlines()[:6] == kept_lines
    for expected, got in zip(reference["epochs"], resumed["epochs"], strict=True):
        for key in ("train_loss", "eval_loss", "eval_accuracy", "eval_f1"):
            assert got[key] == pytest.approx(expected[key], rel=1e-6, abs=1e-7), key
    reference_weights = read_final_weights(framework, tmp_path / "full")
    resumed_weights = read_final_weights(framework, out)
    assert max(np.abs(reference_weights[k] - resumed_weights[k]).max() for k in reference_weights) < 1e-6


def test_checkpoints_hold_no_pickle(tiny_bert, tmp_path):
    out = tmp_path / "out"
    for framework in FRAMEWORKS:
        run_glue(small_config(framework, tiny_bert, out / framework, epochs=1, max_steps=1))
        checkpoint = list_checkpoints(out / framework / "checkpoints")[-1]
        assert sorted(path.name for path in checkpoint.iterdir()) == [
            "model", "rng_state_rank0.json", "trainer_state.json", "training_state.json",
            "training_state.safetensors"]


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_accumulation_checkpointing_and_early_stopping(framework, tiny_bert, tmp_path):
    metrics = run_glue(small_config(framework, tiny_bert, tmp_path / "out", grad_accum=2, gradient_checkpointing=True,
                                    group_by_length=True, lr=1e-9, eval_steps=1, early_stopping_patience=2,
                                    epochs=3))
    assert metrics["stopped_early"]
    assert metrics["global_steps"] == 3  # best at step 1, no improvement at steps 2 and 3
    # 4 batches of 8 / 2 accumulated = 2 steps per epoch: the stop mid-epoch 2 still closes that epoch's row
    assert [row["global_step"] for row in metrics["epochs"]] == [2, 3]


@pytest.mark.parametrize("peft", ("lora", "adapter"))
def test_paddle_gradient_checkpointing_trains_a_peft_model_as_without(peft, tiny_bert, tmp_path):
    """The frozen embeddings feed the first checkpointed layer an input that needs no gradient: its LoRA matrices
    or adapters must still get theirs (Paddle's reentrant recompute gave them none)."""
    losses = {}
    for checkpointing in (False, True):
        metrics = run_glue(small_config("paddle", tiny_bert, tmp_path / str(checkpointing), peft=peft, epochs=1,
                                        max_train_samples=16, max_eval_samples=8, max_length=32, lr=1e-2,
                                        dropout_masks="shared", gradient_checkpointing=checkpointing))
        losses[checkpointing] = metrics["epochs"][0]["train_loss"]
    assert abs(losses[True] - losses[False]) <= 1e-6


def test_torch_bf16_autocast_runs(tiny_bert, tmp_path):
    metrics = run_glue(small_config("torch", tiny_bert, tmp_path / "out", amp="bf16", epochs=1))
    assert np.isfinite(metrics["epochs"][0]["train_loss"])


@pytest.mark.parametrize("bad", ["nan", "inf"])
def test_nan_loss_stops_and_keeps_last_good_checkpoint(tiny_bert, tmp_path, monkeypatch, bad):
    from paddleport.glue_runners.backends.torch_backend import TorchBackend

    original = TorchBackend.forward_backward
    calls = []

    def diverging(self, batch, loss_divisor):
        calls.append(1)
        loss = original(self, batch, loss_divisor)
        return float(bad) if len(calls) >= 6 else loss

    monkeypatch.setattr(TorchBackend, "forward_backward", diverging)
    out = tmp_path / "out"
    with pytest.raises(NonFiniteLossError, match=rf"step 6: training loss is {bad} .*last good checkpoint") as error:
        run_glue(small_config("torch", tiny_bert, out, save_steps=2))
    assert error.value.exit_code == 1
    assert [path.name for path in list_checkpoints(out / "checkpoints")] == ["step-00000002", "step-00000004"]
    assert not (out / "metrics.json").exists()


def test_cli_run_glue_and_module_entry_point(tiny_bert, tmp_path, capsys):
    from paddleport.cli import main
    from paddleport.glue_runners.cli import main as module_main

    arguments = ["--framework", "torch", "--model", str(tiny_bert), "--data-dir", str(QQP_KSHOT_DIR),
                 "--max-length", "64", "--batch-size", "16", "--epochs", "1", "--num-threads", "1", "--no-progress"]
    assert main(["run-glue", *arguments, "--output-dir", str(tmp_path / "a")]) == 0
    assert "eval acc" in capsys.readouterr().out
    assert json.loads((tmp_path / "a" / "metrics.json").read_text())["epochs"][0]["epoch"] == 1
    assert module_main([*arguments, "--output-dir", str(tmp_path / "a")]) == 2  # holds a run already
    assert "already holds another run" in capsys.readouterr().err


def test_both_frameworks_start_from_the_same_weights_also_from_a_paddle_directory(tiny_bert, tmp_path):
    from paddleport.convert import convert_checkpoint
    from paddleport.glue_runners.backends import BackendOptions, make_backend
    from paddleport.glue_runners.checkpoint_info import inspect_model_dir
    from paddleport.glue_runners.runner import load_backend_model

    paddle_dir = tmp_path / "paddle_model"
    convert_checkpoint(tiny_bert, paddle_dir, to="paddle")
    starts = {}
    for framework, model in (("torch", tiny_bert), ("paddle", paddle_dir), ("torch-from-paddle", paddle_dir)):
        backend = make_backend(framework.split("-")[0], BackendOptions())
        load_backend_model(backend, inspect_model_dir(model), 2, seed=7, work_dir=tmp_path / framework)
        starts[framework] = backend.get_parameters()
    assert np.abs(starts["torch"]["classifier.weight"]).max() > 0  # a fresh, seeded head
    for other in ("paddle", "torch-from-paddle"):
        assert starts[other].keys() == starts["torch"].keys()
        assert max(np.abs(starts[other][k] - v).max() for k, v in starts["torch"].items()) < 1e-6
