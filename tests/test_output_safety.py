"""Output directories (convert, export; the GLUE runner's are in test_glue_runner.py): ``--force`` never deletes
what a command reads, OUT is swapped in atomically with plain-mkdir modes, killed runs leave nothing that the
next run does not remove, and two writers of one OUT never both proceed."""

from __future__ import annotations

import hashlib
import os
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from paddleport import fsutil
from paddleport.cli import main as cli_main
from paddleport.convert import convert_checkpoint
from paddleport.fsutil import atomic_directory
from tests.fixtures import make_tiny_hf_checkpoint

REPO = Path(__file__).resolve().parents[1]
REFUSED_SOURCE = "which this command reads; choose another output directory (nothing was changed)"


@pytest.fixture(scope="module")
def tiny_hf(tmp_path_factory) -> Path:
    return make_tiny_hf_checkpoint(tmp_path_factory.mktemp("tiny") / "src", "BertModel")


@pytest.fixture()
def workspace(tiny_hf, tmp_path) -> Path:
    """tmp_path/src (a tiny HF checkpoint) and a sibling file, both of which a bad --force could destroy."""
    (tmp_path / "src").mkdir()
    for path in tiny_hf.iterdir():
        (tmp_path / "src" / path.name).write_bytes(path.read_bytes())
    (tmp_path / "notes.txt").write_text("a sibling of the source\n")
    return tmp_path


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under ``root`` (hidden ones too): its kind, mode and content digest."""
    entries = {}
    for path in sorted(Path(root).rglob("*")):
        info = path.lstat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if stat.S_ISREG(info.st_mode) else \
            os.readlink(path) if stat.S_ISLNK(info.st_mode) else None
        entries[str(path.relative_to(root))] = (stat.S_IFMT(info.st_mode), stat.S_IMODE(info.st_mode), digest)
    return entries


def messages(stderr: str) -> list[str]:
    """paddleport's own lines on stderr (a first run on a machine also shows the CPU-kernel build's progress)."""
    return [line for line in stderr.strip().splitlines() if line.startswith("paddleport:")]


def run_cli(capsys, *args) -> tuple[int, list[str]]:
    code = cli_main([str(arg) for arg in args])
    return code, messages(capsys.readouterr().err)


def assert_refused(capsys, root: Path, args: list, *fragments: str) -> None:
    before = snapshot(root)
    code, lines = run_cli(capsys, *args)
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith("paddleport: error: ") and all(fragment in lines[0] for fragment in fragments), lines
    assert snapshot(root) == before  # nothing deleted, nothing added


def debris(out: Path) -> list[str]:
    """What a writer of ``out`` may leave beside it: partial, retired and lock entries."""
    return sorted(path.name for path in out.parent.glob(f".{out.name}.*"))


# ---------------------------------------------------------------------------------------- what --force may replace


@pytest.mark.parametrize("target", ["src", "src/../src", "parent", "alias"])
def test_convert_force_never_replaces_its_source_or_what_contains_it(workspace, capsys, target):
    (workspace / "alias").symlink_to(workspace / "src")
    out = {"parent": workspace, "alias": workspace / "alias"}.get(target, workspace / target)
    assert_refused(capsys, workspace, ["convert", workspace / "src", out, "--force"], str(out), REFUSED_SOURCE)


def test_convert_through_an_alias_into_its_parent_is_refused(workspace, capsys):
    (workspace / "alias").symlink_to(workspace / "src")
    assert_refused(capsys, workspace, ["convert", workspace / "alias", workspace / "src" / "..", "--force"],
                   "contains", REFUSED_SOURCE)


@pytest.mark.parametrize("target", ["same", "parent"])
def test_export_force_never_replaces_the_paddle_directory_it_reads(workspace, capsys, target):
    paddle_dir = workspace / "paddle"
    convert_checkpoint(workspace / "src", paddle_dir, progress=False)
    out = paddle_dir if target == "same" else workspace
    assert_refused(capsys, workspace, ["export", paddle_dir, out, "--force"], str(out), REFUSED_SOURCE)


# ---------------------------------------------------------------------------------------- modes, swap, leftovers


@pytest.fixture()
def umask():
    """Set the process umask for one test, restored afterwards."""
    previous = os.umask(0o022)
    os.umask(previous)
    yield lambda mask: os.umask(mask)
    os.umask(previous)


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_outputs_get_the_modes_of_a_plain_mkdir(workspace, umask, mask):
    umask(mask)
    out = workspace / "out"
    out.mkdir(mode=0o700)  # --force must not keep (or impose) 0700
    convert_checkpoint(workspace / "src", out, force=True, progress=False)
    assert stat.S_IMODE(out.stat().st_mode) == 0o777 & ~mask
    modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in out.iterdir()}
    assert "model.safetensors" in modes and set(modes.values()) == {0o666 & ~mask}, modes
    assert debris(out) == []


def test_atomic_directory_files_written_by_safetensors_get_plain_modes(tmp_path, umask):
    from safetensors.numpy import save_file
    import numpy as np

    umask(0o022)
    with atomic_directory(tmp_path / "out") as partial:
        save_file({"x": np.zeros(2, np.float32)}, str(partial / "weights.safetensors"))  # safetensors makes 0600
        (partial / "nested").mkdir(mode=0o700)
    assert stat.S_IMODE((tmp_path / "out" / "weights.safetensors").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "out" / "nested").stat().st_mode) == 0o755


def test_replacement_is_one_exchange_without_a_moment_where_out_is_missing(workspace, monkeypatch):
    assert fsutil._RENAMEAT2 is not None  # glibc >= 2.28
    out = workspace / "out"
    convert_checkpoint(workspace / "src", out, progress=False)
    (out / "stale.txt").write_text("from the previous conversion")

    def no_plain_rename(*args, **kwargs):
        raise AssertionError("a plain rename would leave a moment without OUT")

    monkeypatch.setattr(fsutil.os, "rename", no_plain_rename)
    convert_checkpoint(workspace / "src", out, force=True, progress=False)
    assert (out / "model.safetensors").is_file() and not (out / "stale.txt").exists()
    assert debris(out) == []


def test_replacement_without_renameat2_falls_back_to_two_renames(workspace, monkeypatch):
    monkeypatch.setattr(fsutil, "_RENAMEAT2", None)
    out = workspace / "out"
    convert_checkpoint(workspace / "src", out, progress=False)
    (out / "stale.txt").write_text("from the previous conversion")
    convert_checkpoint(workspace / "src", out, force=True, progress=False)
    assert (out / "model.safetensors").is_file() and not (out / "stale.txt").exists()
    assert debris(out) == []


@pytest.mark.parametrize("kind", ["file", "symlink"])
def test_force_over_a_file_or_a_symlink_leaves_nothing_behind(workspace, kind):
    out, elsewhere = workspace / "out", workspace / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("not ours")
    if kind == "file":
        out.write_text("a file in the way")
    else:
        out.symlink_to(elsewhere)
    convert_checkpoint(workspace / "src", out, force=True, progress=False)
    assert out.is_dir() and not out.is_symlink() and (out / "model.safetensors").is_file()
    assert (elsewhere / "keep.txt").read_text() == "not ours"  # the link was replaced, not its target
    assert debris(out) == []


# ---------------------------------------------------------------------------------------- killed and racing runs


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_stale_partials_of_dead_runs_are_removed_live_ones_kept(workspace):
    out = workspace / "out"
    convert_checkpoint(workspace / "src", out, progress=False)
    dead, live_process = dead_pid(), subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        stale = workspace / f".out.partial-{dead}-0000"
        live = workspace / f".out.partial-{live_process.pid}-0000"
        retired = workspace / f".out.old-{dead}"
        for directory in (stale, live, retired):
            directory.mkdir()
            (directory / "model.safetensors").write_bytes(b"half-written")
        convert_checkpoint(workspace / "src", out, force=True, progress=False)
        assert debris(out) == [live.name]  # a concurrent run's partial is not ours to delete
    finally:
        live_process.kill()
        live_process.wait()


def run_python(script: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True,
                          cwd=REPO, env=environment, timeout=300)


def test_kill_9_while_writing_leaves_debris_that_the_next_run_removes(workspace):
    out = workspace / "out"
    killed = run_python(f"""
        import os, signal
        from paddleport.fsutil import atomic_directory
        with atomic_directory({str(out)!r}) as partial:
            (partial / "model.safetensors").write_bytes(b"half" * 1000)
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    assert killed.returncode == -signal.SIGKILL
    assert not out.exists() and any(".partial-" in name for name in debris(out))
    convert_checkpoint(workspace / "src", out, progress=False)
    assert (out / "model.safetensors").is_file() and debris(out) == []


