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
    err = capsys.readouterr().err
    # (Paddle's own import-time log lines are another matter: the error is one line, without a traceback)
    lines = [line for line in err.splitlines() if line.startswith("paddleport")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, (code, err)
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
    refusal = r"unsafe content refused: pickle references _operator\.getitem$"
    with pytest.raises(PaddleportError, match=refusal) as error:
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
        "nested.pkl": {"list": [1, 2.5, "x", None, True], "tensor": paddle.arange(3),
                       "optimizer": optimizer.state_dict()},
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
             "UnpackBigParamInfor@@": {"w": {"OriginShape": (3, 4), "slices": ["w@@.0", "w@@.1"]}},
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
                             "--warmup", "0", "--json", tmp_path / "r.json"],
                    "unsafe content refused: pickle references")
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


# --- shards stay inside the checkpoint directory ----------------------------------------------------

def sharded_copy(tiny_hf: Path, directory: Path) -> Path:
    """``tiny_hf`` as a one-shard checkpoint (model.safetensors.index.json + model-00001-of-00001)."""
    import json
    import shutil

    shutil.copytree(tiny_hf, directory)
    (directory / "model.safetensors").rename(directory / "model-00001-of-00001.safetensors")
    names = list(load_safetensors_names(directory / "model-00001-of-00001.safetensors"))
    (directory / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {}, "weight_map": {name: "model-00001-of-00001.safetensors" for name in names}}))
    return directory


def load_safetensors_names(path: Path) -> list[str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as stored:
        return list(stored.keys())


def repoint_shard(directory: Path, target: str) -> None:
    import json

    index_path = directory / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    index["weight_map"] = {name: target for name in index["weight_map"]}
    index_path.write_text(json.dumps(index))


@pytest.mark.parametrize("how", ["absolute", "dotdot", "symlink"])
def test_shard_outside_the_checkpoint_is_refused(tiny_hf, tmp_path, capsys, how):
    directory = sharded_copy(tiny_hf, tmp_path / "ckpt")
    outside = tmp_path / "elsewhere" / "model.safetensors"  # a valid checkpoint file, just not this one's
    outside.parent.mkdir()
    (directory / "model-00001-of-00001.safetensors").rename(outside)
    if how == "absolute":
        repoint_shard(directory, str(outside))
    elif how == "dotdot":
        repoint_shard(directory, "../elsewhere/model.safetensors")
    else:
        (directory / "model-00001-of-00001.safetensors").symlink_to(outside)
    one_line_exit_2(capsys, ["convert", directory, tmp_path / "out"], "model.safetensors.index.json",
                    "outside the checkpoint directory")
    assert not (tmp_path / "out").exists()
    one_line_exit_2(capsys, ["compare", directory, directory, "--limit", "1"], "outside the checkpoint directory")


def test_shard_inside_the_checkpoint_converts(tiny_hf, tmp_path):
    directory = sharded_copy(tiny_hf, tmp_path / "ckpt")
    report = convert_checkpoint(directory, tmp_path / "out", progress=False)
    assert report.tensors and (tmp_path / "out" / "model.safetensors").is_file()


# --- .bin files: legacy (non-zip) format loads, a hostile one is one line --------------------------

def test_legacy_non_zip_bin_converts(tmp_path):
    import torch

    from tests.fixtures import copy_tokenizer, make_tiny_hf_model

    model = make_tiny_hf_model("BertModel")
    directory = tmp_path / "legacy"
    model.config.save_pretrained(directory)
    copy_tokenizer(directory)
    torch.save(model.state_dict(), directory / "pytorch_model.bin", _use_new_zipfile_serialization=False)
    assert not __import__("zipfile").is_zipfile(directory / "pytorch_model.bin")
    convert_checkpoint(directory, tmp_path / "out", progress=False)
    from paddleport.core.tensor_io import read_safetensors_checked

    arrays, _ = read_safetensors_checked(tmp_path / "out" / "model.safetensors")
    np.testing.assert_array_equal(arrays["embeddings.word_embeddings.weight"],
                                  model.state_dict()["embeddings.word_embeddings.weight"].numpy())


@pytest.fixture()
def hostile_bin(tiny_hf, tmp_path):
    """An HF directory whose pytorch_model.bin pickles os.system next to the real tensors."""
    import shutil

    import torch

    from safetensors.torch import load_file

    directory = tmp_path / "hostile"
    shutil.copytree(tiny_hf, directory)
    state = load_file(directory / "model.safetensors")
    (directory / "model.safetensors").unlink()
    canary = tmp_path / "bin-canary"
    torch.save({**state, "extra": _RunsCommand(f"touch {canary}")}, directory / "pytorch_model.bin")
    return directory, canary


def test_compare_refuses_hostile_bin(hostile_bin, poisoned_paddle, tmp_path, capsys):
    directory, canary = hostile_bin
    one_line_exit_2(capsys, ["compare", directory, directory, "--limit", "1"], "pytorch_model.bin",
                    "is not a readable PyTorch weights file")
    assert not canary.exists()


def test_run_glue_refuses_hostile_bin(hostile_bin, tmp_path, capsys):
    directory, canary = hostile_bin
    one_line_exit_2(capsys, ["run-glue", "--framework", "torch", "--model", directory, "--output-dir",
                             tmp_path / "o", "--data-dir", QQP_KSHOT_DIR, "--num-threads", "1", "--no-progress"],
                    "pytorch_model.bin", "is not a readable PyTorch weights file")
    assert not canary.exists() and not (tmp_path / "o").exists()


# --- a truncated safetensors as HF_DIR ------------------------------------------------------------

@pytest.fixture()
def truncated_hf(tiny_hf, tmp_path):
    import shutil

    directory = tmp_path / "truncated"
    shutil.copytree(tiny_hf, directory)
    weights = directory / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return directory


@pytest.mark.parametrize("command", ["compare", "bench", "run-glue", "train-parity"])
def test_truncated_safetensors_is_one_line(truncated_hf, tiny_hf, tmp_path, capsys, command):
    out = tmp_path / "o"
    arguments = {
        "compare": ["compare", truncated_hf, tiny_hf, "--limit", "1", "--json", out],
        "bench": ["bench", truncated_hf, "--seq-lens", "8", "--batch-sizes", "1", "--iters", "1", "--json", out],
        "run-glue": ["run-glue", "--framework", "paddle", "--model", truncated_hf, "--output-dir", out,
                     "--data-dir", QQP_KSHOT_DIR, "--num-threads", "1", "--no-progress"],
        "train-parity": ["train-parity", "--model", truncated_hf, "--steps", "1", "--data-dir", QQP_KSHOT_DIR,
                         "--num-threads", "1", "--json", out],
    }[command]
    one_line_exit_2(capsys, arguments, "model.safetensors", "is not a readable safetensors file")
    assert not out.exists()


# --- config.json values: type and range checked before any model is built ---------------------------

def with_config(tiny_hf: Path, directory: Path, **changes) -> Path:
    import json
    import shutil

    shutil.copytree(tiny_hf, directory)
    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**config, **changes}))
    return directory


@pytest.mark.parametrize("changes, message", [
    ({"num_attention_heads": 0}, "num_attention_heads must be at least 1, not 0"),
    ({"num_attention_heads": -2}, "num_attention_heads must be at least 1, not -2"),
    ({"num_attention_heads": "32"}, 'num_attention_heads must be an integer, not "32"'),
    ({"num_attention_heads": None}, "num_attention_heads must be set (null given)"),
    ({"num_attention_heads": 5}, "hidden_size 32 is not a multiple of num_attention_heads 5"),
    ({"hidden_dropout_prob": 1.5}, "hidden_dropout_prob must be at most 1.0, not 1.5"),
    ({"id2label": ["a", "b"]}, "id2label must be an object mapping label ids to names"),
    ({"id2label": {"zero": "a", "one": "b"}}, "id2label keys must be label ids 0..1"),
    ({"id2label": {"0": "a", "2": "b"}}, "id2label keys must be the label ids 0..1, not [0, 2]"),
    ({"num_hidden_layers": 3}, "num_hidden_layers is 3 but the weights hold 2 layers (numbered 0..1)"),
    ({"vocab_size": 10**9}, "vocab_size 1000000000, hidden_size 32 disagree with "
                            "bert.embeddings.word_embeddings.weight of shape [30522, 32]"),
    ({"hidden_size": 3_200_000}, "hidden_size 3200000 disagree with bert.embeddings"),
])
@pytest.mark.parametrize("command", ["convert", "compare"])
def test_bad_config_value_is_one_line(tiny_hf, tmp_path, capsys, changes, message, command):
    directory = with_config(tiny_hf, tmp_path / "bad", **changes)
    arguments = (["convert", directory, tmp_path / "out"] if command == "convert"
                 else ["compare", directory, directory, "--limit", "1", "--json", tmp_path / "out"])
    one_line_exit_2(capsys, arguments, "config.json", message)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["compare", "run-glue", "train-parity", "convert"])
