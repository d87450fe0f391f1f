"""Export a Paddle checkpoint as a static inference program, verified against eager before it is written.

``paddle.jit.to_static`` traces the model with dynamic batch and sequence length (``InputSpec([None, None])``
for ``input_ids``, ``attention_mask`` and ``token_type_ids``); ``paddle.jit.save`` writes, under PIR
(Paddle 3), ``model.json`` + ``model.pdiparams`` into a temporary directory next to ``OUT``.  Both
``paddle.jit.load`` and a ``paddle.inference`` predictor must reproduce eager outputs (max |Δ| <= atol) on
inputs of two different shapes before the directory is renamed to ``OUT`` in one step.
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
from paddleport.parity.inputs import kept_positions
from paddleport.parity.loading import architecture_of, read_config

EXPORT_ATOL = 1e-5
EXPORT_INFO = "export_info.json"
# (batch, sequence) shapes the exported program is checked on: proves both dimensions are dynamic.
CHECK_SHAPES = ((2, 7), (3, 19))


@dataclass
class ExportReport:
    out_dir: str
    architecture: str
    program: str
    params: str
    outputs: list[str]
    atol: float
    max_abs_diff: dict[str, float] = field(default_factory=dict)

    def as_json(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        worst = max(self.max_abs_diff.values()) if self.max_abs_diff else 0.0
        return (f"exported {self.architecture} to {self.out_dir} ({Path(self.program).name} + "
                f"{Path(self.params).name}); outputs {', '.join(self.outputs)}; "
                f"max |Δ| vs eager {worst:.2e} <= {self.atol:g}")


def export_model(paddle_dir: str | Path, out_dir: str | Path, *, force: bool = False,
                 atol: float = EXPORT_ATOL) -> ExportReport:
    """Trace, save into a temporary directory, verify against eager, then move into place atomically."""
    paddle_dir, out_dir = Path(paddle_dir), Path(out_dir)
    architecture = architecture_of(read_config(paddle_dir), paddle_dir)
    check_output_target(out_dir, reads_from=[paddle_dir])
    if os.path.lexists(out_dir) and not force:
        raise PaddleportError(out_dir, "already exists (pass --force to replace it)")
    model = _load_eager(paddle_dir, architecture)
    with atomic_directory(out_dir, replace=force, reads_from=[paddle_dir]) as staging:
        names = save_static(model, staging)
        diffs = verify_export(model, staging, names, vocab_size=model.config.vocab_size, atol=atol)
        shutil.copy(paddle_dir / "config.json", staging / "config.json")
        copy_tokenizer_files(paddle_dir, staging)
        report = ExportReport(str(out_dir), architecture, *(str(out_dir / p.name) for p in program_files(staging)),
                              outputs=names, atol=atol, max_abs_diff=diffs)
        (staging / EXPORT_INFO).write_text(json.dumps(report.as_json(), indent=2) + "\n", encoding="utf-8")
    return report


def _load_eager(paddle_dir: Path, architecture: str):
    import paddleport.models as models

    model = getattr(models, architecture).from_pretrained(paddle_dir)
    model.eval()
    return model


def save_static(model, directory: Path) -> list[str]:
    """to_static + jit.save of the inference wrapper; returns the output names in program order."""
    import paddle

    from paddleport.parity._inference_layer import InferenceLayer, input_spec

    layer = InferenceLayer(model)
    layer.eval()
    try:
        with paddle.no_grad():  # an inference program: no gradient bookkeeping is traced
            static = paddle.jit.to_static(layer, input_spec=input_spec(), full_graph=True)
            paddle.jit.save(static, str(directory / PROGRAM_STEM))
    except Exception as error:  # dy2static raises many types; the model code, not the user, is at fault
        raise RuntimeError(f"paddle.jit.to_static/save failed for {type(model).__name__}: {error}") from error
    return layer.names


def check_batches(vocab_size: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Random token batches of two shapes, the second with right padding, for checking an export."""
    rng = np.random.default_rng(seed)
    batches = []
    for batch_size, length in CHECK_SHAPES:
        mask = np.ones((batch_size, length), dtype=np.int64)
        mask[1:, length // 2:] = 0
        batches.append({
            "input_ids": rng.integers(1, vocab_size, size=(batch_size, length), dtype=np.int64) * mask,
            "attention_mask": mask,
            "token_type_ids": (np.arange(length)[None, :] >= length // 3).astype(np.int64).repeat(batch_size, 0),
        })
    return batches


def eager_outputs(model, batch: dict[str, np.ndarray], names: list[str]) -> list[np.ndarray]:
    import paddle

    with paddle.no_grad():
        output = model(**{key: paddle.to_tensor(value) for key, value in batch.items()})
    return [getattr(output, name).astype("float32").numpy() for name in names]


def verify_export(model, directory: Path, names: list[str], *, vocab_size: int, atol: float) -> dict[str, float]:
    """max |Δ| of jit.load and paddle.inference outputs against eager at the positions the attention mask keeps;
    raise when over ``atol``."""
    import paddle

    loaded = paddle.jit.load(str(directory / PROGRAM_STEM))
    loaded.eval()
    predictor = Predictor(directory, PredictorOptions(device="cpu", dtype="float32", threads=1, onednn=False))
    worst = {"jit.load": 0.0, "paddle.inference": 0.0}
    for batch in check_batches(vocab_size):
        expected = eager_outputs(model, batch, names)
        with paddle.no_grad():
            reloaded = loaded(*(paddle.to_tensor(batch[key]) for key in ("input_ids", "attention_mask", "token_type_ids")))
        reloaded = [reloaded] if not isinstance(reloaded, (list, tuple)) else reloaded
        kept = batch["attention_mask"].astype(bool)  # padding positions are never read; see parity.compare
        for path, outputs in (("jit.load", [t.numpy() for t in reloaded]), ("paddle.inference", predictor(batch))):
            for want, got in zip(expected, outputs):
                diff = np.abs(kept_positions(want, kept) - kept_positions(got, kept))
                worst[path] = max(worst[path], float(diff.max()))
    for path, diff in worst.items():
        if not diff <= atol:
            raise PaddleportError(None, f"exported program ({path}) differs from eager by {diff:.3g} > {atol:g}; "
                                        "nothing was written")
    return worst
