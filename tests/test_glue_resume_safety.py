"""GLUE checkpoints and output directories under hostile or unlucky conditions: old pickled training state still
resumes (read without running code), a crafted one is refused, a second run into a busy output directory and an
--overwrite that would clear the model being read are refused."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from paddleport.cli import main as cli_main
from paddleport.data import QQP_KSHOT_DIR
from paddleport.fsutil import exclusive_lock
from paddleport.glue_runners import run_glue
from paddleport.glue_runners.checkpoints import list_checkpoints
from paddleport.glue_runners.runner import RUN_LOCK_FILE
from paddleport.glue_runners.training_state import STATE_JSON, STATE_TENSORS, read_json, rng_state_file
from tests.fixtures import TOKENIZER_FILES, make_tiny_hf_checkpoint
from tests.test_glue_runner import read_final_weights, small_config
from tests.test_output_safety import messages

FRAMEWORKS = ("torch", "paddle")
# 1 epoch of 4 steps, checkpoint after step 3; native dropout masks: the framework RNG must come back too
COMMON = dict(epochs=1, save_steps=3, dropout_masks="native")


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    return make_tiny_hf_checkpoint(tmp_path_factory.mktemp("tiny_bert"), "BertModel")  # dropout 0.1


@pytest.fixture(scope="module")
def runs(tiny_bert, tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """Per framework: (an uninterrupted run, a run stopped after step 3 with its checkpoint)."""
    root = tmp_path_factory.mktemp("runs")
    found = {}
    for framework in FRAMEWORKS:
        full, stopped = root / f"{framework}-full", root / f"{framework}-stopped"
        run_glue(small_config(framework, tiny_bert, full, **COMMON))
        run_glue(small_config(framework, tiny_bert, stopped, stop_after_steps=3, **COMMON))
        found[framework] = full, stopped
    return found


def stopped_copy(runs, framework: str, tmp_path: Path) -> tuple[Path, Path]:
    """(a copy of the stopped run, its checkpoint)."""
    out = tmp_path / "out"
    shutil.copytree(runs[framework][1], out, symlinks=True)
    return out, list_checkpoints(out / "checkpoints")[-1]


def run_files(out: Path) -> dict[Path, int]:
    """Modification times of a run's files, less the initial conversion, which a run rewrites identically
    (``paddle_init``: the Paddle backend converts the HF model before the checkpoint is read)."""
    return {path: path.stat().st_mtime_ns for path in out.rglob("*") if "paddle_init" not in path.parts}


def cli_arguments(framework: str, model: Path, out: Path, *extra: str) -> list[str]:
    return ["run-glue", "--framework", framework, "--model", str(model), "--output-dir", str(out), "--data-dir",
            str(QQP_KSHOT_DIR), "--max-length", "64", "--batch-size", "8", "--epochs", "1", "--save-steps", "3",
            "--lr", "1e-3", "--dropout-masks", "native", "--num-threads", "1", "--no-progress", *extra]


def write_legacy_state(framework: str, checkpoint: Path) -> None:
    """Rewrite a checkpoint's training state the way paddleport wrote it before safetensors + JSON (pickles)."""
    from safetensors.numpy import load_file

    from paddleport.glue_runners.training_state import read_training_state

    rng = read_json(checkpoint / rng_state_file(0))
    if framework == "torch":
        import torch
        from safetensors.torch import load_file as load_torch_file

        from paddleport.glue_runners.backends.torch_backend import _decode_bytes

        state = read_training_state(checkpoint, load_torch_file)
        torch.save({**state, "rng": _decode_bytes(rng["framework"]["cpu"]), "dropout_masks": rng["dropout_masks"]},
                   checkpoint / "training_state.pt")
    else:
        import paddle

        from paddleport.glue_runners.backends.paddle_backend import _generator_state

        state = read_training_state(checkpoint, load_file)
        optimizer = {name: paddle.to_tensor(value) if isinstance(value, np.ndarray) else value
                     for name, value in state["optimizer"].items()}
        paddle.save(optimizer, str(checkpoint / "optimizer.pdopt"))
        extra = {"scheduler": state["scheduler"], "scaler": state["scaler"], "dropout_masks": rng["dropout_masks"],
                 "rng": [_generator_state(paddle, entry) for entry in rng["framework"]["cpu"]]}
        with open(checkpoint / "training_state.pkl", "wb") as file:
            pickle.dump(extra, file)
    for name in (STATE_JSON, STATE_TENSORS, rng_state_file(0)):
        (checkpoint / name).unlink()


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_checkpoint_with_pickled_training_state_still_resumes_exactly(framework, runs, tiny_bert, tmp_path):
    out, checkpoint = stopped_copy(runs, framework, tmp_path)
    write_legacy_state(framework, checkpoint)
    resumed = run_glue(small_config(framework, tiny_bert, out, resume=True, **COMMON))
    assert resumed["global_steps"] == 4
    reference, got = read_final_weights(framework, runs[framework][0]), read_final_weights(framework, out)
    assert max(np.abs(reference[name] - got[name]).max() for name in reference) < 1e-6


