"""Export a Paddle checkpoint as a static inference program, verified against eager before it is written.

``paddle.jit.to_static`` traces the model with dynamic batch and sequence length (``InputSpec([None, None])``
for each of the architecture's inputs: ``input_ids``, ``attention_mask`` and, where it has them, ``token_type_ids``); ``paddle.jit.save`` writes, under PIR
(Paddle 3), ``model.json`` + ``model.pdiparams`` into a temporary directory next to ``OUT``.  Both
``paddle.jit.load`` and a ``paddle.inference`` predictor must reproduce eager outputs (max |Δ| <= atol) on
inputs of two different shapes before the directory is renamed to ``OUT`` in one step.

``fmt="onnx"``: the verified program is converted by ``paddle2onnx`` into ``model.onnx`` (weights inside), which
ONNX Runtime must reproduce the same way; ``OUT`` then holds ``model.onnx`` and not the Paddle program.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from paddleport.convert.converter import copy_tokenizer_files
from paddleport.errors import PaddleportError
from paddleport.fsutil import atomic_directory, check_output_target
from paddleport.parity.inference import PROGRAM_STEM, Predictor, PredictorOptions, program_files
from paddleport.parity.loading import architecture_of, read_config
from paddleport.parity.metrics import Difference, difference
from paddleport.parity.outputs import compared_positions, output_level
from paddleport.registry import architecture_of_class

EXPORT_ATOL = 1e-5
EXPORT_INFO = "export_info.json"
FORMATS = ("paddle", "onnx")
ONNX_FILE = "model.onnx"
# (batch, sequence) shapes the exported program is checked on: proves both dimensions are dynamic.
CHECK_SHAPES = ((2, 7), (3, 19))


@dataclass
class ExportReport:
    out_dir: str
    architecture: str
    program: str
    params: str | None  # None for ONNX: the weights are inside model.onnx
    outputs: list[str]
    atol: float
    max_abs_diff: dict[str, float] = field(default_factory=dict)
    format: str = "paddle"

    def as_json(self) -> dict:
        return asdict(self)  # written only after verification passed: every difference is finite

    def summary(self) -> str:
        worst = max(self.max_abs_diff.values()) if self.max_abs_diff else 0.0
        files = " + ".join(Path(path).name for path in (self.program, self.params) if path)
        return (f"exported {self.architecture} to {self.out_dir} ({files}); outputs {', '.join(self.outputs)}; "
                f"max |Δ| vs eager {worst:.2e} <= {self.atol:g}")


def export_model(paddle_dir: str | Path, out_dir: str | Path, *, force: bool = False,
                 atol: float = EXPORT_ATOL, fmt: str = "paddle") -> ExportReport:
    """Trace, save into a temporary directory, verify against eager, then move into place atomically."""
    paddle_dir, out_dir = Path(paddle_dir), Path(out_dir)
    if fmt not in FORMATS:
        raise PaddleportError("--format", f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
    config = read_config(paddle_dir)
    architecture = architecture_of(config, paddle_dir)
    check_output_target(out_dir, reads_from=[paddle_dir])
    if os.path.lexists(out_dir) and not force:
        raise PaddleportError(out_dir, "already exists (pass --force to replace it)")
    if architecture_of_class(architecture).task_of(architecture) == "multiple_choice":
        raise PaddleportError(paddle_dir, f"{architecture} takes [batch, choices, seq] inputs: export takes "
                                          "[batch, seq] models (export the base model with --arch)")
    model = load_eager(paddle_dir, architecture)
    with atomic_directory(out_dir, replace=force, reads_from=[paddle_dir]) as staging:
        program_dir = staging / ".program" if fmt == "onnx" else staging
        program_dir.mkdir(exist_ok=True)
        names = save_static(model, program_dir, for_onnx=fmt == "onnx")
        levels = [output_level(name, config, architecture) for name in names]  # per token or per sequence
        diffs = verify_export(model, program_dir, names, levels, vocab_size=model.config.vocab_size, atol=atol)
        if fmt == "onnx":
            diffs.update(_export_onnx(model, program_dir, staging / ONNX_FILE, names, levels, atol))
            shutil.rmtree(program_dir)
            files = (str(out_dir / ONNX_FILE), None)
        else:
            files = tuple(str(out_dir / p.name) for p in program_files(staging))
        shutil.copy(paddle_dir / "config.json", staging / "config.json")
        copy_tokenizer_files(paddle_dir, staging)
        report = ExportReport(str(out_dir), architecture, *files, outputs=names, atol=atol, max_abs_diff=diffs,
                              format=fmt)
        (staging / EXPORT_INFO).write_text(json.dumps(report.as_json(), indent=2) + "\n", encoding="utf-8")
    return report


def _export_onnx(model, program_dir: Path, onnx_path: Path, names: list[str], levels: list[str], atol: float
                 ) -> dict[str, float]:
    """paddle2onnx on the verified program, then ONNX Runtime against eager like the program itself."""
    from paddleport.parity.onnx_runtime import OnnxSession, export_paddle_onnx

    export_paddle_onnx(program_dir, onnx_path)
    session = OnnxSession(onnx_path, device="cpu", threads=1)
    worst = max_kept_difference(model, names, levels, session, model.config.vocab_size)
    _check_within("onnxruntime", worst, atol)
    return {"onnxruntime": worst.max_abs}


def max_kept_difference(model, names: list[str], levels: list[str], run, vocab_size: int) -> Difference:
    """|Δ| of ``run(batch)`` (a list of outputs) against eager over the check batches: per-token outputs at the
    positions the attention mask keeps (padding is never read; see parity.compare), per-sequence outputs whole."""
    worst = Difference()
    token_types = getattr(model.config, "type_vocab_size", 1)
    task_types = getattr(model.config, "task_type_vocab_size", 1)
    for batch in check_batches(vocab_size, model.config.max_input_length, model.input_names, token_types=token_types,
                               task_types=task_types):
        for want, got, level in zip(eager_outputs(model, batch, names), run(batch), levels, strict=True):
            worst = worst.merged(difference(got, want, compared_positions(level, batch["attention_mask"])))
    return worst


def _check_within(path: str, diff: Difference, atol: float) -> None:
    if not diff.within(atol):
        problem = diff.describe_non_finite() or f"differs from eager by {diff.max_abs:.3g} > {atol:g}"
        raise PaddleportError(None, f"exported program ({path}) {problem}; nothing was written")


def load_eager(paddle_dir: Path, architecture: str):
    import paddleport.models as models

    model = getattr(models, architecture).from_pretrained(paddle_dir)
    model.eval()
    return model


def save_static(model, directory: Path, for_onnx: bool = False) -> list[str]:
    """to_static + jit.save of the inference wrapper; returns the output names in program order. ``for_onnx``:
    tanh-GELU traced as its formula (``models.modeling_utils.tanh_gelu_as_formula``), which paddle2onnx lowers
    right."""
    import contextlib

    import paddle

    from paddleport.models.modeling_utils import tanh_gelu_as_formula
    from paddleport.parity._inference_layer import InferenceLayer, input_spec

    layer = InferenceLayer(model)
    layer.eval()
    try:
        tanh_gelu = tanh_gelu_as_formula() if for_onnx else contextlib.nullcontext()
        with paddle.no_grad(), tanh_gelu:  # an inference program: no gradient bookkeeping is traced
            static = paddle.jit.to_static(layer, input_spec=input_spec(layer.input_names), full_graph=True)
            paddle.jit.save(static, str(directory / PROGRAM_STEM))
    except Exception as error:  # dy2static raises many types; the model code, not the user, is at fault
        raise RuntimeError(f"paddle.jit.to_static/save failed for {type(model).__name__}: {error}") from error
    return layer.names


def check_batches(vocab_size: int, max_positions: int, input_names: tuple[str, ...], seed: int = 0,
                  token_types: int = 2, task_types: int = 1) -> list[dict[str, np.ndarray]]:
    """Random token batches of two shapes, the second with right padding, for checking an export; no longer
    than the model's inputs may be (``max_positions``), and only the inputs the model takes (``input_names``),
    token types within ``token_types``, task types (ERNIE) running through all ``task_types`` along each row."""
    rng = np.random.default_rng(seed)
    batches = []
    for batch_size, length in CHECK_SHAPES:
        length = min(length, max_positions)
        mask = np.ones((batch_size, length), dtype=np.int64)
        mask[1:, length // 2:] = 0
        batch = {
            "input_ids": rng.integers(1, vocab_size, size=(batch_size, length), dtype=np.int64) * mask,
            "attention_mask": mask,
            "token_type_ids": ((np.arange(length)[None, :] >= length // 3) & (token_types > 1)).astype(np.int64)
                              .repeat(batch_size, 0),
            "task_type_ids": (np.arange(length)[None, :] * task_types // length).repeat(batch_size, 0),
        }
        batches.append({name: batch[name] for name in input_names})
    return batches


def eager_outputs(model, batch: dict[str, np.ndarray], names: list[str]) -> list[np.ndarray]:
    import paddle

    with paddle.no_grad():
        output = model(**{key: paddle.to_tensor(value) for key, value in batch.items()})
    return [getattr(output, name).astype("float32").numpy() for name in names]


def verify_export(model, directory: Path, names: list[str], levels: list[str], *, vocab_size: int,
                  atol: float) -> dict[str, float]:
    """max |Δ| of jit.load and paddle.inference outputs against eager (per-token outputs at the positions the
    attention mask keeps, per-sequence outputs on every row); raise when over ``atol`` or not finite."""
    import paddle

    loaded = paddle.jit.load(str(directory / PROGRAM_STEM))
    loaded.eval()

    def run_loaded(batch: dict[str, np.ndarray]) -> list[np.ndarray]:
        with paddle.no_grad():
            outputs = loaded(*(paddle.to_tensor(batch[key]) for key in model.input_names))
        return [t.numpy() for t in (outputs if isinstance(outputs, (list, tuple)) else [outputs])]

    predictor = Predictor(directory, PredictorOptions(device="cpu", dtype="float32", threads=1, onednn=False))
    worst = {path: max_kept_difference(model, names, levels, run, vocab_size)
             for path, run in (("jit.load", run_loaded), ("paddle.inference", predictor))}
    for path, diff in worst.items():
        _check_within(path, diff, atol)
    return {path: diff.max_abs for path, diff in worst.items()}
