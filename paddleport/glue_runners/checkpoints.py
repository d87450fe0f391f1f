"""Checkpoint directories: written atomically (temporary directory, then rename), found, pruned, read back."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable, TypeVar

from paddleport.errors import PaddleportError
from paddleport.fsutil import atomic_directory
from paddleport.glue_runners.training_state import read_json

TRAINER_STATE_FILE = "trainer_state.json"
MODEL_SUBDIR = "model"
CHECKPOINT_PREFIX = "step-"
State = TypeVar("State")


def checkpoint_dir(checkpoints_root: Path, global_step: int) -> Path:
    return Path(checkpoints_root) / f"{CHECKPOINT_PREFIX}{global_step:08d}"


def list_checkpoints(checkpoints_root: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    root = Path(checkpoints_root)
    if not root.is_dir():
        return []
    found = [path for path in root.glob(f"{CHECKPOINT_PREFIX}*") if (path / TRAINER_STATE_FILE).is_file()]
    return sorted(found, key=lambda path: int(path.name[len(CHECKPOINT_PREFIX):]))


def latest_checkpoint(checkpoints_root: Path) -> Path | None:
    checkpoints = list_checkpoints(checkpoints_root)
    return checkpoints[-1] if checkpoints else None


def write_checkpoint(checkpoints_root: Path, global_step: int, trainer_state: dict,
                     write_framework_files: Callable[[Path], None], keep: int) -> Path:
    """A new checkpoint (framework files + trainer state JSON), then prune to the newest ``keep``."""
    target = checkpoint_dir(checkpoints_root, global_step)
    with atomic_directory(target, replace=True) as temporary:
        write_framework_files(temporary)
        (temporary / TRAINER_STATE_FILE).write_text(json.dumps(trainer_state, indent=1))
    for old in list_checkpoints(checkpoints_root)[:-max(1, keep)]:
        (old / TRAINER_STATE_FILE).unlink()  # first: a prune killed half-way leaves no "complete" checkpoint
        shutil.rmtree(old, ignore_errors=True)
    for leftover in Path(checkpoints_root).glob(f"{CHECKPOINT_PREFIX}*"):  # from a prune that was killed
        if leftover.is_dir() and not (leftover / TRAINER_STATE_FILE).is_file():
            shutil.rmtree(leftover, ignore_errors=True)
    return target


def read_trainer_state(checkpoint: Path, state_class: type[State]) -> State:
    """``trainer_state.json`` as ``state_class(**fields)``; malformed -> PaddleportError naming the file."""
    path = Path(checkpoint) / TRAINER_STATE_FILE
    fields = read_json(path)
    try:
        return state_class(**fields)
    except TypeError as error:
        raise PaddleportError(path, f"is not a trainer state ({error})") from None
