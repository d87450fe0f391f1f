"""``paddleport diff``: argparse and loading the user's files; the work is ``paddleport.parity.diff``.

``--torch`` / ``--paddle`` / ``--rules`` run the user's own Python code (their model factories and rules file),
by design, as ``python -m`` would; ``--inputs`` is data only (``.npz`` read with ``allow_pickle=False``).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
import zipfile
from pathlib import Path

import numpy as np

from paddleport.errors import PaddleportError

USER_CODE = ("--torch, --paddle and --rules import and run your own Python code (model factories, rules file) "
             "exactly as `python` would: give only code you trust. --inputs is read as data only "
             "(numpy .npz, no pickles).")
RULES_FILE = ("A rules file is Python defining RULES (a list of paddleport.convert.table.Rule or (torch pattern, "
              "paddle pattern[, transform]) tuples; {name} matches one name segment; a rule naming a module renames "
              "everything under it) and optionally TOLERANCES ({fnmatch pattern: (rtol, atol)}), LOSS "
              "((torch_loss(output), paddle_loss(output))), OPTIMIZER (a function torch_model -> (optimizer, "
              "scheduler or None), used by --steps; default AdamW lr 1e-3) and MAX_GRAD_NORM.")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "diff", help="where a hand-written Paddle port first differs from its torch model",
        description="Copy the torch model's weights into the Paddle port through rules, hook every sub-module of "
                    "both, match them by name, and compare outputs in forward order (max |Δ|, mean |Δ|, max rel "
                    "|Δ|, elements over tolerance), gradients and optionally N training steps. Prints the model "
                    "tree with the first divergence marked. Exit 0 on pass, 1 on a divergence, 2 on bad input. "
                    + USER_CODE + " " + RULES_FILE)
    parser.add_argument("--torch", required=True, metavar="MODULE:FACTORY",
                        help="torch model factory: a module name or a .py file, and a function returning the model")
    parser.add_argument("--paddle", required=True, metavar="MODULE:FACTORY", help="Paddle port factory, likewise")
    parser.add_argument("--inputs", required=True, type=Path, metavar="FILE.npz",
                        help="inputs: named arrays are keyword arguments of both forwards; arr_0, arr_1, ... "
                             "(np.savez without names) positional")
    parser.add_argument("--rules", type=Path, metavar="FILE.py", help="rules file (see above); default: same names")
    parser.add_argument("--single-step", action="store_true",
                        help="feed every matched Paddle layer the inputs its torch module received")
    parser.add_argument("--train", action="store_true", help="compare in training mode (dropout on, shared masks)")
    parser.add_argument("--no-grad", action="store_true", help="skip the gradient comparison")
    parser.add_argument("--no-copy-weights", action="store_true", help="keep the Paddle port's own weights")
    parser.add_argument("--steps", type=int, default=0, metavar="N", help="also compare N optimizer steps")
    parser.add_argument("--json", type=Path, dest="json_path", metavar="R", help="write the report as JSON here")
    parser.set_defaults(func=run_diff, frameworks=("torch", "paddle"))


def run_diff(args: argparse.Namespace) -> int:
    if args.steps < 0:
        raise PaddleportError("--steps", f"must be >= 0, got {args.steps}")
    inputs = load_inputs(args.inputs)
    settings = load_rules_file(args.rules) if args.rules else {}
    torch_model = load_factory(args.torch, "--torch", "torch.nn.Module")
    paddle_model = load_factory(args.paddle, "--paddle", "paddle.nn.Layer")
    optimizer = scheduler = None
    if args.steps:
        make_optimizer = settings.get("OPTIMIZER", default_optimizer)
        optimizer, scheduler = make_optimizer(torch_model)
    from paddleport.parity import diff

    report = diff(torch_model, paddle_model, inputs, rules=settings.get("RULES"),
                  copy_weights=not args.no_copy_weights, grad=not args.no_grad, steps=args.steps,
                  single_step=args.single_step, train=args.train, tolerances=settings.get("TOLERANCES"),
                  loss_fn=settings.get("LOSS"), optimizer=optimizer, scheduler=scheduler,
                  max_grad_norm=settings.get("MAX_GRAD_NORM"))
    print(report.markdown())
    print()
    print(report.summary())
    if args.json_path:
        print(f"report written to {report.write_json(args.json_path)}")
    return 0 if report.passed else 1


def default_optimizer(torch_model):
    import torch

    return torch.optim.AdamW(torch_model.parameters(), lr=1e-3), None


def load_inputs(path: Path) -> dict[str, np.ndarray] | tuple:
    """Named arrays -> keyword arguments; only arr_0, arr_1, ... -> positional (data only: no pickles)."""
    if not path.is_file():
        raise PaddleportError(path, "no such inputs file")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as error:
        raise PaddleportError(path, f"not a numpy .npz of plain arrays ({str(error).splitlines()[0]})") from None
    if not arrays:
        raise PaddleportError(path, "holds no arrays")
    positional = [f"arr_{index}" for index in range(len(arrays))]
    return tuple(arrays[name] for name in positional) if sorted(arrays) == sorted(positional) else arrays


def _import_user_module(spec: str, option: str):
    """A module by dotted name (the working directory first on the path, as ``python -m``) or a .py file."""
    if spec.endswith(".py") or os.sep in spec:
        path = Path(spec)
        if not path.is_file():
            raise PaddleportError(option, f"no such file {spec}")
        sys.path.insert(0, os.getcwd())
        module_spec = importlib.util.spec_from_file_location(f"paddleport_user_{path.stem}", path)
        module = importlib.util.module_from_spec(module_spec)
        try:
            module_spec.loader.exec_module(module)
        except Exception as error:  # noqa: BLE001 (the user's code failed: one line naming it)
            raise PaddleportError(option, f"{spec} failed to import: {type(error).__name__}: {error}") from None
        return module
    sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(spec)
    except ModuleNotFoundError as error:
        raise PaddleportError(option, f"no module {error.name!r} (a dotted module name or a .py file)") from None
    except Exception as error:  # noqa: BLE001
        raise PaddleportError(option, f"{spec} failed to import: {type(error).__name__}: {error}") from None


def load_factory(value: str, option: str, kind: str):
    module_spec, _, attribute = value.rpartition(":")
    if not module_spec or not attribute:
        raise PaddleportError(option, f"expected MODULE:FACTORY, got {value!r}")
    factory = getattr(_import_user_module(module_spec, option), attribute, None)
    if not callable(factory):
        raise PaddleportError(option, f"{module_spec} has no function {attribute!r}")
    model = factory()
    expected = _model_class(kind)
    if not isinstance(model, expected):
        raise PaddleportError(option, f"{value} returned a {type(model).__name__}, not a {kind}")
    return model


def _model_class(kind: str):
    if kind.startswith("torch"):
        import torch

        return torch.nn.Module
    import paddle

    return paddle.nn.Layer


def load_rules_file(path: Path) -> dict:
    module = _import_user_module(str(path), "--rules")
    settings = {name: getattr(module, name) for name in ("RULES", "TOLERANCES", "LOSS", "OPTIMIZER", "MAX_GRAD_NORM")
                if hasattr(module, name)}
    if not settings:
        raise PaddleportError(path, "defines none of RULES, TOLERANCES, LOSS, OPTIMIZER, MAX_GRAD_NORM")
    return settings
