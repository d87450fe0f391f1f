"""paddleport.runtime: CPU detection, the AMD MKL setting in a fresh process, threads, and restore()."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from paddleport import runtime
from tests.fixtures import openmp_threads

REPO = Path(__file__).resolve().parents[1]
AMD_CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model name\t: AMD EPYC 7B13
flags\t\t: fpu sse sse2 avx fma avx2 bmi2 sha_ni

processor\t: 1
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B13
flags\t\t: fpu sse sse2 avx fma avx2 bmi2 sha_ni
"""
INTEL_CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8481C
flags\t\t: fpu sse avx fma avx2 avx512f avx512bw avx512_bf16 amx_bf16 amx_tile amx_int8
"""
# a fresh interpreter: set up, then run one MKL sgemm through Paddle with MKL_VERBOSE (MKL names the code path
# it chose at its first call), and report what was set
PROBE = """
import json, os, sys
from paddleport import runtime
from tests.fixtures import openmp_threads
settings = runtime.setup(threads=1)
import paddle
x = paddle.ones([64, 64])
paddle.matmul(x, x)
print(json.dumps({"settings": settings.as_json(), "mkl": os.environ.get("MKL_DEBUG_CPU_TYPE")}))
"""


def test_detects_amd_and_intel_from_cpuinfo_text():
    amd = runtime.detect_cpu(AMD_CPUINFO)
    assert (amd.vendor, amd.model_name, amd.is_amd) == ("AuthenticAMD", "AMD EPYC 7B13", True)
    assert amd.avx2 and not amd.avx512f and not amd.amx and not amd.native_bf16 and amd.isa == "AVX2"
    intel = runtime.detect_cpu(INTEL_CPUINFO)
    assert not intel.is_amd and intel.avx512f and intel.amx and intel.native_bf16 and intel.isa == "AVX-512 + AMX"
    assert intel.as_json() == {"vendor": "GenuineIntel", "model_name": "Intel(R) Xeon(R) Platinum 8481C",
                               "isa": "AVX-512 + AMX",
                               "flags": ["amx_bf16", "amx_tile", "avx2", "avx512_bf16", "avx512bw", "avx512f", "fma"]}


def test_cpuinfo_file_named_in_the_environment_is_read(tmp_path, monkeypatch):
    (tmp_path / "cpuinfo").write_text(AMD_CPUINFO)
    monkeypatch.setenv(runtime.CPUINFO_ENV, str(tmp_path / "cpuinfo"))
    assert runtime.detect_cpu().model_name == "AMD EPYC 7B13"


def run_probe(tmp_path: Path, cpuinfo: str, **environment: str) -> tuple[dict, str]:
    (tmp_path / "cpuinfo").write_text(cpuinfo)
    env = {name: value for name, value in os.environ.items() if name not in ("MKL_DEBUG_CPU_TYPE", "OMP_NUM_THREADS")}
    env |= {"PYTHONPATH": str(REPO), runtime.CPUINFO_ENV: str(tmp_path / "cpuinfo"), "MKL_VERBOSE": "1",
            "PADDLEPORT_CPU_KERNELS": "0", **environment}
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    mkl_banner = next(line for line in lines if line.startswith("MKL_VERBOSE Intel(R) MKL"))
    return json.loads(lines[-1]), mkl_banner


def test_amd_gets_mkl_avx2_path_before_paddle_loads_in_a_fresh_process(tmp_path):
    report, mkl_banner = run_probe(tmp_path, AMD_CPUINFO)
    assert report["mkl"] == "5" and report["settings"]["environment"]["MKL_DEBUG_CPU_TYPE"] == "5"
    assert report["settings"]["cpu"]["vendor"] == "AuthenticAMD"
    # MKL read it at its initialisation: its banner names the AVX2 code path (whatever this CPU really is)
    assert "Advanced Vector Extensions 2" in mkl_banner and "AVX-512" not in mkl_banner


def test_a_users_own_value_is_left_alone(tmp_path):
    report, _ = run_probe(tmp_path, AMD_CPUINFO, MKL_DEBUG_CPU_TYPE="4")
    assert report["mkl"] == "4" and report["settings"]["user_environment"] == {"MKL_DEBUG_CPU_TYPE": "4"}
    assert "MKL_DEBUG_CPU_TYPE" not in report["settings"]["environment"]


def test_intel_gets_no_mkl_setting(tmp_path):
    report, _ = run_probe(tmp_path, INTEL_CPUINFO)
    assert report["mkl"] is None and "MKL_DEBUG_CPU_TYPE" not in report["settings"]["environment"]


def test_paddle_imported_first_on_amd_gives_one_warning_saying_what_to_do(monkeypatch):
    import paddle  # noqa: F401  (already imported by the test session: the late case)

    monkeypatch.delenv("MKL_DEBUG_CPU_TYPE", raising=False)
    monkeypatch.setattr(runtime, "_warned_late_paddle", False)
    amd = runtime.detect_cpu(AMD_CPUINFO)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            with runtime.setup(device="gpu", cpu=amd, frameworks=()):
                assert os.environ["MKL_DEBUG_CPU_TYPE"] == "5"
    late = [w for w in caught if "imported before paddleport.runtime.setup()" in str(w.message)]
    assert len(late) == 1 and "export MKL_DEBUG_CPU_TYPE=5" in str(late[0].message)
    assert "MKL_DEBUG_CPU_TYPE" not in os.environ  # restored


@pytest.mark.filterwarnings("ignore:paddle was imported before")
@pytest.mark.parametrize("threads", [1, 3])
def test_restore_undoes_flags_threads_and_environment(threads):
    import paddle
    import torch

    before = (paddle.get_flags(["FLAGS_use_stride_kernel"]), torch.get_num_threads(), openmp_threads(),
              os.environ.get("OMP_NUM_THREADS"), os.environ.get("MKL_DEBUG_CPU_TYPE"))
    settings = runtime.setup("cpu", threads, cpu=runtime.detect_cpu(AMD_CPUINFO), build_kernels=False)
    assert runtime.active() is settings
    assert paddle.get_flags(["FLAGS_use_stride_kernel"]) == {"FLAGS_use_stride_kernel": False}
    assert torch.get_num_threads() == threads and openmp_threads() == threads
    assert settings.as_json()["threads"] == threads and settings.paddle_flags == {"FLAGS_use_stride_kernel": False}
    settings.restore()
    assert runtime.active() is None and runtime._malloc_holders == 0
    assert (paddle.get_flags(["FLAGS_use_stride_kernel"]), torch.get_num_threads(), openmp_threads(),
            os.environ.get("OMP_NUM_THREADS"), os.environ.get("MKL_DEBUG_CPU_TYPE")) == before


@pytest.mark.filterwarnings("ignore:paddle was imported before")
def test_a_child_process_gets_the_environment_as_the_user_set_it(monkeypatch):
    """What bench hands each path's process: paddleport's own values taken back (the child sets up for itself),
    the user's values kept."""
    monkeypatch.setenv("PADDLEPORT_TEST_USER_VALUE", "kept")
    monkeypatch.delenv("MKL_DEBUG_CPU_TYPE", raising=False)
    with runtime.setup("cpu", 1, cpu=runtime.detect_cpu(AMD_CPUINFO), build_kernels=False):
        assert os.environ["MKL_DEBUG_CPU_TYPE"] == "5"
        child = runtime.user_environment()
    assert "MKL_DEBUG_CPU_TYPE" not in child and child["PADDLEPORT_TEST_USER_VALUE"] == "kept"
    assert child.get("OMP_NUM_THREADS") == runtime._USER_THREADS  # not the "1" that importing paddle writes
    monkeypatch.setenv("MKL_DEBUG_CPU_TYPE", "2")  # a user's own value stays, set up or not
    with runtime.setup("cpu", 1, cpu=runtime.detect_cpu(AMD_CPUINFO), build_kernels=False):
        assert runtime.user_environment()["MKL_DEBUG_CPU_TYPE"] == "2"


