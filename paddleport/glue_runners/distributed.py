"""Data-parallel launches, framework-agnostic: which launcher started this process, what it allows, and how a
global batch is split between processes. The collectives themselves are the backends' (torch.distributed,
paddle.distributed); nothing here talks to another process.

Batch semantics: ``--batch-size`` is the *global* micro-batch (the samples of one forward/backward summed over
all processes), exactly the batch a single process would use. Each process takes its slice of every global
micro-batch of the same seeded order, so a run gives the same optimizer steps whatever the process count, and
its checkpoints (positions counted in global micro-batches and optimizer steps) resume with any process count.
Samples per optimizer step = per-device batch x processes x accumulation steps = ``batch_size x grad_accum``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping

import numpy as np

from paddleport.errors import PaddleportError

SHARDING_MODES = ("none", "zero1", "zero2", "fsdp")
TORCHRUN, PADDLE_LAUNCH = "torchrun", "paddle.distributed.launch"
LAUNCHER_OF_FRAMEWORK = {"torch": TORCHRUN, "paddle": PADDLE_LAUNCH}
# Paddle group_sharded_parallel levels (stage 3 'p_g_os' is not offered: its parameters would need gathering).
PADDLE_SHARDING_LEVELS = {"zero1": "os", "zero2": "os_g"}  # Paddle 3.3 runs 'os' as 'os_g'
LAUNCH_VARIABLE_PREFIXES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
                            "PADDLE_", "TORCHELASTIC", "GROUP_RANK", "ROLE_")


@dataclass(frozen=True)
class LaunchInfo:
    """Where this process sits in a launch; ``launcher`` is None for a plain single process."""

    launcher: str | None = None
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_distributed(self) -> bool:
        return self.launcher is not None

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def detect_launch(env: Mapping[str, str] | None = None) -> LaunchInfo:
    """The launch described by the environment: ``paddle.distributed.launch`` sets PADDLE_TRAINER_ID /
    PADDLE_TRAINERS_NUM (and PADDLE_LOCAL_RANK), ``torchrun`` RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR."""
    env = os.environ if env is None else env
    if "PADDLE_TRAINER_ID" in env and "PADDLE_TRAINERS_NUM" in env:
        rank = int(env["PADDLE_TRAINER_ID"])
        return LaunchInfo(PADDLE_LAUNCH, rank, int(env["PADDLE_TRAINERS_NUM"]),
                          int(env.get("PADDLE_LOCAL_RANK", env.get("PADDLE_RANK_IN_NODE", rank))))
    if all(name in env for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR")):
        rank = int(env["RANK"])
        return LaunchInfo(TORCHRUN, rank, int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", rank)))
    return LaunchInfo()


def check_distributed_options(framework: str, launch: LaunchInfo, sharding: str, device: str, amp: str,
                              batch_size: int) -> None:
    """Every launch/sharding combination that cannot work, as a one-line error before anything starts."""
    if sharding not in SHARDING_MODES:
        raise PaddleportError("--sharding", f"unknown mode {sharding!r}; choose one of {', '.join(SHARDING_MODES)}")
    expected = LAUNCHER_OF_FRAMEWORK[framework]
    if launch.is_distributed and launch.launcher != expected:
        raise PaddleportError("--framework", f"{framework} runs under {expected}, but this process was started by "
                                             f"{launch.launcher}")
    if sharding != "none" and not launch.is_distributed:
        raise PaddleportError("--sharding", f"{sharding} needs a distributed launch ({expected} "
                                            "--nproc_per_node N ...)")
    if batch_size % launch.world_size:
        raise PaddleportError("--batch-size", f"the global batch {batch_size} is not divisible by the "
                                              f"{launch.world_size} processes")
    if framework == "paddle" and sharding != "none":
        if sharding not in PADDLE_SHARDING_LEVELS:
            raise PaddleportError("--sharding", f"{sharding} is not available with Paddle; choose zero1 or zero2 "
                                                "(group_sharded_parallel 'os' / 'os_g')")
        if device != "gpu":
            raise PaddleportError("--sharding", f"Paddle's group_sharded_parallel ({sharding}) needs GPUs; "
                                                "on CPU use --sharding none")
    if framework == "torch" and sharding in ("zero2", "fsdp") and amp == "fp16":
        raise PaddleportError("--sharding", f"{sharding} (FSDP2) with --amp fp16 is not supported; use --amp bf16")


@contextlib.contextmanager
def quiet_other_ranks(launch: LaunchInfo) -> Iterator[None]:
    """Only rank 0 talks: inside the block the other processes of a launch drop warnings and log records below
    ERROR; both are restored after it."""
    if not launch.is_distributed or launch.is_main:
        yield
        return
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(previous)


def describe_global_batch(batch_size: int, grad_accum: int, world_size: int) -> str:
    per_device = batch_size // world_size
    return (f"global batch {batch_size * grad_accum} = {per_device} per device x {world_size} "
            f"process{'es' if world_size > 1 else ''} x {grad_accum} accumulation step{'s' if grad_accum > 1 else ''}")


def rank_slice(indices: np.ndarray, rank: int, world_size: int) -> np.ndarray:
    """This rank's contiguous part of a global batch; the parts of all ranks, in rank order, are ``indices``.
    Sizes differ by at most one (an uneven last batch); a rank may get nothing when the batch is tiny."""
    return np.array_split(np.asarray(indices), world_size)[rank]


def gradient_weight(local_count: int, global_count: int, micro_batches: int, world_size: int) -> float:
    """Factor on a rank's mean micro-batch loss so that the engines' gradient *average* over ranks equals the
    single-process gradient of ``mean loss of the global micro-batch / micro_batches``."""
    return world_size * local_count / (global_count * micro_batches)


def launch_command(framework: str, processes: int, run_glue_arguments: list[str], python: str,
                   log_dir: str | None = None) -> list[str]:
    """The command line that runs ``paddleport run-glue ARGS`` on ``processes`` local processes with the
    framework's own launcher (a plain process for 1)."""
    if processes == 1:
        return [python, "-m", "paddleport", "run-glue", *run_glue_arguments]
    if framework == "torch":
        return [python, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
                "-m", "paddleport", "run-glue", *run_glue_arguments]
    import paddleport

    script = str(Path(paddleport.__file__).with_name("__main__.py"))  # paddle's launcher takes a script, not -m
    log = ["--log_dir", log_dir] if log_dir else []
    return [python, "-m", "paddle.distributed.launch", "--nproc_per_node", str(processes), *log, script,
            "run-glue", *run_glue_arguments]


def run_launch(command: list[str], env: Mapping[str, str], timeout_s: float, cwd: str | None = None
               ) -> tuple[int | None, str]:
    """(exit code, stdout+stderr) of a launcher command; on a timeout the launcher *and its workers* (its whole
    process group) are killed and the exit code is None."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dict(env),
                               cwd=cwd, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        return None, output
    return process.returncode, output


def environment_without_launch(env: Mapping[str, str], threads: int) -> dict[str, str]:
    """``env`` minus the variables of an enclosing launch (so a child launch starts clean), with OMP threads set."""
    clean = {name: value for name, value in env.items() if not name.startswith(LAUNCH_VARIABLE_PREFIXES)}
    return clean | {"OMP_NUM_THREADS": str(threads)}