def test_sigterm_during_convert_removes_the_partial_output(workspace):
    out = workspace / "out"
    terminated = run_python(f"""
        import os, signal, sys, time
        import paddleport.convert.converter as converter
        from paddleport.cli import main

        def terminated_while_writing(*args, **kwargs):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(30)

        converter._write_weights = terminated_while_writing
        sys.exit(main(["convert", {str(workspace / "src")!r}, {str(out)!r}]))
    """)
    assert terminated.returncode == 128 + signal.SIGTERM, terminated.stderr
    assert messages(terminated.stderr) == ["paddleport: terminated (SIGTERM)"]
    assert not out.exists() and debris(out) == []


def test_a_second_convert_into_an_out_being_written_is_refused(workspace):
    out = workspace / "out"
    with atomic_directory(out) as partial:  # the first writer, still at work
        (partial / "first.txt").write_text("first run")
        second = subprocess.run([sys.executable, "-m", "paddleport", "convert", str(workspace / "src"), str(out),
                                 "--force"], capture_output=True, text=True, cwd=REPO, timeout=300,
                                env={**os.environ, "PYTHONPATH": str(REPO)})
        assert second.returncode == 2
        assert messages(second.stderr) == [
            f"paddleport: error: {out}: another paddleport process is writing it now (lock .out.lock held); "
            f"wait for it to finish"]
        assert (partial / "first.txt").is_file() and not out.exists()
    assert sorted(path.name for path in out.iterdir()) == ["first.txt"] and debris(out) == []
