"""The converter: accounting, round trips, formats, dtypes, and every bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy

from paddleport.cli import main as cli_main
from paddleport.convert import convert_checkpoint, parameter_specs
from paddleport.errors import PaddleportError
from tests.checkpoint_variants import write_variant
from tests.fixtures import make_tiny_hf_checkpoint, make_tiny_hf_model

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bert_cls_dir(tmp_path_factory) -> Path:
    return make_tiny_hf_checkpoint(tmp_path_factory.mktemp("hf") / "bert", "BertForSequenceClassification")


@pytest.fixture(scope="module")
def squeezebert_mlm_dir(tmp_path_factory) -> Path:
    return make_tiny_hf_checkpoint(tmp_path_factory.mktemp("hf") / "sq", "SqueezeBertForMaskedLM")


def load_safetensors(path: Path) -> dict[str, np.ndarray]:
    import ml_dtypes  # noqa: F401

    return safetensors.numpy.load_file(str(path))


# --- layout of the output ----------------------------------------------------------------------

def test_output_directory_layout_and_report(tmp_path, bert_cls_dir):
    report = convert_checkpoint(bert_cls_dir, tmp_path / "out")
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == sorted([
        "config.json", "conversion.json", "model.safetensors", "special_tokens_map.json", "tokenizer.json",
        "tokenizer_config.json", "vocab.txt"])
    assert (out / "vocab.txt").read_bytes() == (bert_cls_dir / "vocab.txt").read_bytes()
    recorded = json.loads((out / "conversion.json").read_text())
    source_keys = set(load_safetensors(bert_cls_dir / "model.safetensors"))
    assert {t["source"] for t in recorded["tensors"]} == source_keys
    by_source = {t["source"]: t for t in recorded["tensors"]}
    query = by_source["bert.encoder.layer.0.attention.self.query.weight"]
    assert query["transform"] == "linear_weight" and query["dtype"] == "float32"
    assert by_source["bert.embeddings.word_embeddings.weight"]["transform"] == "embedding"
    assert by_source["bert.embeddings.LayerNorm.weight"]["transform"] == "layernorm_weight"
    assert len(report.tensors) == len(source_keys)
    weights = load_safetensors(out / "model.safetensors")
    source = load_safetensors(bert_cls_dir / "model.safetensors")
    np.testing.assert_array_equal(weights["classifier.weight"], source["classifier.weight"].T)
    np.testing.assert_array_equal(weights["bert.embeddings.word_embeddings.weight"],
                                  source["bert.embeddings.word_embeddings.weight"])


def test_conv1d_weights_are_not_transposed(tmp_path, squeezebert_mlm_dir):
    convert_checkpoint(squeezebert_mlm_dir, tmp_path / "out")
    source = load_safetensors(squeezebert_mlm_dir / "model.safetensors")
    weights = load_safetensors(tmp_path / "out" / "model.safetensors")
    name = "transformer.encoder.layers.1.intermediate.conv1d.weight"
    np.testing.assert_array_equal(weights[name], source[name])
    recorded = json.loads((tmp_path / "out" / "conversion.json").read_text())
    assert {t["transform"] for t in recorded["tensors"] if "conv1d" in t["source"]} == {"conv1d_weight",
                                                                                        "conv1d_bias"}


def test_table_names_and_shapes_equal_the_paddle_models():
    from paddleport import models

    for name, model_class in models.MODEL_CLASSES.items():
        config = model_class.config_class(num_hidden_layers=2, hidden_size=32, embedding_size=32, vocab_size=40,
                                          num_attention_heads=4, intermediate_size=64, num_labels=3)
        expected = {s.paddle_name: s.paddle_shape for s in parameter_specs(config, name)}
        actual = {k: tuple(v.shape) for k, v in model_class(config).state_dict().items()}
        assert expected == actual, name


# --- round trips -------------------------------------------------------------------------------

@pytest.mark.parametrize("fixture", ["bert_cls_dir", "squeezebert_mlm_dir"])
def test_hf_to_paddle_to_hf_is_bit_exact(tmp_path, request, fixture):
    import torch
    import transformers

    source_dir = request.getfixturevalue(fixture)
    convert_checkpoint(source_dir, tmp_path / "paddle")
    convert_checkpoint(tmp_path / "paddle", tmp_path / "hf", to="hf")
    original = load_safetensors(source_dir / "model.safetensors")
    round_trip = load_safetensors(tmp_path / "hf" / "model.safetensors")
    assert original.keys() == round_trip.keys()
    for name, value in original.items():
        assert value.dtype == round_trip[name].dtype
        assert value.tobytes() == round_trip[name].tobytes(), name
    architecture = json.loads((source_dir / "config.json").read_text())["architectures"][0]
    reloaded = getattr(transformers, architecture).from_pretrained(str(tmp_path / "hf"))
    expected = getattr(transformers, architecture).from_pretrained(str(source_dir))
    for (name, a), (_, b) in zip(reloaded.state_dict().items(), expected.state_dict().items()):
        assert torch.equal(a, b), name


def test_paddle_fine_tune_converts_back_for_transformers(tmp_path, bert_cls_dir):
    """A model saved by paddleport's save_pretrained is a valid source for --to hf."""
    import torch
    import transformers

    from paddleport import models

    convert_checkpoint(bert_cls_dir, tmp_path / "paddle")
    model = models.AutoModelForSequenceClassification.from_pretrained(tmp_path / "paddle")
    model.save_pretrained(tmp_path / "saved")
    convert_checkpoint(tmp_path / "saved", tmp_path / "hf", to="hf")
    hf_model = transformers.AutoModelForSequenceClassification.from_pretrained(str(tmp_path / "hf"))
    original = transformers.AutoModelForSequenceClassification.from_pretrained(str(bert_cls_dir))
    assert all(torch.equal(a, b) for a, b in zip(hf_model.state_dict().values(), original.state_dict().values()))


