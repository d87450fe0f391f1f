"""Atomic output: work in a hidden sibling directory, rename into place only when complete."""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def atomic_directory(out: Path, replace: bool = False) -> Iterator[Path]:
    """Yield a temporary directory beside ``out``; on success it becomes ``out`` (replacing it if asked).

    On any error, or an interruption, the temporary directory is removed and ``out`` is untouched.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        yield partial
        if out.exists() and replace:
            retired = out.with_name(f".{out.name}.old-{os.getpid()}")
            out.rename(retired)
            partial.rename(out)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            partial.rename(out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
