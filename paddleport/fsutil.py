"""Safe output directories: built in a hidden sibling, swapped into place only when complete, never over what a
command reads, one writer at a time, and no debris left by a killed run.

- ``check_output_target(out, reads_from)`` refuses an OUT that is, or contains, a directory the command reads
  (compared as resolved paths, so symlinks and ``..`` aliases are caught).
- ``atomic_directory(out, replace, reads_from)`` takes an exclusive lock beside OUT (``.OUT.lock``), removes the
  partial directories of earlier runs that died, builds ``.OUT.partial-PID-XXXX`` with ``os.mkdir`` (so the
  modes are those of a plain ``mkdir``: 0777 & ~umask), and puts it in place with one atomic rename.
- ``exclusive_lock(path, owner)``: ``fcntl.flock`` on a lock file, refused at once (one line, exit 2) when
  another process holds it; the kernel releases it when its holder exits, however it exits.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import fcntl
import os
import secrets
import shutil
import signal
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

from paddleport.errors import PaddleportError

AT_FDCWD = -100
RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2


def _load_renameat2():
    """glibc's ``renameat2`` (2.28+), or None (other C libraries, old glibc)."""
    try:
        function = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    function.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint)
    function.restype = ctypes.c_int
    return function


_RENAMEAT2 = _load_renameat2()


def _renameat2(source: Path, target: Path, flags: int) -> bool:
    """True when done; False when this system or file system lacks the call or the flag (the caller falls
    back to plain renames); any other failure raises OSError."""
    if _RENAMEAT2 is None:
        return False
    if _RENAMEAT2(AT_FDCWD, os.fsencode(source), AT_FDCWD, os.fsencode(target), flags) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(target))


# ---------------------------------------------------------------------------------------- what may be replaced


def _contains(outer: Path, inner: Path) -> bool:
    return inner == outer or outer in inner.parents


def check_output_target(out: Path, reads_from: Iterable[Path | str | None] = ()) -> None:
    """Refuse to write ``out`` when it is, or contains, a path the command reads (resolved: symlinks, ``..``)."""
    target = Path(out).resolve()
    for source in reads_from:
        if source is None:
            continue
        resolved = Path(source).resolve()
        if _contains(target, resolved):
            what = "is" if target == resolved else "contains"
            raise PaddleportError(out, f"{what} {source}, which this command reads; choose another output "
                                       f"directory (nothing was changed)")


# ---------------------------------------------------------------------------------------- locks


@contextmanager
def exclusive_lock(lock_path: Path, owner: str) -> Iterator[None]:
    """Hold ``fcntl.flock`` on ``lock_path`` (created if needed); another holder -> PaddleportError(owner).

    The file is removed on release. Who locks a file that was just removed (its inode no longer at the path)
    tries again on the new one, so two processes never both believe they hold the lock.
    """
    lock_path = Path(lock_path)
    while True:
        descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            raise PaddleportError(owner, "another paddleport process is writing it now "
                                         f"(lock {lock_path.name} held); wait for it to finish") from None
        try:
            same_file = os.path.samestat(os.fstat(descriptor), os.stat(lock_path))
        except FileNotFoundError:
            same_file = False
        if same_file:
            break
        os.close(descriptor)
    try:
        yield
    finally:
        try:
            lock_path.unlink()
        except FileNotFoundError:
            pass
        os.close(descriptor)


# ---------------------------------------------------------------------------------------- debris of killed runs


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _owner_pid(name: str, marker: str) -> int | None:
    """The pid in ``.OUT.partial-PID-XXXX`` / ``.OUT.old-PID`` names; None for other names."""
    head = name.split(marker, 1)[1].split("-", 1)[0]
    return int(head) if head.isdigit() else None


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def remove_stale_debris(out: Path) -> list[Path]:
    """Partial (and retired) directories of OUT left by runs that were killed; only those whose owning process
    is gone. A retired OUT whose replacement never arrived is put back. Returns what was removed."""
    out = Path(out)
    removed = []
    for marker in (".partial-", ".old-"):
        for path in out.parent.glob(f".{out.name}{marker}*"):
            pid = _owner_pid(path.name[len(out.name) + 1:], marker)
            if pid is None or pid == os.getpid() or _pid_alive(pid):
                continue
            if marker == ".old-" and not os.path.lexists(out):
                os.rename(path, out)  # killed between the two renames of the fallback swap
                continue
            _remove(path)
            removed.append(path)
    return removed


