"""Thin command line: argparse parses, a library function does the work, this prints.

Each command module exposes ``register(subparsers)``, which adds its sub-command and sets
``func`` to a callable taking the parsed namespace and returning an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys

from paddleport import runtime
from paddleport.errors import PaddleportError
from paddleport.fsutil import Terminated

COMMAND_MODULES = (
    "paddleport.convert.cli",
    "paddleport.parity.cli",
    "paddleport.parity.porting.cli",
    "paddleport.glue_runners.cli",
    "paddleport.peft.cli",
    "paddleport.memory_cli",
    "paddleport.demo",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="paddleport", description="PaddlePaddle <-> PyTorch porting and parity toolkit for BERT-family encoders")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as missing:
            if missing.name == module_name:
                continue  # a command module not written yet
            raise
        module.register(subparsers)
    return parser


def runtime_options(args: argparse.Namespace) -> dict:
    """What :func:`paddleport.runtime.setup` needs from a command's options: its device, threads and the
    frameworks it runs (a command that runs none, such as convert, sets ``frameworks=()``)."""
    frameworks = (args.framework,) if getattr(args, "framework", None) else getattr(args, "frameworks", None)
    return {"device": getattr(args, "device", "cpu"),
            "threads": getattr(args, "num_threads", None) or getattr(args, "threads", None),
            "frameworks": runtime.FRAMEWORKS if frameworks is None else frameworks}


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser().parse_args(argv))


def run_command(args: argparse.Namespace) -> int:
    """``args.func(args)``; bad input and a failing disk become one line on stderr and exit code 2."""
    try:
        with runtime.setup(**runtime_options(args)):  # before any work, and before paddle is imported
            return int(args.func(args) or 0)
    except PaddleportError as error:
        print(f"paddleport: error: {error}", file=sys.stderr)
        return error.exit_code
    except OSError as error:  # a full disk, a read-only or vanished directory: the machine, not the input
        where = error.filename or "output"
        print(f"paddleport: error: {where}: {error.strerror or error}", file=sys.stderr)
        return PaddleportError.exit_code
    except KeyboardInterrupt:
        print("paddleport: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("paddleport: terminated (SIGTERM)", file=sys.stderr)
        return 128 + signal.SIGTERM
