"""The new architectures through every tool: compare (--grad), export, bench, train-parity, run-glue; ALBERT's
shared groups in conversion.json; SciBERT's vocabulary; full-size published configs (``full`` tier)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from paddleport import models
from paddleport.convert import convert_checkpoint
from paddleport.data import QQP_KSHOT_DIR
from paddleport.models import presets
from paddleport.parity.outputs import HEAD_OUTPUTS, class_layout
from paddleport.registry import architecture_of_class
from tests.fixtures import make_tiny_hf_checkpoint, make_tiny_hf_model, model_batch, qqp_batch

COMPARED = (
    "RobertaForSequenceClassification", "XLMRobertaForTokenClassification", "DistilBertForSequenceClassification",
    "DistilBertForQuestionAnswering", "ElectraForPreTraining", "ElectraForMaskedLM",
    "AlbertForSequenceClassification", "AlbertForMaskedLM", "BertForQuestionAnswering",
    "SqueezeBertForTokenClassification", "ErnieForPreTraining", "DebertaV2ForSequenceClassification",
    "DebertaV2ForMaskedLM",
)
EXPORTED = ("RobertaForSequenceClassification", "XLMRobertaModel", "DistilBertModel",
            "DistilBertForQuestionAnswering", "ElectraForPreTraining", "AlbertForSequenceClassification",
            "ErnieForPreTraining", "DebertaV2ForSequenceClassification")
BASE_MODELS = ("RobertaModel", "XLMRobertaModel", "DistilBertModel", "ElectraModel", "AlbertModel", "ErnieModel",
               "DebertaV2Model")


def converted(root: Path, architecture: str, **overrides) -> tuple[Path, Path]:
    hf_dir = make_tiny_hf_checkpoint(root / f"hf-{architecture}", architecture, **overrides)
    convert_checkpoint(hf_dir, root / f"paddle-{architecture}", progress=False)
    return hf_dir, root / f"paddle-{architecture}"


@pytest.mark.parametrize("architecture", COMPARED)
def test_compare_with_gradients_passes(tmp_path, architecture):
    from paddleport.parity.compare import compare_models

    hf_dir, paddle_dir = converted(tmp_path, architecture, num_labels=2)
    report = compare_models(hf_dir, paddle_dir, grad=True, limit=10, batch_size=5)
    names = [diff.name for diff in report.tensors]
    assert names[:3] == ["embeddings", "layer.0", "layer.1"]
    head = class_layout(json.loads((hf_dir / "config.json").read_text()), architecture).head
    assert set(HEAD_OUTPUTS[head]) <= set(names)  # logits; start and end logits; ERNIE's MLM and NSP logits
    assert report.passed, (report.first_failure, report.grad.first_failure)
    assert all(diff.max_abs <= 1e-5 for diff in report.tensors)
    assert len(report.grad.tensors) > 20


def test_multiple_choice_is_refused_by_compare_with_one_line(tmp_path):
    from paddleport.errors import PaddleportError
    from paddleport.parity.compare import compare_models

    hf_dir, paddle_dir = converted(tmp_path, "RobertaForMultipleChoice")
    with pytest.raises(PaddleportError, match=r"\[batch, choices, seq\]"):
        compare_models(hf_dir, paddle_dir)


@pytest.mark.parametrize("architecture", EXPORTED)
def test_export_round_trip(tmp_path, architecture):
    from paddleport.parity.export import export_model
    from paddleport.parity.inference import Predictor

    _, paddle_dir = converted(tmp_path, architecture)
    report = export_model(paddle_dir, tmp_path / "export")
    assert max(report.max_abs_diff.values()) <= 1e-5
    predictor = Predictor(report.out_dir)
    expected_inputs = models.AutoConfig.from_pretrained(paddle_dir)
    assert tuple(predictor.input_names) == getattr(models, architecture).from_pretrained(paddle_dir).input_names
    has_token_types = expected_inputs.model_type != "distilbert" and expected_inputs.type_vocab_size > 0
    assert ("token_type_ids" in predictor.input_names) == has_token_types  # DeBERTa-v3's tiny config: none
    assert ("task_type_ids" in predictor.input_names) == getattr(expected_inputs, "use_task_id", False)
    if architecture.endswith("QuestionAnswering"):
        assert report.outputs == ["start_logits", "end_logits"]
    if architecture == "ErnieForPreTraining":  # one output per token, one per sequence
        assert report.outputs == ["prediction_logits", "seq_relationship_logits"]


@pytest.mark.parametrize("architecture", ["DistilBertForSequenceClassification",
                                          "DebertaV2ForSequenceClassification"])
def test_bench_runs_a_model_without_token_types(tmp_path, architecture):
    """DistilBERT has none, nor has the tiny DeBERTa-v3 config; DeBERTa's relative attention also goes through both
    ONNX exporters (paddle2onnx had no masked_fill and a failing dynamic Expand)."""
    from paddleport.cli import main

    hf_dir, _ = converted(tmp_path, architecture)
    json_path = tmp_path / "rows.json"
    assert main(["bench", str(hf_dir), "--dtypes", "float32", "--batch-sizes", "2", "--seq-lens", "8",
                 "--iters", "1", "--warmup", "0", "--end-to-end", "0", "--in-process", "--json", str(json_path)]) == 0
    rows = [row for row in json.loads(json_path.read_text())["rows"] if row["skipped"] is None]
    assert {row["framework"] for row in rows} == {"torch", "paddle", "onnxruntime"}  # both ONNX exports too
    assert all(row["max_abs_diff"] <= 1e-5 for row in rows if row["max_abs_diff"] is not None)


@pytest.mark.parametrize("architecture", BASE_MODELS)
def test_train_parity(tmp_path, architecture):
    """20 steps, as the BERT/SqueezeBERT train-parity tests: over the first few steps Adam moves a weight whose
    gradient is near its eps by up to lr whatever the gradient's rounding, so after 5 steps a correct port's
    fresh RoBERTa head sat at 8x the parameter bound (0.002 x the largest movement); after 20 steps every family
    sits at 0.16-0.25 of it (Intel AVX-512), with every step's loss within 1.2e-7."""
    from paddleport.glue_runners import TrainParityConfig, run_train_parity

    model = make_tiny_hf_checkpoint(tmp_path / "model", architecture)
    report = run_train_parity(TrainParityConfig(model=model, steps=20, data_dir=QQP_KSHOT_DIR, num_threads=1))
    assert report["passed"], report
    assert len(report["losses"]) == 20 and report["max_loss_diff"] <= 1e-4


