"""bench: a tiny grid end to end, the JSON fields, and the GPU helpers (monkeypatched on CPU)."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from paddleport import runtime
from paddleport.cli import main
from paddleport.parity import devices
from tests.fixtures import make_tiny_hf_checkpoint

ROW_FIELDS = {"framework", "mode", "model", "batch_size", "seq_len", "median_ms", "p90_ms", "samples_per_s",
              "peak_mem_mb", "device", "dtype", "threads", "max_abs_diff"}


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory) -> list[Path]:
    from paddleport.convert import convert_checkpoint

    root = tmp_path_factory.mktemp("bench")
    bert = make_tiny_hf_checkpoint(root / "bert", "BertForSequenceClassification")
    squeeze_hf = make_tiny_hf_checkpoint(root / "squeeze-hf", "SqueezeBertForSequenceClassification")
    convert_checkpoint(squeeze_hf, root / "squeeze", to="paddle", progress=False)  # a Paddle-layout input
    return [bert, root / "squeeze"]


def test_bench_tiny_grid_json_and_plot(model_dirs, tmp_path, capsys):
    json_path, plot_path = tmp_path / "rows.json", tmp_path / "latency.png"
    assert main(["bench", *map(str, model_dirs), "--dtypes", "float32,bfloat16", "--batch-sizes", "1,2",
                 "--seq-lens", "8", "--iters", "2", "--warmup", "1", "--end-to-end", "6", "--in-process",
                 "--json", str(json_path), "--plot", str(plot_path)]) == 0
    result = json.loads(json_path.read_text())
    out = capsys.readouterr().out
    rows = result["rows"]
    assert all(ROW_FIELDS <= set(row) for row in rows)
    timed = [row for row in rows if row["skipped"] is None]
    assert {(r["framework"], r["mode"]) for r in timed if r["dtype"] == "float32"} == {
        ("torch", "eager"), ("paddle", "eager"), ("paddle", "inference"),
        ("onnxruntime", "torch.onnx"), ("onnxruntime", "paddle2onnx")}
    onnx_rows = [r for r in timed if r["framework"] == "onnxruntime" and r["scenario"] == "forward"]
    assert {r["model"] for r in onnx_rows} == {"bert", "squeeze"} and len(onnx_rows) == 2 * 2 * 2
    assert all(np.isfinite(r["max_abs_diff"]) and r["max_abs_diff"] <= 1e-4 for r in onnx_rows)
    assert all(r["skipped"].startswith("the ONNX rows run the float32") for r in rows
               if r["framework"] == "onnxruntime" and r["dtype"] == "bfloat16")
    forward = [r for r in timed if r["scenario"] == "forward"]
    assert all(r["median_ms"] > 0 and r["p90_ms"] >= r["median_ms"] and r["peak_mem_mb"] > 0 for r in forward)
    assert all(r["max_abs_diff"] <= (1e-5 if r["dtype"] == "float32" else 5e-2) for r in forward)
    cpu = runtime.detect_cpu()
    assert all(row["runtime"]["cpu"] == cpu.as_json() and row["runtime"]["threads"] == row["threads"]
               for row in rows)
    assert result["runtime"]["cpu"]["isa"] == cpu.isa and "FLAGS_use_stride_kernel" in result["runtime"]["paddle_flags"]
    if cpu.native_bf16:
        assert {r["mode"] for r in forward if r["dtype"] == "bfloat16"} >= {"eager (bfloat16 weights)", "autocast",
                                                                            "inference"}
    else:  # emulated bfloat16: no rows, one line saying why
        assert not [r for r in rows if r["dtype"] == "bfloat16"]
        assert result["notes"] == [line for line in out.splitlines() if line.startswith("bfloat16 rows skipped:")]
    skipped = [r for r in rows if r["framework"] == "paddle" and r["mode"].startswith("eager (bfloat16")]
    if cpu.native_bf16 and devices.paddle_eager_supports("bfloat16", "cpu"):
        assert skipped and all("no CPU bfloat16" in r["skipped"] for r in skipped)
    assert any(r["scenario"].startswith("end-to-end 6") for r in timed)
    assert {s["squeezebert"] for s in result["squeezebert_speedup_over_bert"]} == {"squeeze"}
    assert plot_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out.startswith(f"CPU: {cpu.model_name} ({cpu.vendor}, {cpu.isa})")
    assert "\n| model | framework |" in out and "SqueezeBERT speed-up over BERT" in out


def test_each_path_is_timed_in_a_process_that_loads_only_its_framework(model_dirs):
    """The default: a torch row never shares its process with Paddle, its OpenMP runtime or paddleport's kernels
    (in one process they slowed torch by about 25 %), and a row's peak RSS is its own."""
    from paddleport.parity.bench import BenchOptions, run_benchmark

    result = run_benchmark([model_dirs[0]], BenchOptions(paths=("torch eager", "paddle eager"), batch_sizes=(1, 2),
                                                         seq_lens=(8,), iters=2, warmup=1, end_to_end=4))
    rows = {(row.framework, row.scenario, row.batch_size): row for row in result.rows}
    assert set(rows) == {(framework, scenario, batch_size) for framework in ("torch", "paddle")
                         for scenario, batch_size in (("forward", 1), ("forward", 2), ("end-to-end 4 QQP pairs", 2))}
    for (framework, scenario, _), row in rows.items():
        assert row.skipped is None and row.median_ms > 0 and row.peak_mem_mb > 0
        assert scenario != "forward" or row.max_abs_diff <= 1e-5
        assert row.runtime["own_process"] and row.runtime["frameworks"] == [framework]
        # an end-to-end row tokenizes with transformers, which imports torch (it runs nothing there)
        assert row.runtime["imported"] == ([framework] if scenario == "forward" else
                                           sorted({framework, "torch"}, key=("torch", "paddle").index))
        assert row.runtime["cpu"] == result.runtime["cpu"]
    assert "own_process" not in result.runtime  # the parent's record: it converted and computed the references