# --- heads, dtypes, formats --------------------------------------------------------------------

def test_mlm_checkpoint_into_classifier_reports_dropped_and_new(tmp_path):
    source = write_variant(make_tiny_hf_model("BertForMaskedLM"), tmp_path / "mlm", "bin")
    report = convert_checkpoint(source, tmp_path / "cls", arch="BertForSequenceClassification")
    assert report.dropped == ["cls.predictions.bias", "cls.predictions.transform.LayerNorm.bias",
                              "cls.predictions.transform.LayerNorm.weight", "cls.predictions.transform.dense.bias",
                              "cls.predictions.transform.dense.weight"]
    assert report.newly_initialised == ["bert.pooler.dense.bias", "bert.pooler.dense.weight", "classifier.bias",
                                        "classifier.weight"]
    assert report.tied == ["cls.predictions.decoder.bias", "cls.predictions.decoder.weight"]
    recorded = json.loads((tmp_path / "cls" / "conversion.json").read_text())
    assert recorded["dropped"] == report.dropped and recorded["newly_initialised"] == report.newly_initialised
    from paddleport import models

    model = models.AutoModelForSequenceClassification.from_pretrained(tmp_path / "cls")
    assert model.loading_info.newly_initialised == report.newly_initialised


def test_headed_checkpoint_into_base_model(tmp_path, bert_cls_dir):
    report = convert_checkpoint(bert_cls_dir, tmp_path / "base", arch="BertModel")
    assert report.dropped == ["classifier.bias", "classifier.weight"]
    assert not any(t.target.startswith("bert.") for t in report.tensors)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_dtype_cast(tmp_path, bert_cls_dir, dtype):
    import ml_dtypes

    import paddleport.models as models

    convert_checkpoint(bert_cls_dir, tmp_path / dtype, dtype=dtype)
    weights = load_safetensors(tmp_path / dtype / "model.safetensors")
    assert {v.dtype.name for v in weights.values()} == {dtype}
    source = load_safetensors(bert_cls_dir / "model.safetensors")
    expected = source["classifier.weight"].T.astype(np.float16 if dtype == "float16" else ml_dtypes.bfloat16)
    assert weights["classifier.weight"].tobytes() == expected.tobytes()
    assert json.loads((tmp_path / dtype / "config.json").read_text())["dtype"] == dtype
    models.AutoModelForSequenceClassification.from_pretrained(tmp_path / dtype)


