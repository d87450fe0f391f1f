"""``make test-mutations``: apply each deliberate Paddle-side bug of ``tests/mutations/mutations.py`` in turn, run
the subset of ``make test`` that should catch it, and report which test caught it; exit 1 if any bug survives.

The bug is applied at run time in every Python process (pytest and the subprocesses its tests start) by a
``sitecustomize`` on PYTHONPATH that reads PADDLEPORT_MUTATION, so it follows the code through refactors.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHIM = Path(__file__).resolve().parent / "shim"

PARITY_DROPOUT_OFF = ["tests/test_glue_parity.py", "-k", "test_twenty_steps_agree and BertModel and dropout-off "
                                                         "and not Squeeze"]
FORWARD = ["tests/test_models_parity.py", "-k", "test_converted_tiny_model_matches_transformers"]
# mutation -> the tests (pytest arguments) expected to catch it
SUBSETS = {
    "nan-weight": ["tests/test_parity_compare.py", "-k", "test_forward_parity_every_head and BertModel"],
    "weight-decay-off": PARITY_DROPOUT_OFF,
    "layernorm-decayed": PARITY_DROPOUT_OFF,
    "tanh-gelu": FORWARD,
    "layernorm-eps-1e-5": FORWARD,
    "attention-mask-ignored": FORWARD,
    "no-linear-transpose": FORWARD,
    "dropout-masks-not-shared": ["tests/test_glue_parity.py", "-k",
                                 "test_twenty_steps_agree and BertModel and shared-dropout and not Squeeze"],
    "resume-from-step-0": ["tests/test_glue_runner.py", "-k", "test_resume_after_interruption_equals_uninterrupted "
                                                             "and paddle"],
}


def run_mutation(name: str, work: Path) -> tuple[list[str], float]:
    """The tests that failed under mutation ``name`` (empty: the bug survived), and the wall time."""
    report = work / f"{name}.xml"
    environment = {**os.environ, "PADDLEPORT_MUTATION": name,
                   "PYTHONPATH": os.pathsep.join([str(SHIM), str(REPO), os.environ.get("PYTHONPATH", "")])}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", f"--junitxml={report}",
                    *SUBSETS[name]], cwd=REPO, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    failed = []
    if report.exists():
        for case in ElementTree.parse(report).getroot().iter("testcase"):
            failure = case.find("failure")
            if failure is not None:  # an assertion, not a set-up error of the harness
                message = (failure.get("message") or "").splitlines()[0][:90]
                failed.append(f"{case.get('classname')}::{case.get('name')} ({message})")
    return failed, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    from tests.mutations.mutations import MUTATIONS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"mutations to run (default: all: {', '.join(MUTATIONS)})")
    parser.add_argument("--work-dir", type=Path, default=REPO / "build" / "mutations")
    args = parser.parse_args(argv)
    assert set(SUBSETS) == set(MUTATIONS), "every mutation needs its test subset"
    args.work_dir.mkdir(parents=True, exist_ok=True)
    survivors = []
    print(f"{'mutation':<26} {'caught':<7} {'s':>6}  caught by")
    for name in args.names or list(MUTATIONS):
        failed, seconds = run_mutation(name, args.work_dir)
        print(f"{name:<26} {'yes' if failed else 'NO':<7} {seconds:>6.0f}  {failed[0] if failed else '-'}", flush=True)
        if not failed:
            survivors.append(name)
    print(f"{len(args.names or MUTATIONS) - len(survivors)} caught, {len(survivors)} survived"
          + (f": {', '.join(survivors)}" if survivors else ""))
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main())