def test_bfloat16_rows_are_left_out_where_the_cpu_only_emulates_it():
    from paddleport.parity.bench import BenchOptions, _without_emulated_bfloat16

    options = BenchOptions(dtypes=("float32", "bfloat16"))
    amd = runtime.CpuInfo("AuthenticAMD", "AMD EPYC 7B13", frozenset({"avx2", "fma"}))
    kept, notes = _without_emulated_bfloat16(options, amd)
    assert kept.dtypes == ("float32",) and len(notes) == 1
    assert notes[0].startswith("bfloat16 rows skipped: AMD EPYC 7B13 (AVX2) has no native bfloat16")
    sapphire_rapids = runtime.CpuInfo("GenuineIntel", "Xeon", frozenset({"avx2", "avx512f", "amx_tile", "amx_bf16"}))
    assert _without_emulated_bfloat16(options, sapphire_rapids) == (options, [])


SKYLAKE_CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Gold 6148 CPU
flags\t\t: fpu sse sse2 avx fma avx2 avx512f avx512bw avx512vl
"""


def test_bench_on_a_cpu_description_without_native_bfloat16_prints_one_line_and_no_bfloat16_rows(
        model_dirs, tmp_path, monkeypatch):
    """The CPU as PADDLEPORT_CPUINFO describes it (AVX-512 without BF16 or AMX) decides, not this machine's."""
    from paddleport.parity.bench import BenchOptions, run_benchmark

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(SKYLAKE_CPUINFO)
    monkeypatch.setenv(runtime.CPUINFO_ENV, str(cpuinfo))
    assert runtime.active() is None  # run_benchmark sets up (and detects the CPU) itself
    result = run_benchmark([model_dirs[0]], BenchOptions(paths=("torch eager",), dtypes=("float32", "bfloat16"), isolate=False,
                                                         batch_sizes=(1,), seq_lens=(8,), iters=1, warmup=0))
    assert [(row.dtype, row.skipped) for row in result.rows] == [("float32", None)]
    skipped_lines = [line for line in result.markdown().splitlines() if "bfloat16" in line]
    assert skipped_lines == [result.notes[0]] and result.notes[0].startswith(
        "bfloat16 rows skipped: Intel(R) Xeon(R) Gold 6148 CPU (AVX-512) has no native bfloat16")


def test_bench_gpu_without_gpu(model_dirs, capsys):
    if devices.gpu_frameworks():
        pytest.skip("a GPU is present")
    assert main(["bench", str(model_dirs[0]), "--device", "gpu"]) == 2
    assert "no GPU available" in capsys.readouterr().err


def test_bench_bad_lists(model_dirs, capsys):
    assert main(["bench", str(model_dirs[0]), "--batch-sizes", "1,x"]) == 2
    assert main(["bench", str(model_dirs[0]), "--dtypes", "int8"]) == 2
    assert "unknown dtype 'int8'" in capsys.readouterr().err


class Recorder:
    def __init__(self, value=0):
        self.calls, self.value = 0, value

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.value


