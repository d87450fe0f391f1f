"""Real 2-process runs on CPU (torchrun on gloo, python -m paddle.distributed.launch) against 1-process runs.

A tiny dropout-free BERT, 29 of the 32 k-shot rows (so the last global micro-batch of 1 leaves one rank empty),
31 dev rows in eval batches of 6 (uneven shards), global micro-batch 4 x 2 accumulation steps, 10 steps.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from paddleport.data import QQP_KSHOT_DIR
from paddleport.glue_runners import GlueRunConfig, run_glue
from paddleport.glue_runners.checkpoints import list_checkpoints
from paddleport.parity.metrics import difference, named_differences
from paddleport.glue_runners.distributed import (LAUNCH_VARIABLE_PREFIXES, environment_without_launch,
                                                 launch_command, run_launch)
from tests.fixtures import make_tiny_hf_checkpoint

REPO = Path(__file__).resolve().parents[1]
LAUNCH_TIMEOUT_S = 300
STEPS = 10
LOSS_TOLERANCE = 1e-5
SETTINGS = dict(max_length=48, batch_size=4, grad_accum=2, max_train_samples=29, max_eval_samples=31,
                eval_batch_size=6, epochs=3, max_steps=STEPS, lr=1e-3, save_steps=3, seed=3)


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    # No dropout: the random masks of 2 ranks cannot equal those of 1 process.
    return make_tiny_hf_checkpoint(tmp_path_factory.mktemp("tiny_bert"), "BertModel", hidden_dropout_prob=0.0,
                                   attention_probs_dropout_prob=0.0)


@pytest.fixture(autouse=True)
def no_launch_environment(monkeypatch):
    for name in list(os.environ):
        if name.startswith(LAUNCH_VARIABLE_PREFIXES):
            monkeypatch.delenv(name)


def run_in_process(framework: str, model: Path, out: Path, **overrides) -> dict:
    return run_glue(GlueRunConfig(framework=framework, model=model, output_dir=out, data_dir=QQP_KSHOT_DIR,
                                  num_threads=1, progress=False, verbose=False, **{**SETTINGS, **overrides}))


def cli_arguments(framework: str, model: Path, out: Path, **overrides) -> list[str]:
    arguments = ["--framework", framework, "--model", str(model), "--output-dir", str(out),
                 "--data-dir", str(QQP_KSHOT_DIR), "--num-threads", "1", "--no-progress"]
    for key, value in {**SETTINGS, **overrides}.items():
        option = "--" + key.replace("_", "-")
        arguments += [option] if value is True else [option, str(value)]
    return arguments


def launch(framework: str, processes: int, arguments: list[str], log_dir: Path) -> tuple[int, str]:
    """(exit code, output) of a real multi-process launch; the whole process group is killed on a timeout."""
    command = launch_command(framework, processes, arguments, sys.executable, str(log_dir))
    code, output = run_launch(command, environment_without_launch(os.environ, threads=1), LAUNCH_TIMEOUT_S,
                              cwd=str(REPO))
    if code is None:
        pytest.fail(f"{framework} launch timed out after {LAUNCH_TIMEOUT_S} s:\n{output[-3000:]}")
    if framework == "paddle":  # the workers' own output is in the log directory
        output += "".join(path.read_text(errors="replace") for path in sorted(log_dir.glob("workerlog.*")))
    return code, output


def launch_ok(framework: str, processes: int, arguments: list[str], log_dir: Path) -> str:
    code, output = launch(framework, processes, arguments, log_dir)
    assert code == 0, output[-4000:]
    return output


def step_losses(out: Path) -> list[float]:
    rows = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == list(range(1, len(rows) + 1))
    return [row["loss"] for row in rows]


def final_weights(out: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(out / "final_model" / "model.safetensors"))


def assert_same_run(expected_out: Path, got_out: Path, tolerance: float = LOSS_TOLERANCE,
                    weight_rtol: float = 0.0) -> None:
    """Same loss at every step, same dev metrics, same final weights (each tensor within tolerance plus
    ``weight_rtol`` times its largest entry: rounding of a low-precision forward scales with the weights)."""
    expected_losses, got_losses = step_losses(expected_out), step_losses(got_out)
    assert len(got_losses) == len(expected_losses) == STEPS
    assert difference(got_losses, expected_losses).within(tolerance), (expected_losses, got_losses)
    expected, got = (json.loads((out / "metrics.json").read_text()) for out in (expected_out, got_out))
    assert got["eval_samples"] == expected["eval_samples"] == 31
    for expected_eval, got_eval in zip(expected["evaluations"], got["evaluations"], strict=True):
        assert got_eval["step"] == expected_eval["step"]
        for key in ("eval_accuracy", "eval_f1", "eval_acc_and_f1"):
            assert got_eval[key] == expected_eval[key], key
        assert got_eval["eval_loss"] == pytest.approx(expected_eval["eval_loss"], abs=tolerance)
    assert got["best"]["step"] == expected["best"]["step"]
    reference = final_weights(expected_out)
    weights = final_weights(got_out)
    assert weights.keys() == reference.keys()
    for name, diff in named_differences(weights, reference).items():
        assert diff.within(tolerance + weight_rtol * diff.ref_max_abs), (name, diff)


@pytest.fixture(scope="module")
def references(tiny_bert, tmp_path_factory) -> dict[str, Path]:
    """Uninterrupted 1-process runs, fp32."""
    root = tmp_path_factory.mktemp("reference")
    outputs = {}
    for framework in ("torch", "paddle"):
        outputs[framework] = root / framework
        metrics = run_in_process(framework, tiny_bert, outputs[framework])
        assert metrics["global_steps"] == STEPS and metrics["world_size"] == 1
    return outputs


@pytest.mark.parametrize("framework", ["torch", "paddle"])
def test_two_processes_equal_one_process(framework, tiny_bert, references, tmp_path):
    out = tmp_path / "out"
    output = launch_ok(framework, 2, cli_arguments(framework, tiny_bert, out), tmp_path / "logs")
    assert f"{framework}: global batch 8 = 2 per device x 2 processes x 2 accumulation steps" in output
    assert_same_run(references[framework], out)
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["world_size"], metrics["per_device_batch_size"], metrics["global_batch_size"]) == (2, 2, 8)
    assert len(metrics["peak_memory_mb_per_rank"]) == 2
    assert not list(out.glob("*rank1*"))  # rank 1 wrote no reports of its own
    assert (out / "curves.png").is_file() and (out / "best_model" / "model.safetensors").is_file()


@pytest.mark.parametrize("framework", ["torch", "paddle"])
def test_killed_two_process_run_resumes_with_one_process(framework, tiny_bert, references, tmp_path):
    out = tmp_path / "out"
    output = launch_ok(framework, 2, cli_arguments(framework, tiny_bert, out, stop_after_steps=7), tmp_path / "logs")
    assert "stopped after 7 steps" in output
    assert list_checkpoints(out / "checkpoints")[-1].name == "step-00000006"  # mid-epoch 2 (4 steps per epoch)
    assert not (out / "metrics.json").exists() and len(step_losses(out)) == 7
    resumed = run_in_process(framework, tiny_bert, out, resume=True)
    assert resumed["world_size"] == 1 and resumed["global_steps"] == STEPS
    assert_same_run(references[framework], out)


@pytest.fixture(scope="module")
def dropout_bert(tmp_path_factory) -> Path:
    return make_tiny_hf_checkpoint(tmp_path_factory.mktemp("dropout_bert"), "BertModel", hidden_dropout_prob=0.2,
                                   attention_probs_dropout_prob=0.2)


# Paddle's per-rank random state takes a third 2-process launch (50 s): `make test-full`; torch's runs in `make test`
@pytest.mark.parametrize("framework, dropout_masks", [("torch", "native"),
                                                      pytest.param("paddle", "native", marks=pytest.mark.full)])
def test_killed_two_process_run_with_dropout_resumes_each_ranks_random_state(framework, dropout_masks,
                                                                             dropout_bert, tmp_path):
    """Each rank draws its own masks (seed + rank): resumed with 2 processes, every rank restores its own state
    and the run equals an uninterrupted one; resumed with 1, rank 0's state is restored and the run continues
    from the saved step (its masks cannot equal a 2-process run's: each example lands on another rank)."""
    options = dict(dropout_masks=dropout_masks)
    reference, out, single = tmp_path / "reference", tmp_path / "out", tmp_path / "single"
    launch_ok(framework, 2, cli_arguments(framework, dropout_bert, reference, **options), tmp_path / "logs")
    launch_ok(framework, 2, cli_arguments(framework, dropout_bert, out, stop_after_steps=7, **options),
              tmp_path / "logs")
    checkpoint = list_checkpoints(out / "checkpoints")[-1]
    rank_states = [json.loads((checkpoint / f"rng_state_rank{rank}.json").read_text()) for rank in (0, 1)]
    assert rank_states[0] != rank_states[1]
    shutil.copytree(out, single)
    launch_ok(framework, 2, cli_arguments(framework, dropout_bert, out, resume=True, **options), tmp_path / "logs")
    assert_same_run(reference, out)
    resumed = run_in_process(framework, dropout_bert, single, resume=True, **options)
    assert resumed["world_size"] == 1 and resumed["global_steps"] == STEPS
    losses, reference_losses = step_losses(single), step_losses(reference)  # steps contiguous 1..10
    assert losses[:6] == reference_losses[:6] and np.isfinite(losses).all()


@pytest.mark.full  # 40 s of launches; `make test` resumes a sharded run through the FSDP test below
def test_torch_zero1_with_bf16_and_accumulation_killed_and_resumed_equals_one_process(tiny_bert, tmp_path):
    reference = tmp_path / "reference"
    run_in_process("torch", tiny_bert, reference, amp="bf16")
    out = tmp_path / "out"
    output = launch_ok("torch", 2, cli_arguments("torch", tiny_bert, out, amp="bf16", sharding="zero1",
                                                 stop_after_steps=7), tmp_path / "logs")
    assert "sharding zero1" in output and "stopped after 7 steps" in output
    launch_ok("torch", 2, cli_arguments("torch", tiny_bert, out, amp="bf16", sharding="zero1", resume=True),
              tmp_path / "logs")  # the consolidated ZeRO optimizer state goes back into the shards
    # bf16 autocast: the shards reduce in another order, and bf16 rounding (unit roundoff 2^-9) of activations
    # moves the weights by a fraction of it: measured 9.9e-4 on the word embeddings (|w| ~3), Intel AVX-512
    assert_same_run(reference, out, tolerance=1e-3, weight_rtol=2.0**-9)


def test_torch_fsdp_run_killed_and_resumed_as_zero2_equals_one_process(tiny_bert, references, tmp_path):
    out = tmp_path / "out"
    launch_ok("torch", 2, cli_arguments("torch", tiny_bert, out, sharding="fsdp", stop_after_steps=7),
              tmp_path / "logs")
    assert list_checkpoints(out / "checkpoints")[-1].name == "step-00000006"
    launch_ok("torch", 2, cli_arguments("torch", tiny_bert, out, sharding="zero2", resume=True), tmp_path / "logs")
    assert_same_run(references["torch"], out)
    with pytest.raises(Exception, match="optimizer state was written with --sharding zero2/fsdp"):
        run_in_process("torch", tiny_bert, out, resume=True)  # an FSDP checkpoint needs an FSDP run


@pytest.mark.parametrize("framework, overrides, message", [
    ("torch", {"batch_size": 7}, "paddleport: error: --batch-size: the global batch 7 is not divisible by the 2 "
                                 "processes"),
    ("paddle", {"sharding": "zero1"}, "paddleport: error: --sharding: Paddle's group_sharded_parallel (zero1) needs "
                                      "GPUs; on CPU use --sharding none"),
])
def test_bad_launch_configuration_fails_before_training(framework, overrides, message, tiny_bert, tmp_path):
    out = tmp_path / "out"
    code, output = launch(framework, 2, cli_arguments(framework, tiny_bert, out, **overrides), tmp_path / "logs")
    assert code != 0 and message in output, output[-3000:]
    assert not out.exists()
