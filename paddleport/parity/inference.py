"""Running an exported Paddle program through ``paddle.inference`` (the deployment path)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from paddleport import runtime
from paddleport.errors import PaddleportError

PROGRAM_STEM = "model"  # paddle.jit.save(layer, OUT/model) writes model.json (PIR) + model.pdiparams


@dataclass(frozen=True)
class PredictorOptions:
    """How a predictor runs: device, precision and CPU threads.  IR optimisation is always on."""

    device: str = "cpu"
    dtype: str = "float32"
    threads: int = 1
    onednn: bool = True


def program_files(export_dir: str | Path) -> tuple[Path, Path]:
    """The program (``model.json`` under PIR, ``model.pdmodel`` before it) and ``model.pdiparams``."""
    export_dir = Path(export_dir)
    params = export_dir / f"{PROGRAM_STEM}.pdiparams"
    for suffix in (".json", ".pdmodel"):
        program = export_dir / f"{PROGRAM_STEM}{suffix}"
        if program.is_file() and params.is_file():
            return program, params
    raise PaddleportError(export_dir, f"no exported program ({PROGRAM_STEM}.json or .pdmodel + .pdiparams)")


def make_config(export_dir: str | Path, options: PredictorOptions):
    from paddle import inference

    program, params = program_files(export_dir)
    config = inference.Config(str(program), str(params))
    config.switch_ir_optim(True)
    # Paddle 3.3's constant folding fails ("Tensor holds no memory") on a subgraph fed by parameters alone, such as
    # DeBERTa's LayerNorm of its relative-position embeddings; encoders have nothing else it could fold.
    config.delete_pass("constant_folding_pass")
    config.disable_glog_info()
    if options.device == "gpu":
        precision = {"float32": inference.PrecisionType.Float32, "float16": inference.PrecisionType.Half,
                     "bfloat16": inference.PrecisionType.Bfloat16}[options.dtype]
        config.enable_use_gpu(256, 0, precision)
        return config
    config.disable_gpu()
    config.set_cpu_math_library_num_threads(options.threads)
    if options.onednn or options.dtype == "bfloat16":
        config.enable_mkldnn()
    if options.dtype == "bfloat16":
        config.enable_mkldnn_bfloat16()
    elif options.dtype != "float32":
        raise PaddleportError("--dtypes", f"paddle.inference on CPU runs float32 or bfloat16, not {options.dtype}")
    return config


class Predictor:
    """A ``paddle.inference`` predictor fed with numpy batches; returns its outputs as float32 numpy."""

    def __init__(self, export_dir: str | Path, options: PredictorOptions = PredictorOptions()):
        from paddle import inference

        self.options = options
        with runtime.paddle_threads_kept():
            self.predictor = inference.create_predictor(make_config(export_dir, options))
        self.input_names = self.predictor.get_input_names()
        self.output_names = self.predictor.get_output_names()

    def __call__(self, batch: dict[str, np.ndarray]) -> list[np.ndarray]:
        from paddleport.registry import model_inputs

        for name, value in model_inputs(batch, tuple(self.input_names)).items():
            handle = self.predictor.get_input_handle(name)
            handle.reshape(list(value.shape))
            handle.copy_from_cpu(np.ascontiguousarray(value, dtype=np.int64))
        with runtime.paddle_threads_kept():  # the run leaves Paddle on one thread
            self.predictor.run()
        return [self.predictor.get_output_handle(name).copy_to_cpu().astype(np.float32)
                for name in self.output_names]
