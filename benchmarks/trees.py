"""Run a benchmark's measurement with the code of another checkout of the project (`--against TREE`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

__all__ = ["run_in_tree"]


def run_in_tree(tree: Path, code: str, what: str) -> dict[str, float]:
    """Run `code` in a fresh Python process on `tree`'s code; return the JSON object its last line prints."""
    done = subprocess.run([sys.executable, "-c", code], cwd=tree, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(tree)}, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{what} with {tree} failed:\n{done.stderr[-2000:]}")
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures
