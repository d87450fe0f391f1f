"""``paddleport diff`` on the command line: exit 0 on pass, 1 on a divergence, 2 on bad input (one line)."""

import json

import numpy as np
import pytest

from examples.buggy_port.inputs import make_inputs
from examples.cnn.inputs import make_inputs as make_images
from paddleport.cli import main


@pytest.fixture
def cnn_inputs(tmp_path):
    path = tmp_path / "cnn_inputs.npz"
    np.savez(path, **make_images())
    return path


def test_cnn_example_passes_with_training_steps(cnn_inputs, tmp_path, capsys):
    report_path = tmp_path / "report.json"
    code = main(["diff", "--torch", "examples.cnn.torch_cnn:build", "--paddle", "examples/cnn/paddle_cnn.py:build",
                 "--inputs", str(cnn_inputs), "--single-step", "--steps", "2", "--json", str(report_path)])
    assert code == 0, capsys.readouterr().out
    report = json.loads(report_path.read_text())
    assert report["passed"] and report["mode"] == "single-step" and len(report["training"]["losses"]) == 2


def test_buggy_port_exits_1_naming_the_module(tmp_path, capsys):
    inputs = tmp_path / "inputs.npz"
    np.savez(inputs, *make_inputs().values())  # positional: arr_0
    code = main(["diff", "--torch", "examples.buggy_port.torch_encoder:build",
                 "--paddle", "examples.buggy_port.paddle_port:build_buggy", "--inputs", str(inputs), "--single-step"])
    out = capsys.readouterr().out
    assert code == 1
    assert "first divergence layers.0.act" in out and "`layers.0.act` (GELU)" in out


@pytest.mark.parametrize("option, value, message", [
    ("--inputs", "missing.npz", "no such inputs file"),
    ("--inputs", "pickled.npz", "not a numpy .npz of plain arrays"),
    ("--torch", "examples.cnn.torch_cnn", "expected MODULE:FACTORY"),
    ("--torch", "examples.cnn.torch_cnn:nothing", "has no function 'nothing'"),
    ("--paddle", "examples.cnn.torch_cnn:build", "not a paddle.nn.Layer"),
    ("--rules", "rules.py", "defines none of RULES"),
    ("--inputs", "wrong_names.npz", "torch forward(images) does not take the inputs (pixels)"),
])
def test_bad_input_exits_2_with_one_line(option, value, message, cnn_inputs, tmp_path, capsys):
    np.savez(tmp_path / "pickled.npz", images=np.array([{"a": 1}], dtype=object))
    (tmp_path / "rules.py").write_text("X = 1\n")
    np.savez(tmp_path / "wrong_names.npz", pixels=make_images()["images"])
    arguments = {"--torch": "examples.cnn.torch_cnn:build", "--paddle": "examples.cnn.paddle_cnn:build",
                 "--inputs": str(cnn_inputs)}
    arguments[option] = value if option in ("--torch", "--paddle") else str(tmp_path / value)
    argv = ["diff"] + [item for pair in arguments.items() for item in pair]
    assert main(argv) == 2
    # the runtime set-up may announce a first kernel build on this machine before the command runs
    error = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("building ")]
    assert len(error) == 1 and message in error[0]


def test_squeezebert_example_with_rules_file(tmp_path, capsys):
    from examples.squeezebert.inputs import make_inputs as make_tokens

    inputs = tmp_path / "tokens.npz"
    np.savez(inputs, **make_tokens())
    code = main(["diff", "--torch", "examples.squeezebert.torch_reference:build",
                 "--paddle", "examples.squeezebert.paddle_squeezebert:build", "--inputs", str(inputs),
                 "--rules", "examples/squeezebert/rules.py", "--single-step", "--train"])
    assert code == 0, capsys.readouterr().out
