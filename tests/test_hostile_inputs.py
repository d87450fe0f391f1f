"""Hostile and damaged inputs: one line naming the file or option, exit 2, nothing executed, nothing written."""

from __future__ import annotations

import operator
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from paddleport.cli import main
from paddleport.convert import convert_checkpoint
from paddleport.data import QQP_KSHOT_DIR
from paddleport.errors import PaddleportError
from paddleport.safe_pickle import load_state
from tests.fixtures import make_tiny_hf_checkpoint


class _RunsCommand:
    """Unpickles into ``os.system(command)``: what a hostile checkpoint hides in its pickle."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


class _RunsCommandThenReturns:
    """Runs the command, then unpickles into ``value``: a poisoned file that still loads as the real one."""

    def __init__(self, command: str, value):
        self.command, self.value = command, value

    def __reduce__(self):
        return operator.getitem, ((_RunsCommand(self.command), self.value), 1)


def poison_pdparams(path: Path, canary: Path) -> None:
    """Rewrite a .pdparams so that plain unpickling touches ``canary`` and still returns the real state dict."""
    state = load_state(path)
    with open(path, "wb") as stream:
        pickle.dump(_RunsCommandThenReturns(f"touch {canary}", state), stream)


def one_line_exit_2(capsys, arguments: list, *fragments: str) -> str:
    code = main([str(argument) for argument in arguments])
    lines = [line for line in capsys.readouterr().err.strip().splitlines() if line]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("paddleport"), (code, lines)
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def tiny_hf(tmp_path_factory):
    return make_tiny_hf_checkpoint(tmp_path_factory.mktemp("hf"), "BertForSequenceClassification")


@pytest.fixture()
def poisoned_paddle(tiny_hf, tmp_path):
    """A Paddle checkpoint (model_state.pdparams) whose pickle runs a command and returns the real weights."""
    directory = tmp_path / "poisoned"
    convert_checkpoint(tiny_hf, directory, to="paddle", fmt="pdparams", progress=False)
    canary = tmp_path / "canary"
    poison_pdparams(directory / "model_state.pdparams", canary)
    return directory, canary


# --- the restricted reader (safe_pickle.load_state) -------------------------------------------------

def test_poisoned_pdparams_really_runs_code_under_plain_pickle(poisoned_paddle, tmp_path):
    """The fixture is a real attack: the standard unpickler runs the command and returns the weights."""
    directory, canary = poisoned_paddle
    script = ("import pickle, sys; state = pickle.load(open(sys.argv[1], 'rb')); "
              "assert isinstance(state, dict) and len(state) > 10")
    subprocess.run([sys.executable, "-c", script, str(directory / "model_state.pdparams")], check=True)
    assert canary.exists()


def test_load_state_refuses_before_running_anything(poisoned_paddle):
    directory, canary = poisoned_paddle
    with pytest.raises(PaddleportError, match=r"unsafe content refused: pickle references _operator\.getitem$") as error:
        load_state(directory / "model_state.pdparams")
    assert error.value.where == str(directory / "model_state.pdparams") and not canary.exists()


@pytest.mark.parametrize("payload, name", [
    ((eval, ("__import__('os').system('true')",)), "builtins.eval"),
    ((subprocess.call, (["true"],)), "subprocess.call"),
    ((getattr, ("x", "upper")), "builtins.getattr"),
    ((__import__, ("os",)), "builtins.__import__"),
])
def test_load_state_refuses_other_callables(tmp_path, payload, name):
    class Payload:
        def __reduce__(self):
            return payload

    path = tmp_path / "state.pdopt"
    path.write_bytes(pickle.dumps({"moment": np.zeros(2), "x": Payload()}))
    with pytest.raises(PaddleportError, match=rf"refused: pickle references {name}$"):
        load_state(path)


def test_load_state_reads_what_paddle_save_writes(tmp_path):
    """Model and optimizer state dicts (LR scheduler entry included), other objects, protocols 2 to 4."""
    import paddle

    paddle.seed(0)
    layer = paddle.nn.Linear(3, 2)
    scheduler = paddle.optimizer.lr.LinearWarmup(paddle.optimizer.lr.PolynomialDecay(1e-3, 10), 2, 0.0, 1e-3)
    optimizer = paddle.optimizer.AdamW(learning_rate=scheduler, parameters=layer.parameters())
    layer(paddle.randn([4, 3])).sum().backward()
    optimizer.step()
    objects = {
        "model.pdparams": layer.state_dict(),
        "optimizer.pdopt": optimizer.state_dict(),
        "bf16.pdparams": {"w": paddle.ones([2], dtype="bfloat16"), "h": paddle.ones([2], dtype="float16")},
        "nested.pkl": {"list": [1, 2.5, "x", None, True], "tensor": paddle.arange(3), "optimizer": optimizer.state_dict()},
        "dense.pd": layer.weight.value().get_tensor(),
    }
    for name, value in objects.items():
        for protocol in (2, 3, 4):
            path = tmp_path / f"{protocol}-{name}"
            paddle.save(value, str(path), protocol=protocol)
            assert_same(load_state(path), paddle.load(str(path), return_numpy=True))
    assert load_state(tmp_path / "4-optimizer.pdopt")["LR_Scheduler"] == optimizer.state_dict()["LR_Scheduler"]


def test_load_state_reads_pickled_training_state(tmp_path):
    """What paddle_backend.save_training_state pickled (old checkpoints): RNG state, scheduler, numpy scalars."""
    import paddle

    extra = {"scheduler": {"last_epoch": 3, "last_lr": 1e-4}, "rng": paddle.get_rng_state(), "scaler": None,
             "numpy": (np.float32(2.0), np.random.get_state())}
    path = tmp_path / "training_state.pkl"
    path.write_bytes(pickle.dumps(extra))
    loaded = load_state(path)
    paddle.set_rng_state(loaded["rng"])
    expected = paddle.rand([3]).numpy()
    paddle.set_rng_state(extra["rng"])
    np.testing.assert_array_equal(paddle.rand([3]).numpy(), expected)
    assert loaded["scheduler"] == extra["scheduler"] and loaded["numpy"][0] == np.float32(2.0)


def test_load_state_joins_arrays_paddle_split(tmp_path):
    """Protocols 2 and 3 split arrays over 1 GiB into slices; the layout, built here at a small size."""
    import paddle

    weight = np.arange(12, dtype=np.float32).reshape(3, 4)
    state = {"w@@.0": weight.reshape(-1)[:5], "w@@.1": weight.reshape(-1)[5:], "b": np.ones(2, np.float32),
             "UnpackBigParamInfor@@": {"w": {"OriginShape": (3, 4), "slices": ["w@@.0", "w@@.1"]}},  # typos: disable-line
             "StructuredToParameterName@@": {"w": "linear_0.w_0", "b": "linear_0.b_0"}}
    path = tmp_path / "split.pdparams"
    path.write_bytes(pickle.dumps(state, protocol=2))
    assert_same(load_state(path), paddle.load(str(path), return_numpy=True))
    np.testing.assert_array_equal(load_state(path)["w"], weight)


def test_load_state_damaged_file_is_one_line(tmp_path):
    path = tmp_path / "model_state.pdparams"
    path.write_bytes(pickle.dumps({"w": np.ones(3)})[:-9])
    with pytest.raises(PaddleportError, match="is not a readable pickled Paddle state") as error:
        load_state(path)
    assert "\n" not in str(error.value)


def assert_same(ours, theirs) -> None:
    assert type(ours) is type(theirs)
    if isinstance(ours, dict):
        assert list(ours) == list(theirs)
        for key in ours:
            assert_same(ours[key], theirs[key])
    elif isinstance(ours, (list, tuple)):
        assert len(ours) == len(theirs)
        for mine, other in zip(ours, theirs):
            assert_same(mine, other)
    elif isinstance(ours, np.ndarray):
        assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
        np.testing.assert_array_equal(ours, theirs)
    else:
        assert ours == theirs


# --- every command refuses a poisoned .pdparams: one line, exit 2, canary absent, nothing written ----

@pytest.mark.parametrize("to", ["hf", "paddle"])
def test_convert_refuses_poisoned_pdparams(poisoned_paddle, tmp_path, capsys, to):
    directory, canary = poisoned_paddle
    one_line_exit_2(capsys, ["convert", directory, tmp_path / "out", "--to", to], "model_state.pdparams",
                    "unsafe content refused: pickle references")
    assert not canary.exists() and not (tmp_path / "out").exists()


def test_compare_refuses_poisoned_pdparams(poisoned_paddle, tiny_hf, tmp_path, capsys):
    directory, canary = poisoned_paddle
    one_line_exit_2(capsys, ["compare", tiny_hf, directory, "--limit", "2", "--json", tmp_path / "r.json"],
                    "unsafe content refused: pickle references")
    assert not canary.exists() and not (tmp_path / "r.json").exists()


def test_bench_refuses_poisoned_pdparams(poisoned_paddle, tmp_path, capsys):
    directory, canary = poisoned_paddle
    one_line_exit_2(capsys, ["bench", directory, "--seq-lens", "8", "--batch-sizes", "1", "--iters", "1",
                             "--warmup", "0", "--json", tmp_path / "r.json"], "unsafe content refused: pickle references")
    assert not canary.exists() and not (tmp_path / "r.json").exists()


@pytest.mark.parametrize("framework", ["torch", "paddle"])
def test_run_glue_refuses_poisoned_pdparams(poisoned_paddle, tmp_path, capsys, framework):
    directory, canary = poisoned_paddle
    one_line_exit_2(capsys, ["run-glue", "--framework", framework, "--model", directory, "--output-dir",
                             tmp_path / "o", "--data-dir", QQP_KSHOT_DIR, "--num-threads", "1", "--no-progress"],
                    "unsafe content refused: pickle references")
    assert not canary.exists() and not (tmp_path / "o").exists()


def test_train_parity_refuses_poisoned_pdparams(poisoned_paddle, tmp_path, capsys):
    directory, canary = poisoned_paddle
    one_line_exit_2(capsys, ["train-parity", "--model", directory, "--steps", "1", "--data-dir", QQP_KSHOT_DIR,
                             "--num-threads", "1", "--json", tmp_path / "r.json"],
                    "unsafe content refused: pickle references")
    assert not canary.exists() and not (tmp_path / "r.json").exists()