@pytest.mark.parametrize("architecture", ["DistilBertModel", "ErnieModel", "DebertaV2Model"])
def test_run_glue_feeds_each_model_its_inputs(tmp_path, architecture):
    """DistilBERT gets no token types, nor does the tiny DeBERTa-v3 config (type_vocab_size 0); ERNIE 3.0
    (use_task_id) gets task types, which the tokenizer does not give."""
    from paddleport.glue_runners import GlueRunConfig, run_glue

    model = make_tiny_hf_checkpoint(tmp_path / "model", architecture)
    for framework in ("torch", "paddle"):
        metrics = run_glue(GlueRunConfig(framework=framework, model=model, output_dir=tmp_path / framework,
                                         data_dir=QQP_KSHOT_DIR, max_length=32, batch_size=8, epochs=1, max_steps=2,
                                         num_threads=1, progress=False, verbose=False))
        assert metrics["global_steps"] == 2


def test_albert_shared_groups_are_one_parameter_each_and_reported(tmp_path):
    import torch

    hf_model = make_tiny_hf_model("AlbertForSequenceClassification", num_hidden_layers=4, num_hidden_groups=2,
                                  inner_group_num=2)
    hf_model.save_pretrained(tmp_path / "hf")
    report = convert_checkpoint(tmp_path / "hf", tmp_path / "paddle")
    shared = json.loads((tmp_path / "paddle" / "conversion.json").read_text())["shared"]
    group_weights = [name for name in report.shared if "albert_layer_groups" in name]
    assert len(group_weights) == 2 * 2 * 16 and set(shared.values()) == {2}  # 2 groups x 2 layers x 16 tensors
    assert len(report.tensors) == len(hf_model.state_dict())  # one tensor per shared weight, each consumed once
    paddle_model = models.AlbertForSequenceClassification.from_pretrained(tmp_path / "paddle")
    batch = qqp_batch(pairs=3)
    with torch.no_grad():
        expected = hf_model(**{k: torch.from_numpy(v) for k, v in batch.items()}, output_hidden_states=True)
    import paddle

    actual = paddle_model(**{k: paddle.to_tensor(v) for k, v in batch.items()}, output_hidden_states=True)
    assert len(expected.hidden_states) == len(actual.hidden_states) == 1 + 4 * 2
    kept = batch["attention_mask"].astype(bool)
    for want, got in zip(expected.hidden_states, actual.hidden_states):
        assert np.abs(want.numpy()[kept] - got.numpy()[kept]).max() <= 1e-5
    assert np.abs(expected.logits.numpy() - actual.logits.numpy()).max() <= 1e-5


