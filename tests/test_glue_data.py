"""Framework-free parts of the GLUE runner: tasks, data loading, features, batching, metrics, checkpoints."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from paddleport.data import QQP_KSHOT_DIR
from paddleport.errors import PaddleportError
from paddleport.glue_runners.backends.base import linear_warmup_decay, uses_weight_decay
from paddleport.fsutil import atomic_directory
from paddleport.glue_runners.data import DataSource, load_glue_data
from paddleport.glue_runners.features import collate, epoch_batches, load_tokenizer, tokenize_split
from paddleport.glue_runners.metrics import compute_metrics
from paddleport.glue_runners.tasks import get_task
from tests.fixtures import MINILM_DIR


def write(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_embedded_qqp_sample_reads_with_quotes_intact():
    data = load_glue_data(get_task("qqp"), DataSource())
    assert (len(data.train), len(data.evals[0])) == (8999, 1000)
    assert sorted(np.unique(data.train.labels)) == [0, 1]
    assert any('"' in text for text in data.train.texts_a + data.train.texts_b)


def test_cola_tsv_without_header(tmp_path):
    rows = ["gj04\t1\t\tThe sailors rode the breeze clear of the rocks.", "gj04\t0\t*\tThe more we study verbs."]
    write(tmp_path / "train.tsv", rows)
    write(tmp_path / "dev.tsv", rows)
    write(tmp_path / "test.tsv", ["index\tsentence", "0\tBill whistled past the house."])
    data = load_glue_data(get_task("CoLA"), DataSource(data_dir=tmp_path), with_test=True)
    assert data.train.texts_a[1] == "The more we study verbs."
    assert data.train.labels.tolist() == [1, 0]
    assert data.tests[0].ids == ["0"] and data.tests[0].labels is None


def test_mnli_label_strings_and_both_dev_sets(tmp_path):
    header = "index\tsentence1\tsentence2\tgold_label"
    for name in ("train.tsv", "dev_matched.tsv", "dev_mismatched.tsv"):
        write(tmp_path / name, [header, "0\ta\tb\tneutral", "1\tc\td\tcontradiction"])
    data = load_glue_data(get_task("mnli"), DataSource(data_dir=tmp_path))
    assert [split.name for split in data.evals] == ["dev_matched", "dev_mismatched"]
    assert data.train.labels.tolist() == [1, 2]


def test_stsb_scores_are_regression_targets(tmp_path):
    header = "index\tgenre\tsentence1\tsentence2\tscore"
    for name in ("train.tsv", "dev.tsv"):
        write(tmp_path / name, [header, "0\tx\ta\tb\t4.25", "1\tx\tc\td\t0.5"])
    data = load_glue_data(get_task("sts-b"), DataSource(data_dir=tmp_path))
    assert data.train.labels.dtype == np.float32 and data.train.labels.tolist() == [4.25, 0.5]


def test_csv_and_json_files_through_datasets(tmp_path):
    write(tmp_path / "train.csv", ["sentence1,sentence2,label", "a b,c d,1", "e,f,0"])
    write(tmp_path / "dev.jsonl", [json.dumps({"sentence1": "x", "sentence2": "y", "label": 0})])
    source = DataSource(train_file=tmp_path / "train.csv", validation_file=tmp_path / "dev.jsonl",
                        cache_dir=tmp_path / "cache")
    data = load_glue_data(get_task("mrpc"), source)
    assert data.train.texts_b == ["c d", "f"] and data.train.labels.tolist() == [1, 0]
    assert data.evals[0].labels.tolist() == [0]


def test_label_outside_task_labels_names_file_and_row(tmp_path):
    shutil.copy(QQP_KSHOT_DIR / "dev.tsv", tmp_path / "dev.tsv")
    write(tmp_path / "train.tsv", ["id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate", "1\t\t\ta\tb\t0",
                                    "2\t\t\tc\td\t2"])
    with pytest.raises(PaddleportError, match=r"train\.tsv: row 2: label '2' is outside the 2 labels of qqp"):
        load_glue_data(get_task("qqp"), DataSource(data_dir=tmp_path))


def test_tokenization_is_cached_by_tokenizer_and_data(tmp_path):
    tokenizer = load_tokenizer(MINILM_DIR)
    split = load_glue_data(get_task("qqp"), DataSource(data_dir=QQP_KSHOT_DIR)).train
    first = tokenize_split(split, tokenizer, 32, tmp_path)
    assert len(list(tmp_path.glob("features-*.npz"))) == 1
    second = tokenize_split(split, tokenizer, 32, tmp_path)
    assert all(np.array_equal(a, b) for a, b in zip(first.input_ids, second.input_ids))
    tokenize_split(split, tokenizer, 16, tmp_path)  # another max_length: another cache entry
    assert len(list(tmp_path.glob("features-*.npz"))) == 2
    assert max(first.lengths) <= 32 and first.token_type_ids[0].max() == 1


def test_seeded_batches_cover_everything_and_depend_on_seed_and_epoch():
    lengths = np.random.default_rng(0).integers(5, 60, size=103)
    batches = epoch_batches(lengths, 8, seed=1, epoch=0)
    assert sorted(np.concatenate(batches).tolist()) == list(range(103))
    assert all(np.array_equal(a, b) for a, b in zip(batches, epoch_batches(lengths, 8, seed=1, epoch=0)))
    assert not np.array_equal(batches[0], epoch_batches(lengths, 8, seed=1, epoch=1)[0])
    grouped = epoch_batches(lengths, 8, seed=1, epoch=0, group_by_length=True)
    assert sorted(np.concatenate(grouped).tolist()) == list(range(103))

    def padding(all_batches):
        return sum(len(b) * lengths[b].max() - lengths[b].sum() for b in all_batches)

    assert padding(grouped) < padding(batches)


def test_collate_pads_dynamically():
    tokenizer = load_tokenizer(MINILM_DIR)
    split = load_glue_data(get_task("qqp"), DataSource(data_dir=QQP_KSHOT_DIR)).train
    features = tokenize_split(split, tokenizer, 64)
    batch = collate(features, np.array([0, 1, 2]), tokenizer.pad_token_id)
    assert batch["input_ids"].shape[1] == max(features.lengths[:3])
    assert batch["attention_mask"].sum() == features.lengths[:3].sum()
    assert batch["labels"].tolist() == split.labels[:3].tolist()


def test_metrics_per_task():
    logits = np.array([[2.0, 0.0], [0.0, 1.0], [0.0, 3.0], [1.0, 0.0]])
    labels = np.array([0, 1, 0, 0])
    qqp = compute_metrics(get_task("qqp"), logits, labels)
    assert qqp == pytest.approx({"accuracy": 0.75, "f1": 2 / 3, "acc_and_f1": (0.75 + 2 / 3) / 2})
    assert "matthews_correlation" in compute_metrics(get_task("cola"), logits, labels)
    assert set(compute_metrics(get_task("rte"), logits, labels)) == {"accuracy"}
    stsb = compute_metrics(get_task("stsb"), np.array([[1.0], [2.0], [3.5]]), np.array([1.0, 2.0, 3.0]))
    assert stsb["spearmanr"] == pytest.approx(1.0)


def test_schedule_and_weight_decay_groups():
    multiplier = linear_warmup_decay(warmup_steps=2, total_steps=10)
    assert [multiplier(step) for step in (0, 1, 2, 6, 10)] == [0.0, 0.5, 1.0, 0.5, 0.0]
    assert uses_weight_decay("bert.encoder.layer.0.attention.self.query.weight")
    assert not uses_weight_decay("bert.embeddings.LayerNorm.weight")
    assert not uses_weight_decay("classifier.bias")


def test_atomic_directory_keeps_old_content_on_failure(tmp_path):
    target = tmp_path / "ckpt"
    with atomic_directory(target, replace=True) as temporary:
        (temporary / "a").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_directory(target, replace=True) as temporary:
            (temporary / "a").write_text("new")
            raise RuntimeError("killed")
    assert (target / "a").read_text() == "old"
    assert [path.name for path in tmp_path.iterdir()] == ["ckpt"]


def test_unknown_task():
    with pytest.raises(PaddleportError, match="--task: unknown task 'qqq'"):
        get_task("qqq")