class RunsACommand:
    def __init__(self, canary: Path):
        self.canary = canary

    def __reduce__(self):
        return os.system, (f"touch {self.canary}",)


@pytest.mark.parametrize("framework, crafted", [("paddle", "training_state.pkl"), ("paddle", "optimizer.pdopt"),
                                                ("torch", "training_state.pt")])
def test_crafted_pickled_training_state_is_refused_on_resume(framework, crafted, runs, tiny_bert, tmp_path,
                                                             capsys):
    out, checkpoint = stopped_copy(runs, framework, tmp_path)
    write_legacy_state(framework, checkpoint)
    canary = tmp_path / "canary"
    with open(checkpoint / crafted, "wb") as file:
        pickle.dump({"scheduler": RunsACommand(canary)}, file)
    before = run_files(out)
    code = cli_main(cli_arguments(framework, tiny_bert, out, "--resume"))
    lines = messages(capsys.readouterr().err)
    assert code == 2 and len(lines) == 1 and str(checkpoint / crafted) in lines[0], lines
    assert not canary.exists()
    assert run_files(out) == before


def test_malformed_json_training_state_is_one_line(runs, tiny_bert, tmp_path, capsys):
    out, checkpoint = stopped_copy(runs, "torch", tmp_path)
    (checkpoint / rng_state_file(0)).write_text('{"framework": {"cpu": "not base64!"}}')
    assert cli_main(cli_arguments("torch", tiny_bert, out, "--resume")) == 2
    lines = messages(capsys.readouterr().err)
    assert len(lines) == 1 and "rng_state_rank0.json: has a malformed torch RNG state" in lines[0], lines


def test_a_second_run_into_a_busy_output_directory_is_refused(runs, tiny_bert, tmp_path, capsys):
    out, _ = stopped_copy(runs, "torch", tmp_path)
    before = run_files(out)
    with exclusive_lock(out / RUN_LOCK_FILE, out):  # what a running run-glue holds
        for extra in (["--resume"], ["--overwrite"]):
            assert cli_main(cli_arguments("torch", tiny_bert, out, *extra)) == 2
            lines = messages(capsys.readouterr().err)
            assert lines == [f"paddleport: error: {out}: another paddleport process is writing it now "
                             f"(lock {RUN_LOCK_FILE} held); wait for it to finish"]
        assert {path: time for path, time in run_files(out).items() if path.name != RUN_LOCK_FILE} == before
    assert not (out / RUN_LOCK_FILE).exists()


def test_overwrite_never_clears_the_model_the_run_reads(runs, tiny_bert, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(runs["torch"][0], out)
    model = out / "final_model"
    for name in TOKENIZER_FILES:
        shutil.copy(tiny_bert / name, model / name)
    before = run_files(out)
    assert cli_main(cli_arguments("torch", model, out, "--overwrite")) == 2
    lines = messages(capsys.readouterr().err)
    assert lines == [f"paddleport: error: {model}: is {model}, which this command reads; choose another output "
                     f"directory (nothing was changed)"]
    assert run_files(out) == before
    assert json.loads((out / "metrics.json").read_text())["status"] == "completed"


def test_checkpoint_pruning_leaves_no_half_deleted_checkpoint(tmp_path):
    from paddleport.glue_runners.checkpoints import write_checkpoint

    root = tmp_path / "checkpoints"
    (root / "step-00000001").mkdir(parents=True)  # a prune killed after removing trainer_state.json
    (root / "step-00000001" / "training_state.safetensors").write_bytes(b"left over")
    for step in (2, 3):
        write_checkpoint(root, step, {"global_step": step}, lambda directory: None, keep=1)
    assert sorted(path.name for path in root.iterdir()) == ["step-00000003"]