def test_gpu_setup_leaves_cpu_only_settings_alone():
    import paddle

    with runtime.setup("gpu", 1, build_kernels=False) as settings:
        assert paddle.get_flags(["FLAGS_use_stride_kernel"]) == {"FLAGS_use_stride_kernel": True}
        assert settings.paddle_flags == {} and settings.malloc_kept_block_bytes is None


def test_library_calls_reuse_the_entry_points_settings_or_restore_their_own():
    with runtime.setup("cpu", 2, build_kernels=False) as outer:
        with runtime.ensure("cpu", None, ("torch",)) as reused:
            assert reused is outer
        with runtime.ensure("cpu", 1, ("torch",)) as own:
            assert own is not outer and runtime.active() is own
        assert runtime.active() is outer


def test_cores_follow_the_cgroup_quota(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert runtime.cgroup_cpu_limit(tmp_path) == 2
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert runtime.cgroup_cpu_limit(tmp_path) is None
    (tmp_path / "cpu.max").write_text("50000 100000\n")
    assert runtime.available_cores(tmp_path) == 1
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert runtime.cgroup_cpu_limit(v1) is None
    assert 1 <= runtime.available_cores(tmp_path / "none") <= len(os.sched_getaffinity(0))


def test_entry_points_set_up_before_the_command_runs(monkeypatch, tmp_path):
    from paddleport.cli import main as cli_main
    from paddleport.glue_runners.cli import main as glue_main

    calls = []

    def recording_setup(**options):
        calls.append(options)
        return runtime.RuntimeSettings(options["device"], 1, runtime.detect_cpu(), ())

    monkeypatch.setattr(runtime, "setup", recording_setup)
    assert cli_main(["convert", str(tmp_path / "missing"), str(tmp_path / "out")]) == 2
    assert glue_main(["--framework", "paddle", "--model", str(tmp_path / "missing"), "--output-dir",
                      str(tmp_path / "run"), "--num-threads", "3", "--device", "gpu"]) == 2
    assert calls == [{"device": "cpu", "threads": None, "frameworks": ()},
                     {"device": "gpu", "threads": 3, "frameworks": ("paddle",)}]


def test_other_ranks_are_quiet_only_inside_the_run():
    import logging

    from paddleport.glue_runners.distributed import TORCHRUN, LaunchInfo, quiet_other_ranks

    before = logging.root.manager.disable
    with quiet_other_ranks(LaunchInfo(TORCHRUN, rank=1, world_size=2)):
        assert logging.root.manager.disable == logging.WARNING
        with warnings.catch_warnings(record=True) as caught:
            warnings.warn("dropped on rank 1")
        assert caught == []
    assert logging.root.manager.disable == before
    with quiet_other_ranks(LaunchInfo(TORCHRUN, rank=0, world_size=2)):
        assert logging.root.manager.disable == before
