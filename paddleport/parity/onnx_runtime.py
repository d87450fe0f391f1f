"""ONNX models of the same checkpoint and ONNX Runtime sessions that run them (the deployment peer on CPU).

Two ways to an ONNX file, both with dynamic batch and sequence axes on the architecture's inputs
(``input_ids``, ``attention_mask`` and, where it has them, ``token_type_ids``: ``paddleport.registry``):

- ``export_torch_onnx``: the transformers model through ``torch.onnx.export(dynamo=True)`` (the exporter torch
  2.13 maintains; it traces with ``torch.export`` and needs ``onnxscript``, nothing from the network).
- ``export_paddle_onnx``: a program written by ``paddleport export`` (PIR ``model.json`` + ``model.pdiparams``)
  through ``paddle2onnx``.

``OnnxSession`` runs a file with ``CPUExecutionProvider`` (all graph optimisations, ``threads`` intra-op
threads) or ``CUDAExecutionProvider``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from paddleport.errors import PaddleportError

OPSET = 17  # LayerNormalization is a standard op from opset 17 on (one fused node in both exports)
CUDA_PROVIDER = "CUDAExecutionProvider"


def export_torch_onnx(torch_model, path: str | Path, output_name: str) -> Path:
    """Write ``torch_model`` (a transformers encoder in eval mode) as ONNX with dynamic batch and sequence."""
    import torch

    from paddleport.registry import input_names_of

    path = Path(path)
    input_names = input_names_of(torch_model.config)
    example = {name: torch.ones(2, 8, dtype=torch.long) for name in input_names}
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    with torch.inference_mode(False), torch.no_grad():
        program = torch.onnx.export(
            _main_output_module(torch_model, output_name), (), kwargs=example, dynamo=True, opset_version=OPSET,
            input_names=list(input_names), output_names=[output_name],
            dynamic_shapes={name: {0: batch, 1: sequence} for name in input_names}, verbose=False)
    program.save(str(path), external_data=False)
    return path


def _main_output_module(model, output_name: str):
    """``model`` wrapped to take its inputs by keyword and return one named tensor of its output."""
    import torch

    class MainOutput(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, token_type_ids=None, task_type_ids=None):
            inputs = {"input_ids": input_ids, "attention_mask": attention_mask}  # DistilBERT: no token types
            if token_type_ids is not None:
                inputs["token_type_ids"] = token_type_ids
            if task_type_ids is not None:  # ERNIE with use_task_id
                inputs["task_type_ids"] = task_type_ids
            return getattr(self.model(**inputs), output_name)

    return MainOutput().eval()


def export_paddle_onnx(export_dir: str | Path, path: str | Path) -> Path:
    """Convert the program ``paddleport export`` wrote in ``export_dir`` to ONNX with paddle2onnx."""
    from paddleport.parity.inference import program_files

    program, params = program_files(export_dir)
    try:
        import paddle2onnx
    except ImportError:
        raise PaddleportError("--format", "paddle2onnx is not installed (pip install paddle2onnx==2.1.0)") from None
    # save_file=None: paddle2onnx returns the bytes and skips its polygraphy clean-up (which pip-installs
    # onnx_graphsurgeon at run time); ONNX Runtime folds the constants itself.
    model_bytes = paddle2onnx.export(str(program), str(params), None, opset_version=OPSET, auto_upgrade_opset=True,
                                     verbose=False, enable_onnx_checker=True, enable_optimize=True)
    if not model_bytes:
        raise RuntimeError(f"paddle2onnx could not convert {program} (see the log above)")
    path = Path(path)
    path.write_bytes(model_bytes)
    return path


class OnnxSession:
    """An ONNX Runtime session fed with numpy batches; returns every output as float32 numpy."""

    def __init__(self, path: str | Path, *, device: str = "cpu", threads: int = 1):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only
        providers = [CUDA_PROVIDER, "CPUExecutionProvider"] if device == "gpu" else ["CPUExecutionProvider"]
        self.session = onnxruntime.InferenceSession(str(path), options, providers=providers)
        self.input_names = [node.name for node in self.session.get_inputs()]
        self.output_names = [node.name for node in self.session.get_outputs()]

    def __call__(self, batch: dict[str, np.ndarray]) -> list[np.ndarray]:
        from paddleport.registry import model_inputs

        feed = {name: np.ascontiguousarray(value, dtype=np.int64)
                for name, value in model_inputs(batch, tuple(self.input_names)).items()}
        return [np.asarray(output, dtype=np.float32) for output in self.session.run(self.output_names, feed)]


def onnxruntime_supports(device: str) -> str | None:
    """Why ONNX Runtime cannot run on ``device`` here, or None."""
    try:
        import onnxruntime
    except ImportError:
        return "onnxruntime is not installed"
    if device == "gpu" and CUDA_PROVIDER not in onnxruntime.get_available_providers():
        return f"this onnxruntime build has no {CUDA_PROVIDER} (install onnxruntime-gpu)"
    return None
