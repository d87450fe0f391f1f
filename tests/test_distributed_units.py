"""Launch detection, option checks, global-batch slicing and loss weights (no process is launched here)."""

from __future__ import annotations

import numpy as np
import pytest

from paddleport.data import QQP_KSHOT_DIR
from paddleport.errors import PaddleportError
from paddleport.glue_runners import GlueRunConfig, run_glue
from paddleport.glue_runners.distributed import (PADDLE_LAUNCH, TORCHRUN, LaunchInfo, check_distributed_options,
                                                 describe_global_batch, detect_launch, gradient_weight, rank_slice)

TORCHRUN_ENV = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1"}
PADDLE_ENV = {"PADDLE_TRAINER_ID": "1", "PADDLE_TRAINERS_NUM": "2", "PADDLE_LOCAL_RANK": "1"}
LAUNCH_VARIABLES = (*TORCHRUN_ENV, *PADDLE_ENV)


def test_detects_torchrun_paddle_launch_and_a_plain_process():
    assert detect_launch(TORCHRUN_ENV) == LaunchInfo(TORCHRUN, rank=1, world_size=2, local_rank=1)
    assert detect_launch(PADDLE_ENV) == LaunchInfo(PADDLE_LAUNCH, rank=1, world_size=2, local_rank=1)
    plain = detect_launch({"RANK": "0"})  # a stray RANK alone is no launch
    assert not plain.is_distributed and plain.is_main and plain.world_size == 1


@pytest.mark.parametrize("world_size", [1, 2, 3, 4])
@pytest.mark.parametrize("batch", [1, 5, 8])
def test_rank_slices_partition_every_global_batch_and_weights_restore_the_mean(world_size, batch):
    indices = np.arange(100, 100 + batch)
    slices = [rank_slice(indices, rank, world_size) for rank in range(world_size)]
    assert np.array_equal(np.concatenate(slices), indices)  # union, in rank order, is the single-process batch
    assert max(map(len, slices)) - min(map(len, slices)) <= 1
    micro_batches = 3
    weights = [gradient_weight(len(part), batch, micro_batches, world_size) for part in slices]
    # engines average over ranks: mean_r(w_r * mean_loss_r) == sum(losses) / batch / micro_batches
    losses = np.random.default_rng(0).random(batch)
    offsets = np.cumsum([0] + [len(part) for part in slices])
    per_rank = [weight * losses[start:end].mean() if end > start else 0.0
                for weight, start, end in zip(weights, offsets[:-1], offsets[1:])]
    assert np.mean(per_rank) == pytest.approx(losses.mean() / micro_batches, rel=1e-12)


def test_describe_global_batch():
    assert describe_global_batch(8, 2, 2) == "global batch 16 = 4 per device x 2 processes x 2 accumulation steps"
    assert describe_global_batch(8, 1, 1) == "global batch 8 = 8 per device x 1 process x 1 accumulation step"


@pytest.mark.parametrize("framework, launch, sharding, device, amp, batch, message", [
    ("torch", LaunchInfo(), "zero1", "cpu", "none", 8, "--sharding: zero1 needs a distributed launch"),
    ("paddle", LaunchInfo(), "zero2", "cpu", "none", 8, "--sharding: zero2 needs a distributed launch"),
    ("torch", LaunchInfo(TORCHRUN, 0, 3), "none", "cpu", "none", 8,
     "--batch-size: the global batch 8 is not divisible by the 3 processes"),
    ("paddle", LaunchInfo(PADDLE_LAUNCH, 0, 2), "zero1", "cpu", "none", 8,
     "--sharding: Paddle's group_sharded_parallel (zero1) needs GPUs"),
    ("paddle", LaunchInfo(PADDLE_LAUNCH, 0, 2), "fsdp", "gpu", "none", 8,
     "--sharding: fsdp is not available with Paddle"),
    ("torch", LaunchInfo(TORCHRUN, 0, 2), "fsdp", "cpu", "fp16", 8, "--sharding: fsdp (FSDP2) with --amp fp16"),
    ("torch", LaunchInfo(PADDLE_LAUNCH, 0, 2), "none", "cpu", "none", 8,
     "--framework: torch runs under torchrun, but this process was started by paddle.distributed.launch"),
    ("paddle", LaunchInfo(TORCHRUN, 0, 2), "none", "cpu", "none", 8,
     "--framework: paddle runs under paddle.distributed.launch, but this process was started by torchrun"),
    ("torch", LaunchInfo(), "zero3", "cpu", "none", 8, "--sharding: unknown mode 'zero3'"),
])
def test_bad_launch_configurations_are_one_line_errors(framework, launch, sharding, device, amp, batch, message):
    with pytest.raises(PaddleportError) as error:
        check_distributed_options(framework, launch, sharding, device, amp, batch)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)
    assert error.value.exit_code == 2


def test_valid_configurations_pass():
    check_distributed_options("torch", LaunchInfo(TORCHRUN, 0, 2), "fsdp", "cpu", "bf16", 8)
    check_distributed_options("paddle", LaunchInfo(PADDLE_LAUNCH, 0, 2), "zero2", "gpu", "none", 8)
    check_distributed_options("paddle", LaunchInfo(), "none", "cpu", "none", 7)


@pytest.mark.parametrize("env, arguments, message", [
    ({}, ["--framework", "torch", "--sharding", "fsdp"], "--sharding: fsdp needs a distributed launch"),
    ({}, ["--framework", "paddle", "--sharding", "zero1"], "--sharding: zero1 needs a distributed launch"),
    ({**TORCHRUN_ENV, "WORLD_SIZE": "3"}, ["--framework", "torch"],
     "--batch-size: the global batch 8 is not divisible by the 3 processes"),
    (PADDLE_ENV, ["--framework", "paddle", "--sharding", "zero2"], "--sharding: Paddle's group_sharded_parallel"),
    (PADDLE_ENV, ["--framework", "torch"], "--framework: torch runs under torchrun"),
])
def test_cli_rejects_bad_configurations_before_starting(env, arguments, message, tmp_path, monkeypatch, capsys):
    from paddleport.cli import main

    for name in LAUNCH_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code = main(["run-glue", *arguments, "--model", str(tmp_path / "never-read"), "--output-dir",
                 str(tmp_path / "out"), "--batch-size", "8"])
    error_lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and error_lines == [f"paddleport: error: {error_lines[0].split('error: ', 1)[1]}"]
    assert error_lines[0].startswith(f"paddleport: error: {message}")
    assert not (tmp_path / "out").exists()  # nothing was started


def test_single_process_metrics_report_the_global_batch(tmp_path, monkeypatch):
    from tests.fixtures import make_tiny_hf_checkpoint

    for name in LAUNCH_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    model = make_tiny_hf_checkpoint(tmp_path / "tiny", "BertModel")
    metrics = run_glue(GlueRunConfig(framework="torch", model=model, output_dir=tmp_path / "out",
                                     data_dir=QQP_KSHOT_DIR, max_length=32, batch_size=8, grad_accum=2, epochs=1,
                                     num_threads=1, progress=False, verbose=False))
    assert (metrics["world_size"], metrics["global_batch_size"], metrics["per_device_batch_size"]) == (1, 16, 8)
    log = (tmp_path / "out" / "train_log.jsonl").read_text().splitlines()
    assert len(log) == metrics["global_steps"] == 2