def test_pdparams_format_loads_with_paddle(tmp_path, squeezebert_mlm_dir):
    """Every tensor paddle.load reads back equals the transformers model's own, transposed where torch's module is
    an nn.Linear (decided from the torch modules, not from paddleport's conversion table)."""
    import paddle
    import torch
    import transformers

    from paddleport import models

    convert_checkpoint(squeezebert_mlm_dir, tmp_path / "pd", fmt="pdparams")
    assert not (tmp_path / "pd" / "model.safetensors").exists()
    state = paddle.load(str(tmp_path / "pd" / "model_state.pdparams"))
    model = models.AutoModelForMaskedLM.from_pretrained(tmp_path / "pd")
    assert set(state) == set(model.state_dict())
    hf_model = transformers.SqueezeBertForMaskedLM.from_pretrained(str(squeezebert_mlm_dir))
    linear = {f"{name}.weight" for name, module in hf_model.named_modules() if isinstance(module, torch.nn.Linear)}
    reference = {name: value.detach().numpy() for name, value in hf_model.state_dict().items() if name in state}
    assert set(reference) == set(state)
    for name, value in reference.items():
        np.testing.assert_array_equal(state[name].numpy(), value.T if name in linear else value, err_msg=name)


def test_untied_decoder_is_converted(tmp_path):
    model = make_tiny_hf_model("BertForMaskedLM", tie_word_embeddings=False)
    source = write_variant(model, tmp_path / "hf", "bin")
    report = convert_checkpoint(source, tmp_path / "pd")
    assert "cls.predictions.decoder.weight" in {t.source for t in report.tensors}


def test_tied_copy_that_differs_is_an_error(tmp_path):
    import torch

    model = make_tiny_hf_model("BertForMaskedLM")
    source = write_variant(model, tmp_path / "hf", "bin")
    state = torch.load(source / "pytorch_model.bin", weights_only=True)
    state["cls.predictions.decoder.weight"] = state["cls.predictions.decoder.weight"] + 1
    torch.save(state, source / "pytorch_model.bin")
    with pytest.raises(PaddleportError, match="differs from bert.embeddings.word_embeddings.weight"):
        convert_checkpoint(source, tmp_path / "pd")