# ---------------------------------------------------------------------------------------- SIGTERM


class Terminated(BaseException):
    """Raised in the main thread on SIGTERM by :func:`raise_on_sigterm`, so that ``finally`` blocks (removal of
    partial output) run as for Ctrl-C."""


@contextmanager
def raise_on_sigterm() -> Iterator[None]:
    """While inside, SIGTERM raises :class:`Terminated` (main thread only; the previous handler is restored)."""
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL or not _in_main_thread():
        yield
        return

    def terminate(signum, frame):
        raise Terminated(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


# ---------------------------------------------------------------------------------------- atomic output


def _swap_into_place(partial: Path, out: Path) -> None:
    """Replace ``out`` (a directory, file or symlink) by ``partial`` with no moment where ``out`` is absent.

    ``rename(2)`` cannot replace a non-empty directory, so the swap is ``renameat2(RENAME_EXCHANGE)`` (Linux
    3.15+, glibc 2.28+; ext4, xfs, btrfs, tmpfs all support it): one atomic exchange, then the old content,
    now under the partial name, is removed. Where the call or flag is missing the fallback is two renames
    (OUT -> ``.OUT.old-PID``, partial -> OUT), whose gap a killed run repairs on the next run
    (:func:`remove_stale_debris` puts the retired directory back).
    """
    if _renameat2(partial, out, RENAME_EXCHANGE):
        _remove(partial)  # now the previous OUT
        return
    retired = out.with_name(f".{out.name}.old-{os.getpid()}")
    os.rename(out, retired)
    os.rename(partial, out)
    _remove(retired)


def _move_into_place(partial: Path, out: Path) -> None:
    """``partial`` becomes ``out``, which must not exist (an OUT created meanwhile is not overwritten)."""
    try:
        if _renameat2(partial, out, RENAME_NOREPLACE):
            return
    except FileExistsError:
        raise PaddleportError(out, "appeared while it was being written; nothing was replaced") from None
    if os.path.lexists(out):
        raise PaddleportError(out, "appeared while it was being written; nothing was replaced")
    os.rename(partial, out)


def _apply_plain_modes(root: Path) -> None:
    """Give everything under ``root`` the modes a plain ``mkdir`` / ``open`` would: 0777 & ~umask for
    directories, 0666 & ~umask for files. Some writers are stricter on their own (safetensors' ``save_file``
    makes 0600 files), which would hide a model from the other users of a shared directory. The umask is read
    off ``root`` itself, made by ``os.mkdir(root)`` (changing the process umask to read it is not thread-safe)."""
    directory_mode = root.stat().st_mode & 0o777
    file_mode = directory_mode & 0o666
    for folder, directories, files in os.walk(root):
        for names, mode in ((directories, directory_mode), (files, file_mode)):
            for name in names:
                path = os.path.join(folder, name)
                if not os.path.islink(path):  # a link's target may lie outside: leave it alone
                    os.chmod(path, mode)


@contextmanager
def atomic_directory(out: Path, replace: bool = False,
                     reads_from: Iterable[Path | str | None] = ()) -> Iterator[Path]:
    """Yield a fresh directory beside ``out``; on success it becomes ``out`` (replacing it if ``replace``).

    Refused with one line (nothing touched) when ``out`` is or contains a path in ``reads_from``, when it exists
    and ``replace`` is false, or when another process is writing it. On any error, an interruption or
    SIGTERM the partial directory is removed and ``out`` is untouched.
    """
    out = Path(os.path.abspath(out))  # "." and "x/.." get a name to put the partial and lock beside
    check_output_target(out, reads_from)
    out.parent.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(out.with_name(f".{out.name}.lock"), out), raise_on_sigterm():
        if os.path.lexists(out) and not replace:
            raise PaddleportError(out, "already exists (pass --force to replace it)")
        remove_stale_debris(out)
        partial = out.with_name(f".{out.name}.partial-{os.getpid()}-{secrets.token_hex(4)}")
        os.mkdir(partial)  # 0777 & ~umask, as a plain mkdir (tempfile.mkdtemp would make it 0700)
        try:
            yield partial
            _apply_plain_modes(partial)
            if os.path.lexists(out):
                _swap_into_place(partial, out)
            else:
                _move_into_place(partial, out)
        except BaseException as error:
            _remove(partial)
            if isinstance(error, OSError) and error.filename is None:
                error.filename = str(out)  # a failed write (ENOSPC) names no file: name the output being written
            raise