def test_distilbert_sinusoidal_positions_initialise_as_transformers(tmp_path):
    import torch

    hf_model = make_tiny_hf_model("DistilBertModel", sinusoidal_pos_embds=True)
    config = models.DistilBertConfig.from_dict(hf_model.config.to_dict())
    fresh = models.DistilBertModel.from_config(config)
    torch.manual_seed(0)
    import transformers

    reference = transformers.DistilBertModel(transformers.DistilBertConfig(**hf_model.config.to_dict()))
    np.testing.assert_allclose(fresh.embeddings.position_embeddings.weight.numpy(),
                               reference.embeddings.position_embeddings.weight.detach().numpy(), atol=1e-6)


def test_scibert_vocabulary_converts_and_runs(tmp_path):
    import paddle
    import torch

    hf_model = make_tiny_hf_model("BertForSequenceClassification", vocab_size=31090)
    hf_model.save_pretrained(tmp_path / "hf")
    convert_checkpoint(tmp_path / "hf", tmp_path / "paddle")
    paddle_model = models.AutoModelForSequenceClassification.from_pretrained(tmp_path / "paddle")
    assert paddle_model.bert.embeddings.word_embeddings.weight.shape == [31090, 32]
    ids = np.array([[2, 31089, 31000, 5, 3]], dtype=np.int64)  # ids past BERT's 30,522
    with torch.no_grad():
        expected = hf_model(input_ids=torch.from_numpy(ids)).logits.numpy()
    assert np.abs(expected - paddle_model(input_ids=paddle.to_tensor(ids)).logits.numpy()).max() <= 1e-5


# DeBERTa-v2/v3 options the tiny registry config (tests/fixtures.py) leaves out; each against transformers.
DEBERTA_VARIANTS = {
    "tiny-registry-config": ("DebertaV2Model", {}),
    "v3-shared-keys": ("DebertaV2Model", dict(share_att_key=True, embedding_size=32, conv_kernel_size=0,
                                             position_buckets=256, max_relative_positions=-1)),
    "v2-token-types-absolute-positions-c2p": ("DebertaV2Model", dict(
        type_vocab_size=2, position_biased_input=True, position_buckets=-1, max_relative_positions=16,
        pos_att_type=["c2p"], norm_rel_ebd="none")),
    "p2c-only-grouped-conv": ("DebertaV2ForSequenceClassification", dict(
        pos_att_type="p2c", conv_kernel_size=5, conv_groups=2, conv_act="gelu", cls_dropout=0.2,
        pooler_hidden_act="tanh")),
    "no-relative-attention": ("DebertaV2ForTokenClassification", dict(relative_attention=False,
                                                                      position_biased_input=True)),
    "masked-lm-not-legacy": ("DebertaV2ForMaskedLM", dict(legacy=False, embedding_size=32)),
    "masked-lm-untied": ("DebertaV2ForMaskedLM", dict(tie_word_embeddings=False)),
}