def test_converting_safetensors_and_running_paddle_imports_no_torch(tmp_path, bert_cls_dir):
    script = (
        "import sys\n"
        f"from paddleport.convert import convert_checkpoint\n"
        f"convert_checkpoint({str(bert_cls_dir)!r}, {str(tmp_path / 'pd')!r})\n"
        "assert 'paddle' not in sys.modules, 'conversion imported paddle'\n"
        "from paddleport import models\n"
        "import paddle\n"
        f"m = models.AutoModelForSequenceClassification.from_pretrained({str(tmp_path / 'pd')!r})\n"
        "m(input_ids=paddle.to_tensor([[101, 2054, 102]]))\n"
        "bad = sorted(k for k in sys.modules if k.split('.')[0] in ('torch', 'transformers'))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd=REPO)


# --- bad input: one line, exit 2, nothing at OUT ----------------------------------------------

def run_cli(args: list[str], capsys) -> tuple[int, str]:
    code = cli_main(["convert", *map(str, args)])
    return code, capsys.readouterr().err


def assert_rejected(capsys, args, out: Path, *fragments: str) -> None:
    code, err = run_cli(args, capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("paddleport: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]


def copy_checkpoint(source: Path, target: Path) -> Path:
    import shutil

    shutil.copytree(source, target)
    return target


def test_bad_source_missing(tmp_path, capsys):
    assert_rejected(capsys, [tmp_path / "nope", tmp_path / "out"], tmp_path / "out",
                    str(tmp_path / "nope"), "does not exist")


def test_bad_no_weights_file(tmp_path, capsys, bert_cls_dir):
    src = copy_checkpoint(bert_cls_dir, tmp_path / "src")
    (src / "model.safetensors").unlink()
    assert_rejected(capsys, [src, tmp_path / "out"], tmp_path / "out", str(src), "no weights file")


def test_bad_truncated_safetensors(tmp_path, capsys, bert_cls_dir):
    src = copy_checkpoint(bert_cls_dir, tmp_path / "src")
    data = (src / "model.safetensors").read_bytes()
    (src / "model.safetensors").write_bytes(data[: len(data) // 2])
    assert_rejected(capsys, [src, tmp_path / "out"], tmp_path / "out", "model.safetensors",
                    "not a readable safetensors file")


def test_bad_corrupt_safetensors_header(tmp_path, capsys, bert_cls_dir):
    src = copy_checkpoint(bert_cls_dir, tmp_path / "src")
    (src / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    assert_rejected(capsys, [src, tmp_path / "out"], tmp_path / "out", "model.safetensors",
                    "not a readable safetensors file")


def test_bad_corrupt_bin(tmp_path, capsys, bert_cls_dir):
    src = copy_checkpoint(bert_cls_dir, tmp_path / "src")
    (src / "model.safetensors").unlink()
    (src / "pytorch_model.bin").write_bytes(b"PK\x03\x04 this is not a torch checkpoint")
    assert_rejected(capsys, [src, tmp_path / "out"], tmp_path / "out", "pytorch_model.bin",
                    "not a readable PyTorch weights file")


def test_bad_truncated_bin(tmp_path, capsys):
    src = write_variant(make_tiny_hf_model("BertForSequenceClassification"), tmp_path / "src", "bin")
    data = (src / "pytorch_model.bin").read_bytes()
    (src / "pytorch_model.bin").write_bytes(data[: len(data) // 2])
    assert_rejected(capsys, [src, tmp_path / "out"], tmp_path / "out", "pytorch_model.bin",
                    "not a readable PyTorch weights file")


def test_bad_pickle_with_objects_is_refused(tmp_path, capsys, bert_cls_dir):
    import torch

    src = copy_checkpoint(bert_cls_dir, tmp_path / "src")
    (src / "model.safetensors").unlink()
    torch.save({"weights": Path("/etc/passwd")}, src / "pytorch_model.bin")  # an arbitrary object
    assert_rejected(capsys, [src, tmp_path / "out"], tmp_path / "out", "pytorch_model.bin")


def test_bad_config_missing(tmp_path, capsys, bert_cls_dir):
    src = copy_checkpoint(bert_cls_dir, tmp_path / "src")
    (src / "config.json").unlink()
    assert_rejected(capsys, [src, tmp_path / "out"], tmp_path / "out", "config.json", "missing")


def test_bad_config_unparsable(tmp_path, capsys, bert_cls_dir):
    src = copy_checkpoint(bert_cls_dir, tmp_path / "src")
    (src / "config.json").write_text('{"model_type": "bert",')
    assert_rejected(capsys, [src, tmp_path / "out"], tmp_path / "out", "config.json", "not valid JSON")


CONFIG_EDITS = [
    ({"architectures": ["BertForNextSentencePrediction"]},
     ["BertForNextSentencePrediction", "not supported", "BertForSequenceClassification", "SqueezeBertForMaskedLM"]),
    ({"model_type": "gpt2"}, ["'gpt2' is not supported", "bert"]),
    ({"intermediate_size": 40},
     ["model.safetensors", "bert.encoder.layer.0.intermediate.dense.bias has shape [37] but config.json implies [40]"]),
    ({"num_hidden_layers": 1}, ["config.json", "num_hidden_layers is 1 but the weights hold 2 layers"]),
]


@pytest.mark.parametrize("edit,fragments", CONFIG_EDITS,
                         ids=["unsupported-architecture", "unsupported-model-type", "shape-disagrees", "unknown-tensor"])
def test_bad_config_disagrees_with_checkpoint(tmp_path, capsys, bert_cls_dir, edit, fragments):
    src = copy_checkpoint(bert_cls_dir, tmp_path / "src")
    config = json.loads((src / "config.json").read_text())
    (src / "config.json").write_text(json.dumps(config | edit))
    assert_rejected(capsys, [src, tmp_path / "out"], tmp_path / "out", *fragments)


def test_bad_missing_tensor(tmp_path, capsys, bert_cls_dir):
    src = copy_checkpoint(bert_cls_dir, tmp_path / "src")
    weights = load_safetensors(src / "model.safetensors")
    del weights["bert.encoder.layer.1.output.dense.weight"]
    safetensors.numpy.save_file(weights, str(src / "model.safetensors"), metadata={"format": "pt"})
    assert_rejected(capsys, [src, tmp_path / "out"], tmp_path / "out", "not in the checkpoint",
                    "bert.encoder.layer.1.output.dense.weight")


def test_bad_output_exists_and_force_replaces(tmp_path, capsys, bert_cls_dir):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, err = run_cli([bert_cls_dir, out], capsys)
    assert code == 2 and "already exists" in err and str(out) in err
    assert (out / "keep.txt").read_text() == "mine"
    assert cli_main(["convert", str(bert_cls_dir), str(out), "--force"]) == 0
    assert (out / "model.safetensors").is_file() and not (out / "keep.txt").exists()


def test_bad_paddle_source_converted_to_paddle_again(tmp_path, capsys, bert_cls_dir):
    convert_checkpoint(bert_cls_dir, tmp_path / "pd")
    assert_rejected(capsys, [tmp_path / "pd", tmp_path / "out"], tmp_path / "out", "already holds Paddle-layout")


def test_interrupted_conversion_leaves_nothing(tmp_path, monkeypatch, bert_cls_dir):
    from paddleport.convert import converter

    calls = []

    def failing_transform(array, spec, to, dtype):
        calls.append(spec)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return array

    monkeypatch.setattr(converter, "_convert_tensor", failing_transform)
    with pytest.raises(KeyboardInterrupt):
        convert_checkpoint(bert_cls_dir, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_cli_module_entry_point(tmp_path, bert_cls_dir):
    result = subprocess.run([sys.executable, "-m", "paddleport", "convert", str(bert_cls_dir), str(tmp_path / "o"),
                             "--arch", "BertModel"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "converted" in result.stdout and "dropped" in result.stdout


def test_untied_decoder_matches_transformers(tmp_path):
    from paddleport import models
    from tests.fixtures import assert_within, forward_diffs, qqp_batch

    model = make_tiny_hf_model("BertForMaskedLM", tie_word_embeddings=False)
    convert_checkpoint(write_variant(model, tmp_path / "hf", "bin"), tmp_path / "pd")
    paddle_model = models.AutoModelForMaskedLM.from_pretrained(tmp_path / "pd")
    assert_within(forward_diffs(model, paddle_model, qqp_batch(pairs=2)), 1e-5)


def test_pretraining_checkpoint_needs_arch_and_drops_nsp_head(tmp_path):
    source = write_variant(make_tiny_hf_model("BertForPreTraining"), tmp_path / "pre", "safetensors")
    with pytest.raises(PaddleportError, match="BertForPreTraining' is not supported"):
        convert_checkpoint(source, tmp_path / "nope")
    report = convert_checkpoint(source, tmp_path / "mlm", arch="BertForMaskedLM")
    assert report.dropped == ["bert.pooler.dense.bias", "bert.pooler.dense.weight",
                              "cls.seq_relationship.bias", "cls.seq_relationship.weight"]
    assert not report.newly_initialised
