"""PaddleNLP interop, for real (``make test-paddlenlp``; marker ``paddlenlp``, left out of ``make test``).

PaddleNLP 2.8.1 cannot live beside transformers 5, so it runs in its own environment (``.venv-paddlenlp``: paddlenlp
2.8.1, paddlepaddle 3.3.1, numpy 1.26, huggingface_hub 0.25.2), driven through ``tests/paddlenlp_interop/
paddlenlp_side.py``: the two sides exchange only files. Checked, on tiny seeded models of every architecture:

- paddleport -> PaddleNLP: a transformers checkpoint converted with ``paddleport convert --to paddlenlp`` loads
  into PaddleNLP's own class (``BertForSequenceClassification.from_pretrained(dir)``...) with every tensor used,
  and gives transformers' outputs (max |Δ| <= 1e-5 at the positions the attention mask keeps);
- PaddleNLP -> transformers: a checkpoint PaddleNLP's ``save_pretrained`` wrote converts with ``--to hf``, loads
  into transformers and gives PaddleNLP's outputs (<= 1e-5);
- ``paddleport convert`` itself runs inside the PaddleNLP environment (no transformers there) and writes the same
  bytes as in the main one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from paddleport.cli import main
from paddleport.core.tensor_io import open_checkpoint
from paddleport.parity.metrics import difference
from paddleport.registry import architecture_of_class, input_names_of
from tests.fixtures import make_tiny_hf_checkpoint

pytestmark = pytest.mark.paddlenlp

ROOT = Path(__file__).resolve().parent.parent
PADDLENLP_PYTHON = Path(os.environ.get("PADDLEPORT_PADDLENLP_PYTHON", ROOT / ".venv-paddlenlp" / "bin" / "python"))
SIDE = ROOT / "tests" / "paddlenlp_interop" / "paddlenlp_side.py"
GOLDEN = ROOT / "tests" / "data" / "paddlenlp_state_dicts.json"
ATOL = 1e-5
TOKEN, SEQUENCE = "token", "sequence"

# transformers class -> its outputs, in the order PaddleNLP's class returns them, and where each is compared.
OUTPUTS = {
    "BertModel": (("last_hidden_state", TOKEN), ("pooler_output", SEQUENCE)),
    "BertForSequenceClassification": (("logits", SEQUENCE),),
    "BertForTokenClassification": (("logits", TOKEN),),
    "BertForQuestionAnswering": (("start_logits", TOKEN), ("end_logits", TOKEN)),
    "BertForMaskedLM": (("logits", TOKEN),),
    "RobertaModel": (("last_hidden_state", TOKEN), ("pooler_output", SEQUENCE)),
    "RobertaForSequenceClassification": (("logits", SEQUENCE),),
    "RobertaForMaskedLM": (("logits", TOKEN),),
    "ElectraModel": (("last_hidden_state", TOKEN),),
    "ElectraForSequenceClassification": (("logits", SEQUENCE),),
    "ElectraForPreTraining": (("logits", TOKEN),),
    "AlbertModel": (("last_hidden_state", TOKEN), ("pooler_output", SEQUENCE)),
    "AlbertForSequenceClassification": (("logits", SEQUENCE),),
    "DistilBertModel": (("last_hidden_state", TOKEN),),
    "DistilBertForSequenceClassification": (("logits", SEQUENCE),),
    "DistilBertForQuestionAnswering": (("start_logits", TOKEN), ("end_logits", TOKEN)),
    "ErnieModel": (("last_hidden_state", TOKEN), ("pooler_output", SEQUENCE)),
    "ErnieForSequenceClassification": (("logits", SEQUENCE),),
    "ErnieForTokenClassification": (("logits", TOKEN),),
    "ErnieForQuestionAnswering": (("start_logits", TOKEN), ("end_logits", TOKEN)),
    "ErnieForMaskedLM": (("logits", TOKEN),),
    "ErnieForPreTraining": (("prediction_logits", TOKEN), ("seq_relationship_logits", SEQUENCE)),
    "DebertaV2Model": (("last_hidden_state", TOKEN),),
    "DebertaV2ForSequenceClassification": (("logits", SEQUENCE),),
    "DebertaV2ForTokenClassification": (("logits", TOKEN),),
    "DebertaV2ForQuestionAnswering": (("start_logits", TOKEN), ("end_logits", TOKEN)),
}

# Tiny configs under PaddleNLP's own keys, for the models PaddleNLP builds and saves itself.
PADDLENLP_TINY = dict(vocab_size=1000, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                      intermediate_size=37, max_position_embeddings=128, type_vocab_size=2)
PADDLENLP_TINY_BY_TYPE = {
    "bert": PADDLENLP_TINY,
    "roberta": dict(PADDLENLP_TINY, layer_norm_eps=1e-5),
    "electra": dict(PADDLENLP_TINY, embedding_size=24),
    "albert": dict(PADDLENLP_TINY, embedding_size=24),
    "distilbert": {k: v for k, v in PADDLENLP_TINY.items() if k != "type_vocab_size"},
    # ERNIE 3.0's form: task-type embeddings on, 4 segments
    "ernie": dict(PADDLENLP_TINY, type_vocab_size=4, use_task_id=True, task_type_vocab_size=3, layer_norm_eps=1e-5),
    # DeBERTa-v3's form: relative attention only, log buckets, shared keys, normalised relative embeddings, no
    # token types (the ConvLayer of v2's first layer too)
    "deberta-v2": dict(PADDLENLP_TINY, type_vocab_size=0, relative_attention=True, position_buckets=8,
                       max_relative_positions=32, pos_att_type="p2c|c2p", norm_rel_ebd="layer_norm",
                       share_att_key=True, position_biased_input=False, conv_kernel_size=3, layer_norm_eps=1e-7),
}


def labels(class_name: str) -> dict:
    """Three labels where the head has a label count (span heads have two outputs in both libraries)."""
    return {"num_labels": 3} if class_name.endswith(("SequenceClassification", "TokenClassification")) else {}


def hf_overrides(class_name: str) -> dict:
    """PaddleNLP's ERNIE computes its LayerNorms with epsilon 1e-12 and DeBERTa's ConvLayer with GELU whatever its
    config says (the tiny transformers ERNIE has ERNIE 3.0's 1e-5, the DeBERTa tanh, which --to paddlenlp refuses);
    the models PaddleNLP saves keep 1e-5 and no conv_act in their config, which --to hf must replace."""
    fixed = {"Ernie": {"layer_norm_eps": 1e-12}, "DebertaV2": {"conv_act": "gelu"}}  # PaddleNLP computes with these
    return dict(labels(class_name), **next((v for k, v in fixed.items() if class_name.startswith(k)), {}))


def seeded_inputs(seed: int = 0, lengths=(16, 11, 5, 1)) -> dict[str, np.ndarray]:
    """Random token ids (never the pad id 0) where the mask keeps a token, pad ids after; two segments."""
    rng = np.random.default_rng(seed)
    width = max(lengths)
    mask = (np.arange(width)[None, :] < np.array(lengths)[:, None]).astype("int64")
    ids = rng.integers(5, 1000, size=(len(lengths), width)) * mask
    segments = ((np.arange(width)[None, :] >= np.array(lengths)[:, None] // 2) * mask).astype("int64")
    task_types = (np.arange(width)[None, :] % 3 * mask).astype("int64")  # ERNIE's with use_task_id
    return {"input_ids": ids.astype("int64"), "attention_mask": mask, "token_type_ids": segments,
            "task_type_ids": np.broadcast_to(task_types, ids.shape).copy()}


def transformers_outputs(directory: Path, class_name: str, inputs: dict) -> dict[str, np.ndarray]:
    import torch
    import transformers

    model = getattr(transformers, class_name).from_pretrained(str(directory)).eval()
    names = input_names_of(json.loads((Path(directory) / "config.json").read_text()))
    if class_name != "ErnieModel":  # PaddleNLP's ERNIE heads take no task types: both libraries then use type 0
        names = tuple(name for name in names if name != "task_type_ids")
    with torch.no_grad():
        output = model(**{name: torch.from_numpy(inputs[name]) for name in names})
    return {name: output[name].numpy() for name, _ in OUTPUTS[class_name]}


def compare(class_name: str, ours: dict[str, np.ndarray], reference: list[np.ndarray], mask: np.ndarray) -> float:
    """The largest max |Δ| over the class's outputs (token outputs at kept positions); each must be <= ATOL."""
    assert len(reference) >= len(OUTPUTS[class_name]), (class_name, len(reference))
    worst = 0.0
    for (name, level), theirs in zip(OUTPUTS[class_name], reference):
        keep = mask.astype(bool) if level == TOKEN else None
        assert np.abs(theirs).max() > 1e-3, (class_name, name)  # a real output, not a vanishing one
        diff = difference(ours[name], theirs, keep=keep)
        assert diff.within(ATOL), (class_name, name, diff.max_abs, diff.non_finite)
        worst = max(worst, diff.max_abs)
    return worst


def run_paddlenlp(jobs: list[dict], work: Path) -> None:
    if not PADDLENLP_PYTHON.is_file():
        pytest.fail(f"{PADDLENLP_PYTHON} is missing: run `make test-paddlenlp`, which builds it")
    jobs_path = work / "jobs.json"
    jobs_path.write_text(json.dumps(jobs))
    done = subprocess.run([str(PADDLENLP_PYTHON), str(SIDE), str(jobs_path)], capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]


@pytest.fixture(scope="module")
def interop(tmp_path_factory):
    """Every case of both directions, with one PaddleNLP process (its import takes seconds)."""
    work = tmp_path_factory.mktemp("paddlenlp")
    inputs = seeded_inputs()
    np.savez(work / "inputs.npz", **inputs)
    jobs = []
    for class_name in OUTPUTS:
        case = work / class_name
        hf = make_tiny_hf_checkpoint(case / "hf", class_name, seed=1, **hf_overrides(class_name))
        assert main(["convert", str(hf), str(case / "paddlenlp"), "--to", "paddlenlp"]) == 0
        paddlenlp_class = json.loads((case / "paddlenlp" / "config.json").read_text())["architectures"][0]
        jobs.append(dict(op="load", directory=str(case / "paddlenlp"), class_name=paddlenlp_class,
                         inputs=str(work / "inputs.npz"), out=str(case / "loaded.npz")))
        model_type = architecture_of_class(class_name).model_type
        jobs.append(dict(op="save", class_name=paddlenlp_class, seed=2,
                         config=dict(PADDLENLP_TINY_BY_TYPE[model_type], **labels(class_name)),
                         directory=str(case / "saved"), inputs=str(work / "inputs.npz"), out=str(case / "saved.npz")))
    started = time.perf_counter()
    run_paddlenlp(jobs, work)
    figures = {"paddlenlp_seconds": time.perf_counter() - started}
    yield work, inputs, figures
    print("\npaddlenlp interop, max |Δ| (kept positions):")
    for key, value in sorted(figures.items()):
        print(f"  {key}: {value:.3g}")


@pytest.mark.parametrize("class_name", list(OUTPUTS))
def test_paddlenlp_loads_what_paddleport_wrote(interop, class_name):
    work, inputs, figures = interop
    case = work / class_name
    loaded = np.load(case / "loaded.npz")
    with open_checkpoint(case / "paddlenlp") as written:
        file_names = set(written.names())
    model_names = set(loaded["loaded"].tolist())
    assert file_names <= model_names, sorted(file_names - model_names)  # nothing written that PaddleNLP ignores
    # What PaddleNLP's class holds beyond the transformers class: a pooler BERT's token and span heads never read,
    # ALBERT's position_ids buffer (initialised by PaddleNLP itself).
    unfilled = {name for name in model_names - file_names
                if ".pooler." not in name and not name.endswith("embeddings.position_ids")}
    assert not unfilled, sorted(unfilled)
    ours = transformers_outputs(case / "hf", class_name, inputs)
    reference = [loaded[f"out_{i}"] for i in range(len(loaded.files) - 1)]
    figures[f"{class_name} paddleport->PaddleNLP"] = compare(class_name, ours, reference, inputs["attention_mask"])


def test_recorded_paddlenlp_names_are_paddlenlp_s(interop):
    """``tests/data/paddlenlp_state_dicts.json``, which ``make test`` checks ``--to paddlenlp`` against without
    PaddleNLP, is what PaddleNLP 2.8.1 builds for each class (PADDLEPORT_UPDATE_GOLDEN=1 rewrites it)."""
    work, _, _ = interop
    built = {name: json.loads((work / name / "loaded-state.json").read_text()) for name in OUTPUTS}
    if os.environ.get("PADDLEPORT_UPDATE_GOLDEN"):
        lines = [f" {json.dumps(name)}: {json.dumps(built[name], sort_keys=True)}" for name in sorted(built)]
        GOLDEN.write_text("{\n" + ",\n".join(lines) + "\n}\n")
    assert json.loads(GOLDEN.read_text()) == built


@pytest.mark.parametrize("class_name", list(OUTPUTS))
def test_transformers_loads_what_paddlenlp_saved(interop, class_name):
    work, inputs, figures = interop
    case = work / class_name
    saved = np.load(case / "saved.npz")
    assert main(["convert", str(case / "saved"), str(case / "hf-from-saved"), "--to", "hf"]) == 0
    report = json.loads((case / "hf-from-saved" / "conversion.json").read_text())
    accounted = {record["source"] for record in report["tensors"]}
    accounted |= set(report["dropped"]) | set(report["skipped_buffers"]) | set(report["tied"])
    assert accounted == set(saved["saved"].tolist())
    ours = transformers_outputs(case / "hf-from-saved", class_name, inputs)
    reference = [saved[f"out_{i}"] for i in range(len(saved.files) - 1)]
    figures[f"{class_name} PaddleNLP->transformers"] = compare(class_name, ours, reference, inputs["attention_mask"])


def test_paddleport_converts_inside_the_paddlenlp_environment(interop, tmp_path):
    """A PaddleNLP user converts in their own environment (numpy 1.26, no transformers): the same bytes."""
    work, _, _ = interop
    source = work / "BertForSequenceClassification" / "saved"
    done = subprocess.run([str(PADDLENLP_PYTHON), "-m", "paddleport", "convert", str(source), str(tmp_path / "hf"),
                           "--to", "hf"], capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert done.returncode == 0, done.stderr[-3000:]
    assert main(["convert", str(source), str(tmp_path / "main"), "--to", "hf"]) == 0
    assert (tmp_path / "hf" / "model.safetensors").read_bytes() == (tmp_path / "main" / "model.safetensors").read_bytes()
