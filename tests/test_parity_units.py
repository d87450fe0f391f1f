"""Framework-free parts of the parity tools: difference statistics, inputs, labels."""

from __future__ import annotations

import numpy as np
import pytest

from paddleport.errors import PaddleportError
from paddleport.parity.inputs import TextExamples, encode_examples, read_examples
from paddleport.parity.report import REL_FLOOR, TensorDiff
from tests.fixtures import MINILM_DIR


def test_tensor_diff_statistics_over_two_batches():
    rng = np.random.default_rng(0)
    pairs = [(rng.standard_normal((3, 4)), rng.standard_normal((3, 4))) for _ in range(2)]
    diff = TensorDiff("x")
    for ours, ref in pairs:
        diff.update(ours, ref)
    delta = np.concatenate([np.abs(o - r).ravel() for o, r in pairs])
    refs = np.concatenate([np.abs(r).ravel() for _, r in pairs])
    assert diff.max_abs == pytest.approx(delta.max())
    assert diff.mean_abs == pytest.approx(delta.mean())
    assert diff.max_rel == pytest.approx((delta / np.maximum(refs, REL_FLOOR)).max())
    assert not diff.check_atol(delta.max() / 2) and diff.check_atol(delta.max())


def test_gradient_criterion_is_atol_or_scaled_by_magnitude():
    big = TensorDiff("g")
    big.update(np.array([1000.0, 0.0]), np.array([1000.0 + 5e-3, 0.0]))
    assert big.check_atol_or_scaled(1e-5, 1e-5)  # 5e-3 <= 1e-5 * 1000
    small = TensorDiff("h")
    small.update(np.array([1.0]), np.array([1.0 + 5e-3]))
    assert not small.check_atol_or_scaled(1e-5, 1e-5)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("side", ["ours", "reference"])
def test_non_finite_values_are_failures_with_count_and_first_position(bad, side):
    from paddleport.parity.metrics import difference, largest

    clean = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    broken = clean.copy()
    broken[1, 0, 2] = broken[1, 2, 3] = bad
    ours, reference = (broken, clean) if side == "ours" else (clean, broken)
    diff = difference(ours, reference)
    assert diff.non_finite == 2 and diff.first_non_finite == (1, 0, 2)
    assert diff.max_abs == np.inf and not diff.within(1e30) and max(0.0, diff.max_abs) == np.inf
    assert diff.as_json()["max_abs"] is None and diff.as_json()["first_non_finite"] == [1, 0, 2]
    kept = np.array([[True, True, True], [False, True, True]])  # the first bad position is not compared
    assert difference(ours, reference, kept).first_non_finite == (1, 2, 3)
    assert difference(ours, reference, kept & np.array([True, True, False])).within(0.0)
    name, worst = largest({"fine": difference(clean + 1, clean), "bad": diff})
    assert name == "bad" and worst is diff
    tensor = TensorDiff("t")
    tensor.update(clean, clean, batch=0)
    tensor.update(ours, reference, batch=1)
    assert not tensor.check_atol(1.0) and not tensor.check_atol_or_scaled(1.0, 1.0)
    assert tensor.first_non_finite == {"batch": 1, "index": [1, 0, 2]} and tensor.non_finite == 2
    assert tensor.mean_abs == 0.0 and tensor.numel == 48  # the finite positions' mean; all positions counted


def test_both_sides_nan_is_still_a_failure():
    from paddleport.parity.metrics import difference

    assert not difference(np.array([np.nan]), np.array([np.nan])).within(1.0)


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(MINILM_DIR))


def test_default_inputs_are_real_qqp_pairs_with_edge_cases(tokenizer):
    examples = read_examples(limit=10)
    assert len(examples) == 10 and examples.second is not None and set(examples.labels) <= {0, 1}
    encoded = encode_examples(tokenizer, examples, batch_size=4, max_length=40)
    first = encoded.batches[0]
    lengths = first["attention_mask"].sum(axis=1)
    assert lengths[:3].tolist() == [1, 2, 40]  # [CLS], [CLS][SEP], a max-length row
    assert first["input_ids"].shape == (4, 40) and first["input_ids"][0, 0] == tokenizer.cls_token_id
    assert encoded.num_examples == 13 and sum(len(b["labels"]) for b in encoded.batches) == 13
    assert encoded.batches[-1]["labels"].tolist() == examples.labels[-1:]
    assert (first["token_type_ids"][3] == 1).any()  # sentence pairs carry segment B


def test_tsv_and_text_files(tmp_path):
    tsv = tmp_path / "pairs.tsv"
    tsv.write_text("id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n0\t\t\tWhy \"so\"?\tWhy not?\t1\n")
    examples = read_examples(tsv)
    assert examples.first == ['Why "so"?'] and examples.labels == [1]
    text = tmp_path / "lines.txt"
    text.write_text("one\n\ntwo\n")
    assert read_examples(text).first == ["one", "two"] and read_examples(text).second is None
    with pytest.raises(PaddleportError, match="not found"):
        read_examples(tmp_path / "missing.txt")


def test_unlabelled_text_gets_seeded_labels(tokenizer):
    encoded = encode_examples(tokenizer, TextExamples(["a b c"] * 5), batch_size=8, max_length=16, seed=3)
    again = encode_examples(tokenizer, TextExamples(["a b c"] * 5), batch_size=8, max_length=16, seed=3)
    assert encoded.batches[0]["labels"].tolist() == again.batches[0]["labels"].tolist()