@pytest.mark.parametrize("variant", list(DEBERTA_VARIANTS))
def test_deberta_options_match_transformers_and_round_trip(tmp_path, variant):
    """With autograd and without (the inference path), each option within 1e-5 of transformers; HF -> Paddle -> HF
    bit for bit."""
    import paddle
    from safetensors.numpy import load_file

    from tests.fixtures import assert_within, forward_diffs

    architecture, overrides = DEBERTA_VARIANTS[variant]
    hf_model = make_tiny_hf_model(architecture, seed=2, **overrides)
    hf_model.save_pretrained(tmp_path / "hf")
    report = convert_checkpoint(tmp_path / "hf", tmp_path / "paddle", progress=False)
    assert not report.dropped and not report.newly_initialised
    paddle_model = getattr(models, architecture).from_pretrained(tmp_path / "paddle")
    batch = {name: value for name, value in qqp_batch(pairs=3).items() if name in paddle_model.input_names}
    assert ("token_type_ids" in batch) == (hf_model.config.type_vocab_size > 0)
    assert_within(forward_diffs(hf_model, paddle_model, batch), 1e-5)
    with paddle.no_grad():  # inference: the attention on paddleport's fused CPU kernel (tests/test_cpu_kernels.py)
        assert_within(forward_diffs(hf_model, paddle_model, batch), 1e-5)
    convert_checkpoint(tmp_path / "paddle", tmp_path / "back", to="hf", progress=False)
    before, after = load_file(tmp_path / "hf" / "model.safetensors"), load_file(tmp_path / "back" / "model.safetensors")
    assert before.keys() == after.keys() and all(np.array_equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("buckets, max_position", [(256, 512), (8, 32), (6, 17)])
def test_deberta_relative_position_buckets_equal_transformers(buckets, max_position):
    """Every bucket up to 1,024 tokens (deberta-v3-base: 256 buckets over 512 positions): float32 log and ceil in
    transformers' order, so no distance lands in a neighbouring bucket."""
    import torch
    from transformers.models.deberta_v2 import modeling_deberta_v2 as reference

    from paddleport.models.modeling_deberta_v2 import build_relative_position

    length = 1024
    states = torch.zeros(1, length, 1)
    want = reference.build_relative_position(states, states, bucket_size=buckets, max_position=max_position)
    np.testing.assert_array_equal(build_relative_position(length, length, buckets, max_position).numpy(),
                                  want.numpy())


def test_deberta_pretraining_checkpoint_heads_are_reported_as_dropped(tmp_path):
    """microsoft/deberta-v3-base holds the replaced-token-detection head (mask_predictions) and an lm_predictions
    head beside the encoder; transformers ignores them, the converter names them."""
    from safetensors.numpy import load_file, save_file

    hf_dir = make_tiny_hf_checkpoint(tmp_path / "hf", "DebertaV2Model")
    weights = load_file(hf_dir / "model.safetensors")
    rng = np.random.default_rng(0)
    hidden, vocab = 32, 30522
    extras = {"mask_predictions.dense.weight": (hidden, hidden), "mask_predictions.dense.bias": (hidden,),
              "mask_predictions.LayerNorm.weight": (hidden,), "mask_predictions.LayerNorm.bias": (hidden,),
              "mask_predictions.classifier.weight": (1, hidden), "mask_predictions.classifier.bias": (1,),
              "lm_predictions.lm_head.dense.weight": (hidden, hidden), "lm_predictions.lm_head.dense.bias": (hidden,),
              "lm_predictions.lm_head.LayerNorm.weight": (hidden,), "lm_predictions.lm_head.LayerNorm.bias": (hidden,),
              "lm_predictions.lm_head.bias": (vocab,)}
    weights = {f"deberta.{name}": value for name, value in weights.items()}
    weights.update({name: rng.standard_normal(shape).astype(np.float32) for name, shape in extras.items()})
    save_file(weights, str(hf_dir / "model.safetensors"), metadata={"format": "pt"})
    report = convert_checkpoint(hf_dir, tmp_path / "paddle", arch="DebertaV2ForSequenceClassification",
                                progress=False)
    assert report.dropped == sorted(extras)
    assert report.newly_initialised == ["classifier.bias", "classifier.weight", "pooler.dense.bias",
                                        "pooler.dense.weight"]


# bert-base-uncased and squeezebert-uncased run in make test (tests/test_models_parity.py)
FULL_SIZE = [name for name in presets.PUBLISHED if name not in ("bert-base-uncased", "squeezebert-uncased")]


@pytest.mark.full
@pytest.mark.parametrize("name", FULL_SIZE)
def test_full_size_published_configs_match_transformers(tmp_path, name):
    """Seeded weights in the published config: logits and every hidden state within 1e-5 at kept positions."""
    import paddle
    import torch

    base_class, config = presets.PUBLISHED[name]
    architecture = architecture_of_class(base_class).class_name("sequence_classification")
    hf_model = make_tiny_hf_model(architecture, seed=1, **config)
    hf_model.save_pretrained(tmp_path / "hf")
    convert_checkpoint(tmp_path / "hf", tmp_path / "paddle", progress=False)
    paddle_model = getattr(models, architecture).from_pretrained(tmp_path / "paddle")
    batch = model_batch(hf_model.config, qqp_batch(pairs=3, max_length=128))
    batch["input_ids"] = batch["input_ids"] % hf_model.config.vocab_size  # albert-base-v2 has 30,000 tokens
    if getattr(hf_model.config, "type_vocab_size", 2) == 1:
        batch["token_type_ids"] = np.zeros_like(batch["token_type_ids"])  # RoBERTa's tokenizer gives one segment
    with torch.no_grad():
        expected = hf_model(**{k: torch.from_numpy(v) for k, v in batch.items()}, output_hidden_states=True)
    actual = paddle_model(**{k: paddle.to_tensor(v) for k, v in batch.items()}, output_hidden_states=True)
    kept = batch["attention_mask"].astype(bool)
    diffs = {"logits": float(np.abs(expected.logits.numpy() - actual.logits.numpy()).max())}
    for index, (want, got) in enumerate(zip(expected.hidden_states, actual.hidden_states)):
        diffs[f"hidden_states[{index}]"] = float(np.abs(want.numpy()[kept] - got.numpy()[kept]).max())
    assert len(expected.hidden_states) == len(actual.hidden_states)
    worst = max(diffs, key=diffs.get)
    assert diffs[worst] <= 1e-5, f"{name} {worst}: {diffs[worst]:.3g}"


def test_ernie_task_types_config_and_weights_must_agree(tmp_path):
    """use_task_id true over weights without task-type embeddings (or a use_task_id that is no boolean): one error
    naming the file and the problem, nothing written."""
    from paddleport.errors import PaddleportError

    hf_dir = make_tiny_hf_checkpoint(tmp_path / "hf", "ErnieModel", use_task_id=False)
    config = json.loads((hf_dir / "config.json").read_text())
    for value, problem in ((True, "embeddings.task_type_embeddings.weight"),
                           ("yes", "use_task_id must be true or false")):
        (hf_dir / "config.json").write_text(json.dumps({**config, "use_task_id": value}))
        with pytest.raises(PaddleportError, match=problem):
            convert_checkpoint(hf_dir, tmp_path / "paddle", progress=False)
        assert not (tmp_path / "paddle").exists()
