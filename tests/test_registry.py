"""One architecture, one place: every list of architectures, classes and model inputs derives from the registry."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import paddleport
from paddleport.registry import (ARCHITECTURES, SUPPORTED_CLASSES, TASKS, WITH_TASK_TYPES, WITH_TOKEN_TYPES,
                                 WITHOUT_TOKEN_TYPES, input_names_of)

PACKAGE = Path(paddleport.__file__).parent
MODEL_TYPES = set(ARCHITECTURES)
CLASS_NAMES = set(SUPPORTED_CLASSES)
INPUT_NAMES = set(WITH_TOKEN_TYPES) | set(WITHOUT_TOKEN_TYPES) | set(WITH_TASK_TYPES)
# Named pairs that are a comparison, not a list: bench's SqueezeBERT-over-BERT speedup summary.
COMPARISONS = {("parity/bench.py", frozenset({"bert", "squeezebert"}))}


def _own_files(path: Path) -> bool:
    """An architecture's own files (its model file and table) may name its classes; the registry lists them."""
    relative = path.relative_to(PACKAGE).as_posix()
    return (relative == "registry.py" or relative.startswith("models/modeling_")
            or (relative.startswith("convert/") and path.stem in {t.replace("-", "_") for t in MODEL_TYPES}))


def _collections(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            yield node, node.elts
        elif isinstance(node, ast.Dict):
            yield node, [key for key in node.keys if key is not None]


def _strings(elements) -> set[str]:
    return {e.value for e in elements if isinstance(e, ast.Constant) and isinstance(e.value, str)}


def _second_lists() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if _own_files(path):
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        for node, elements in _collections(tree):
            strings = _strings(elements)
            where = f"{path.relative_to(PACKAGE)}:{node.lineno}"
            named = frozenset(strings & (CLASS_NAMES | MODEL_TYPES))
            if (path.relative_to(PACKAGE).as_posix(), named) in COMPARISONS:
                continue
            if len(strings & CLASS_NAMES) >= 2 or len(strings & MODEL_TYPES) >= 2:
                found.append(f"{where} lists architectures {sorted(strings & (CLASS_NAMES | MODEL_TYPES))}")
            if {"input_ids", "attention_mask"} <= strings or {"input_ids", "token_type_ids"} <= strings:
                if not isinstance(node, ast.Dict):  # a dict literal builds a batch; a sequence names inputs
                    found.append(f"{where} lists model inputs {sorted(strings & INPUT_NAMES)}")
    return found


def test_no_second_list_of_architectures_or_inputs():
    assert _second_lists() == []


def test_no_model_type_comparisons_outside_the_registry():
    """A branch on a model type (``== "bert"``) is an architecture list in disguise."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if _own_files(path):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                for operand in [node.left, *node.comparators]:
                    if isinstance(operand, ast.Constant) and operand.value in MODEL_TYPES:
                        offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert offenders == []


def test_every_registered_class_exists_in_paddleport_and_transformers():
    import transformers

    import paddleport.models as models

    for entry in ARCHITECTURES.values():
        module = importlib.import_module(entry.modeling_module)
        for name in entry.class_names:
            assert getattr(models, name) is getattr(module, name)
            assert hasattr(transformers, name), name
            assert getattr(models, name).config_class is entry.config_class


@pytest.mark.parametrize("task", list(TASKS))
def test_auto_classes_resolve_from_the_registry(task):
    import paddleport.models as models
    from paddleport.models import auto

    auto_class = next(cls for cls in vars(auto).values()
                      if isinstance(cls, type) and getattr(cls, "task", None) == task)
    for entry in ARCHITECTURES.values():
        name = entry.class_name(task)
        if name is not None:
            assert auto_class.model_class_for(entry.config_class()) is getattr(models, name)
    assert set(auto.MODEL_CLASSES) == CLASS_NAMES


def test_help_and_errors_list_every_supported_class(capsys):
    from paddleport.cli import main
    from paddleport.errors import PaddleportError
    from paddleport.registry import architecture_of_class

    with pytest.raises(SystemExit):
        main(["convert", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    with pytest.raises(PaddleportError) as error:
        architecture_of_class("GPT2Model")
    for name in SUPPORTED_CLASSES:
        assert name in help_text
        assert name in error.value.problem
    for command in ("compare", "export", "bench", "run-glue", "train-parity", "demo"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        command_help = " ".join(capsys.readouterr().out.split())
        assert all(model_type in command_help for model_type in MODEL_TYPES), command


def test_model_inputs_come_from_the_registry():
    import paddleport.models as models

    for entry in ARCHITECTURES.values():
        model_class = getattr(models, entry.class_name("base"))
        config = entry.config_class(num_hidden_layers=1, hidden_size=32, num_attention_heads=2, intermediate_size=8,
                                    embedding_size=32)
        assert model_class(config).input_names == entry.inputs_for(config)
    deberta = ARCHITECTURES["deberta-v2"]  # DeBERTa-v3 has no token types; DeBERTa-v2 with type_vocab_size 2 has
    assert input_names_of({"model_type": "deberta-v2", "type_vocab_size": 0}) == WITHOUT_TOKEN_TYPES
    assert input_names_of({"model_type": "deberta-v2", "type_vocab_size": 2}) == WITH_TOKEN_TYPES
    assert deberta.inputs_for(deberta.config_class()) == WITHOUT_TOKEN_TYPES  # transformers' default: 0


@pytest.mark.parametrize("use_task_id", [True, False])
def test_ernie_takes_task_types_only_where_its_config_has_them(use_task_id):
    """ERNIE 2.0/3.0 (use_task_id) take task_type_ids after the token types; ERNIE 1.0 does not. A batch without
    them (a tokenizer gives none) feeds zeros, the task type transformers uses when none is passed."""
    import numpy as np

    from paddleport.registry import model_inputs

    config = {"model_type": "ernie", "use_task_id": use_task_id}
    expected = WITH_TASK_TYPES if use_task_id else WITH_TOKEN_TYPES
    assert input_names_of(config) == expected
    ids = np.arange(6).reshape(2, 3)
    inputs = model_inputs({"input_ids": ids, "attention_mask": ids, "token_type_ids": ids}, expected)
    assert tuple(inputs) == expected
    if use_task_id:
        assert inputs["task_type_ids"].shape == ids.shape and not inputs["task_type_ids"].any()


def test_renaming_rules_work_in_both_directions(tmp_path):
    """A rule whose Paddle name differs from the HF name: HF -> Paddle renames it, Paddle -> HF renames it back."""
    from dataclasses import replace

    from safetensors.numpy import load_file

    from paddleport.convert import converter
    from paddleport.convert.table import Rule
    from tests.fixtures import make_tiny_hf_checkpoint

    src = make_tiny_hf_checkpoint(tmp_path / "hf", "BertModel")
    entry = ARCHITECTURES["bert"]
    renamed = tuple(Rule(r.hf, r.paddle.replace("attention.self.query", "attention.self.q_proj"), r.transform,
                         r.shape, r.when) for r in entry.table.base)
    table = replace(entry.table, base=renamed)
    original = converter.table_for
    converter.table_for = lambda config: table
    try:
        converter.convert_checkpoint(src, tmp_path / "pd", to="paddle")
        converter.convert_checkpoint(tmp_path / "pd", tmp_path / "back", to="hf")
    finally:
        converter.table_for = original
    paddle_names = set(load_file(tmp_path / "pd" / "model.safetensors"))
    assert "encoder.layer.0.attention.self.q_proj.weight" in paddle_names
    assert not any("self.query" in name for name in paddle_names)
    before, after = load_file(src / "model.safetensors"), load_file(tmp_path / "back" / "model.safetensors")
    assert set(before) == set(after)
    for name, value in after.items():
        assert (before[name] == value).all(), name
