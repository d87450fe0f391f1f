"""Every kind of bad input is a one-line PaddleportError (exit 2) naming the file or option, before training."""

from __future__ import annotations

import shutil

import pytest

from paddleport.data import QQP_KSHOT_DIR
from paddleport.errors import PaddleportError
from paddleport.glue_runners import GlueRunConfig, run_glue
from tests.fixtures import make_tiny_hf_checkpoint

QQP_HEADER = "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate"


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    return make_tiny_hf_checkpoint(tmp_path_factory.mktemp("tiny_bert"), "BertModel")


@pytest.fixture()
def data_dir(tmp_path):
    directory = tmp_path / "data"
    directory.mkdir()
    for name in ("train.tsv", "dev.tsv"):
        shutil.copy(QQP_KSHOT_DIR / name, directory / name)
    return directory


def config(model, out, **overrides) -> GlueRunConfig:
    settings = dict(framework="torch", model=model, output_dir=out, data_dir=QQP_KSHOT_DIR, max_length=32,
                    batch_size=16, epochs=1, num_threads=1, progress=False, verbose=False)
    return GlueRunConfig(**{**settings, **overrides})


def expect_error(cfg: GlueRunConfig, pattern: str) -> PaddleportError:
    with pytest.raises(PaddleportError, match=pattern) as error:
        run_glue(cfg)
    assert error.value.exit_code == 2 and "\n" not in str(error.value)
    assert not (cfg.output_dir / "checkpoints").exists()  # nothing was trained
    return error.value


def test_missing_column(tiny_bert, data_dir, tmp_path):
    (data_dir / "train.tsv").write_text("id\tquestion1\tis_duplicate\n1\ta\t0\n")
    error = expect_error(config(tiny_bert, tmp_path / "out", data_dir=data_dir),
                         r"train\.tsv: missing column 'question2' \(qqp second sentence\)")
    assert error.where.endswith("train.tsv")


def test_unknown_task(tiny_bert, tmp_path):
    expect_error(config(tiny_bert, tmp_path / "out", task="qqqp"), r"--task: unknown task 'qqqp'")


def test_label_outside_num_labels(tiny_bert, data_dir, tmp_path):
    (data_dir / "dev.tsv").write_text(f"{QQP_HEADER}\n1\t\t\ta\tb\t1\n2\t\t\tc\td\t3\n")
    expect_error(config(tiny_bert, tmp_path / "out", data_dir=data_dir),
                 r"dev\.tsv: row 2: label '3' is outside the 2 labels of qqp")


@pytest.mark.parametrize("content", ["", QQP_HEADER + "\n"], ids=["zero-bytes", "header-only"])
def test_empty_file(tiny_bert, data_dir, tmp_path, content):
    (data_dir / "dev.tsv").write_text(content)
    expect_error(config(tiny_bert, tmp_path / "out", data_dir=data_dir), r"dev\.tsv: is empty")


def test_model_head_disagrees_with_task(tmp_path):
    three_way = make_tiny_hf_checkpoint(tmp_path / "mnli_head", "BertForSequenceClassification", num_labels=3)
    expect_error(config(three_way, tmp_path / "out"),
                 r"mnli_head: has a trained classifier for 3 labels but task qqp needs 2")


def test_output_dir_holding_another_run(tiny_bert, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "run_config.json").write_text("{}")
    expect_error(config(tiny_bert, out), r"out: already holds another run; pass --overwrite")
    expect_error(config(tiny_bert, tmp_path / "empty", resume=True), r"--resume: .* holds no run to resume")


def test_missing_test_file_for_predict(tiny_bert, data_dir, tmp_path):
    expect_error(config(tiny_bert, tmp_path / "out", data_dir=data_dir, do_predict=True), r"test\.tsv: file not found")


def test_bad_option_values(tiny_bert, tmp_path):
    expect_error(config(tiny_bert, tmp_path / "out", batch_size=0), r"--batch-size: must be positive")
    expect_error(config(tiny_bert, tmp_path / "out", amp="fp8"), r"--amp: unknown mode")
    expect_error(config(tiny_bert, tmp_path / "out", dropout_masks="sometimes"), r"--dropout-masks: unknown mode")


@pytest.mark.parametrize("framework", ["torch", "paddle"])
def test_gpu_without_one_is_a_one_line_exit_2(framework, tiny_bert, tmp_path, capsys):
    from paddleport.cli import main

    code = main(["run-glue", "--framework", framework, "--model", str(tiny_bert), "--output-dir", str(tmp_path / "o"),
                 "--data-dir", str(QQP_KSHOT_DIR), "--device", "gpu", "--no-progress"])
    error_lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("paddleport")]
    assert code == 2 and error_lines == [error_lines[0]] and "--device: gpu requested" in error_lines[0]
    assert not (tmp_path / "o").exists()


def test_gradient_checkpointing_transformers_cannot_do(tmp_path):
    albert = make_tiny_hf_checkpoint(tmp_path / "albert", "AlbertModel")
    expect_error(config(albert, tmp_path / "out", gradient_checkpointing=True),
                 r"--gradient-checkpointing: transformers' AlbertForSequenceClassification does not support it")