def test_absurd_layer_count_fails_before_building_a_model(tiny_hf, tmp_path, capsys, monkeypatch, command):
    """100,000 layers against a 2-layer checkpoint: refused from the weights' names, no model is built."""
    import transformers

    import paddleport.models.modeling_utils as modeling_utils

    def refuse_to_build(*args, **kwargs):
        raise AssertionError("a model was built")

    monkeypatch.setattr(transformers.PreTrainedModel, "__init__", refuse_to_build)
    monkeypatch.setattr(modeling_utils.PretrainedModel, "__init__", refuse_to_build)
    directory = with_config(tiny_hf, tmp_path / "deep", num_hidden_layers=100_000)
    out = tmp_path / "out"
    arguments = {
        "compare": ["compare", directory, directory, "--limit", "1", "--json", out],
        "run-glue": ["run-glue", "--framework", "torch", "--model", directory, "--output-dir", out,
                     "--data-dir", QQP_KSHOT_DIR, "--num-threads", "1", "--no-progress"],
        "train-parity": ["train-parity", "--model", directory, "--steps", "1", "--data-dir", QQP_KSHOT_DIR,
                         "--num-threads", "1", "--json", out],
        "convert": ["convert", directory, out],
    }[command]
    one_line_exit_2(capsys, arguments, "num_hidden_layers is 100000 but the weights hold 2 layers")
    assert not out.exists()


# --- sequence lengths against max_position_embeddings ----------------------------------------------

@pytest.fixture(scope="module")
def short_positions(tmp_path_factory):
    """A checkpoint with 16 positions, in both layouts: every default length above 16 must be clamped."""
    root = tmp_path_factory.mktemp("short")
    hf = make_tiny_hf_checkpoint(root / "hf", "BertForSequenceClassification", max_position_embeddings=16)
    convert_checkpoint(hf, root / "paddle", to="paddle", progress=False)
    return hf, root / "paddle"


def test_export_checks_at_lengths_the_model_takes(short_positions, tmp_path, capsys):
    assert main(["export", str(short_positions[1]), str(tmp_path / "exported")]) == 0
    assert (tmp_path / "exported" / "config.json").is_file()


def test_bench_default_lengths_are_clamped(short_positions):
    from paddleport.parity.bench import BenchOptions, _fit_seq_lens

    configs = [{"max_position_embeddings": 16}]
    assert _fit_seq_lens(BenchOptions(), configs).seq_lens == (16,)
    assert _fit_seq_lens(BenchOptions(), [{"max_position_embeddings": 200}]).seq_lens == (32, 128)
    assert _fit_seq_lens(BenchOptions(seq_lens=(8,)), configs).seq_lens == (8,)


def test_bench_explicit_length_above_positions(short_positions, tmp_path, capsys):
    one_line_exit_2(capsys, ["bench", short_positions[0], "--seq-lens", "8,32", "--json", tmp_path / "r.json"],
                    "--seq-lens: 32 exceeds max_position_embeddings 16")
    assert not (tmp_path / "r.json").exists()


def test_compare_explicit_length_above_positions(short_positions, tmp_path, capsys):
    one_line_exit_2(capsys, ["compare", *short_positions, "--max-length", "32", "--json", tmp_path / "r.json"],
                    "--max-length: 32 exceeds the model's max_position_embeddings 16")
    assert not (tmp_path / "r.json").exists()


@pytest.mark.parametrize("framework", ["torch", "paddle"])
def test_run_glue_explicit_length_above_positions(short_positions, tmp_path, capsys, framework):
    one_line_exit_2(capsys, ["run-glue", "--framework", framework, "--model", short_positions[0], "--output-dir",
                             tmp_path / "o", "--data-dir", QQP_KSHOT_DIR, "--max-length", "32", "--no-progress"],
                    "--max-length: 32 exceeds the model's max_position_embeddings 16")
    assert not (tmp_path / "o").exists()  # no run_config.json blocks a rerun


def test_train_parity_default_length_is_clamped(short_positions, tmp_path, capsys):
    assert main(["train-parity", "--model", str(short_positions[0]), "--steps", "1", "--batch-size", "2",
                 "--data-dir", str(QQP_KSHOT_DIR), "--num-threads", "1"]) == 0
    one_line_exit_2(capsys, ["train-parity", "--model", short_positions[0], "--steps", "1", "--max-length", "17",
                             "--data-dir", QQP_KSHOT_DIR, "--json", tmp_path / "r.json"],
                    "--max-length: 17 exceeds the model's max_position_embeddings 16")
    assert not (tmp_path / "r.json").exists()


# --- bytes that are not UTF-8 ------------------------------------------------------------------------