@pytest.fixture
def fake_gpu(monkeypatch):
    """Both frameworks report one CUDA device; synchronisation and memory statistics are recorded."""
    import paddle
    import torch

    fakes = {"torch_sync": Recorder(), "paddle_sync": Recorder(), "torch_reset": Recorder(),
             "paddle_reset": Recorder(), "torch_peak": Recorder(3 * 2**20), "paddle_peak": Recorder(5 * 2**20)}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=0: "Fake GPU")
    monkeypatch.setattr(torch.cuda, "synchronize", fakes["torch_sync"])
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", fakes["torch_reset"])
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", fakes["torch_peak"])
    monkeypatch.setattr(paddle.device, "is_compiled_with_cuda", lambda: True)
    monkeypatch.setattr(paddle.device.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(paddle.device, "synchronize", fakes["paddle_sync"])
    monkeypatch.setattr(paddle.device.cuda, "reset_max_memory_allocated", fakes["paddle_reset"])
    monkeypatch.setattr(paddle.device.cuda, "max_memory_allocated", fakes["paddle_peak"])
    return fakes


def test_gpu_device_helpers(fake_gpu):
    devices.require_device("gpu")
    assert devices.gpu_frameworks() == ["torch", "paddle"] and devices.device_name("gpu") == "Fake GPU"
    assert devices.torch_device("gpu") == "cuda" and devices.torch_device("cpu") == "cpu"
    devices.synchronize("torch", "gpu")
    devices.synchronize("paddle", "gpu")
    devices.synchronize("paddle", "cpu")  # no-op
    assert fake_gpu["torch_sync"].calls == 1 and fake_gpu["paddle_sync"].calls == 1
    assert devices.peak_gpu_memory_mb("torch") == 3.0 and devices.peak_gpu_memory_mb("paddle") == 5.0
    devices.synchronize("onnxruntime", "gpu")  # session.run returns host arrays: nothing to wait for
    assert fake_gpu["torch_sync"].calls == 1 and fake_gpu["paddle_sync"].calls == 1
    assert devices.peak_gpu_memory_mb("onnxruntime") is None


def test_onnxruntime_gpu_rows_need_the_cuda_provider(monkeypatch):
    import onnxruntime

    from paddleport.parity.onnx_runtime import onnxruntime_supports

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    assert onnxruntime_supports("cpu") is None and "CUDAExecutionProvider" in onnxruntime_supports("gpu")
    monkeypatch.setattr(onnxruntime, "get_available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert onnxruntime_supports("gpu") is None


def test_gpu_timing_synchronises_and_reads_gpu_memory(fake_gpu):
    from paddleport.parity.bench import time_runner

    timing = time_runner(lambda batch: np.zeros(2, np.float32), {}, framework="paddle", device="gpu",
                         iters=4, warmup=1)
    assert len(timing.latencies_s) == 4 and timing.peak_mem_mb == 5.0
    assert fake_gpu["paddle_sync"].calls == 5 and fake_gpu["paddle_reset"].calls == 1
    assert fake_gpu["torch_sync"].calls == 0


def test_gpu_predictor_config(monkeypatch):
    """paddle.inference on GPU: enable_use_gpu with the row's precision, no oneDNN, IR optimisation on."""
    from paddle import inference

    from paddleport.parity.inference import PredictorOptions, make_config

    calls = []

    class FakeConfig:
        def __init__(self, *files):
            calls.append(("files", tuple(Path(f).name for f in files)))

        def __getattr__(self, name):
            return lambda *args: calls.append((name, args))

    monkeypatch.setattr(inference, "Config", FakeConfig)
    monkeypatch.setattr("paddleport.parity.inference.program_files",
                        lambda d: (Path(d) / "model.json", Path(d) / "model.pdiparams"))
    make_config("/x", PredictorOptions(device="gpu", dtype="bfloat16"))
    names = [name for name, _ in calls]
    assert ("enable_use_gpu", (256, 0, inference.PrecisionType.Bfloat16)) in calls
    assert ("switch_ir_optim", (True,)) in calls and "enable_mkldnn" not in names
    calls.clear()
    make_config("/x", PredictorOptions(device="cpu", dtype="bfloat16", threads=2))
    assert {"enable_mkldnn", "enable_mkldnn_bfloat16", "disable_gpu"} <= {name for name, _ in calls}
    assert ("set_cpu_math_library_num_threads", (2,)) in calls


def test_bench_inference_script_smoke(tmp_path):
    """benchmarks/bench_inference.py with --tiny: both dtypes, the ratio table (one model: the exports take the
    time, and the grid test above benchmarks both)."""
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_inference.py"
    module = types.ModuleType("bench_inference")
    module.__file__ = str(script)
    exec(compile(script.read_text(), str(script), "exec"), module.__dict__)
    sys.modules.setdefault("bench_inference", module)
    out = tmp_path / "bench.json"
    assert module.main(["--tiny", "--in-process", "--models", "squeezebert-uncased", "--iters", "2", "--seq-len", "16",
                        "--batch-size", "2", "--json", str(out)]) == 0
    ratios = json.loads(out.read_text())["ratios"]
    assert [r["model"] for r in ratios] == ["squeezebert-uncased"]
    assert all(r["fp32"]["ratio"] > 0 and r["bf16"]["ratio"] > 0 for r in ratios)
    assert all(r["fp32_vs_onnxruntime"]["ratio"] > 0 and "torch.onnx" in r["fp32_vs_onnxruntime"]["torch"]
               for r in ratios)
