"""The package is fully typed (mypy strict) and the tree passes the lint, as `make check` runs them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("command", [
    ["-m", "mypy", "runbook_lib"],
    ["-m", "ruff", "check", "runbook_lib", "tests", "benchmarks"],
], ids=["mypy-strict", "ruff"])
def test_static_check_passes(command: list[str]) -> None:
    done = subprocess.run([sys.executable, *command], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
