"""Loaded by every Python process started with tests/mutations/shim on PYTHONPATH (the mutation check sets it):
applies the deliberate bug named by PADDLEPORT_MUTATION, also in the subprocesses the tests start."""

import os

if os.environ.get("PADDLEPORT_MUTATION"):
    from tests.mutations.mutations import activate

    activate(os.environ["PADDLEPORT_MUTATION"])