def test_non_utf8_inputs_file_for_compare(tiny_hf, tmp_path, capsys):
    inputs = tmp_path / "inputs.txt"
    inputs.write_bytes(b"a fine sentence\nnot \xff\xfe utf-8\n")
    one_line_exit_2(capsys, ["compare", tiny_hf, tiny_hf, "--inputs", inputs, "--json", tmp_path / "r.json"],
                    "inputs.txt: is not UTF-8 text (byte 0xff cannot be decoded)")
    assert not (tmp_path / "r.json").exists()


@pytest.mark.parametrize("where", ["header", "row"])
def test_non_utf8_glue_tsv(tiny_hf, tmp_path, capsys, where):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(QQP_KSHOT_DIR, data)
    text = (data / "train.tsv").read_bytes()
    header, rest = text.split(b"\n", 1)
    bad_row = b"9\t1\t2\t\xc3(\tb\t0\n"
    (data / "train.tsv").write_bytes(header + b"\xff\n" + rest if where == "header" else text + bad_row)
    one_line_exit_2(capsys, ["run-glue", "--framework", "torch", "--model", tiny_hf, "--output-dir", tmp_path / "o",
                             "--data-dir", data, "--no-progress"], "train.tsv")
    assert not (tmp_path / "o").exists()


# --- a damaged feature cache is a miss ---------------------------------------------------------------

def test_truncated_feature_cache_is_rebuilt(tmp_path):
    from paddleport.glue_runners.data import DataSource, load_glue_data
    from paddleport.glue_runners.features import load_tokenizer, tokenize_split
    from paddleport.glue_runners.tasks import get_task
    from tests.fixtures import MINILM_DIR

    split = load_glue_data(get_task("qqp"), DataSource(data_dir=QQP_KSHOT_DIR)).train
    tokenizer = load_tokenizer(MINILM_DIR)
    fresh = tokenize_split(split, tokenizer, 32, tmp_path)
    (cache_file,) = tmp_path.glob("features-*.npz")
    cache_file.write_bytes(cache_file.read_bytes()[:100])
    with pytest.warns(UserWarning, match="damaged feature cache ignored"):
        rebuilt = tokenize_split(split, tokenizer, 32, tmp_path)
    assert [ids.tolist() for ids in rebuilt.input_ids] == [ids.tolist() for ids in fresh.input_ids]
    reread = tokenize_split(split, tokenizer, 32, tmp_path)  # the rebuilt cache is whole again
    assert [ids.tolist() for ids in reread.input_ids] == [ids.tolist() for ids in fresh.input_ids]


# --- option values --------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["-1", "nan", "inf", "x"])
def test_compare_atol_must_be_finite_and_non_negative(tiny_hf, value, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", str(tiny_hf), str(tiny_hf), f"--atol={value}"])
    assert exit_info.value.code == 2
    assert "argument --atol:" in capsys.readouterr().err


def test_float16_cast_that_overflows_is_refused(tiny_hf, tmp_path, capsys):
    import shutil

    from safetensors.numpy import load_file, save_file

    directory = tmp_path / "big"
    shutil.copytree(tiny_hf, directory)
    weights = load_file(directory / "model.safetensors")
    weights["bert.pooler.dense.bias"][0] = 1e5  # float16 holds at most 65504
    save_file(weights, directory / "model.safetensors", metadata={"format": "pt"})
    one_line_exit_2(capsys, ["convert", directory, tmp_path / "out", "--dtype", "float16"],
                    "--dtype: tensor bert.pooler.dense.bias of model.safetensors overflows float16")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.*"))
    assert main(["convert", str(directory), str(tmp_path / "out"), "--dtype", "bfloat16"]) == 0


# --- an output that cannot be written ----------------------------------------------------------------

def test_output_under_a_file_is_one_line(tiny_hf, tmp_path, capsys):
    """(Tests run as root, which writes into read-only directories: a path under a file fails for anyone.)"""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    one_line_exit_2(capsys, ["convert", tiny_hf, blocker / "out"], str(blocker))
    one_line_exit_2(capsys, ["run-glue", "--framework", "torch", "--model", tiny_hf, "--output-dir", blocker / "o",
                             "--data-dir", QQP_KSHOT_DIR, "--max-train-samples", "4", "--no-progress"], str(blocker))


def test_full_disk_is_one_line_naming_the_output(tiny_hf, tmp_path, capsys, monkeypatch):
    import errno

    import paddleport.convert.converter as converter

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(converter, "write_safetensors_stream", disk_full)
    one_line_exit_2(capsys, ["convert", tiny_hf, tmp_path / "out"], str(tmp_path / "out"), "No space left on device")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.*"))
