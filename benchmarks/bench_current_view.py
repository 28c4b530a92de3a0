"""What applications will read, at scale: the current view of about 1M versions, side by side with `compare`.

Run from the repository root: `python -m benchmarks.bench_current_view`. A fresh child process
loads bench_compare's synthetic inputs, runs `compare` as of a point in time in the middle of the
versions' history, then the current view over the same snapshots, and reports the current view's
seconds as a ratio of compare's (measured in the same process, one after the other) and the
process's peak resident memory. Goal: the current view takes at most 1.5 times compare's time (phase
07 at most a little over twice as long), and the peak stays within compare's 1.5 GB.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from benchmarks.bench_compare import GOAL_BYTES, _write_inputs
from runbook_lib.current_view import compare_current
from runbook_lib.scope import JobScope
from runbook_lib.verify import compare

__all__ = ["main"]

GOAL_RATIO = 1.5


def _measure(folder: Path) -> dict[str, float]:
    """Load the inputs, time compare and then the current view, and return the figures."""
    vault = pd.read_parquet(folder / "vault.parquet")
    recovery = pd.read_parquet(folder / "recovery.parquet")
    times = pd.to_datetime(vault["last_modified"], utc=True)
    scope = JobScope(("REPLICA",), as_of=(times.min() + (times.max() - times.min()) / 2).to_pydatetime())
    recovery = recovery[pd.to_datetime(recovery["last_modified"], utc=True) < pd.Timestamp(scope.as_of)]
    recovery = recovery.reset_index(drop=True)
    start = time.perf_counter()
    result = compare(vault, recovery, scope=scope)
    compare_seconds = time.perf_counter() - start
    expected = result.details.loc[result.details["expected"].to_numpy(bool), ["key", "version_id"]]
    start = time.perf_counter()
    view = compare_current(vault, recovery, scope, expected)
    view_seconds = time.perf_counter() - start
    return {
        "compare_seconds": compare_seconds,
        "view_seconds": view_seconds,
        "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,  # kilobytes on Linux
        "vault_rows": len(vault),
        "keys": len(view.rows),
        "differing": int((~view.rows["same"]).sum()),
    }


def _child(step: str, folder: str) -> str:
    """Run one step of this benchmark in a fresh interpreter and return what it printed."""
    done = subprocess.run([sys.executable, "-m", "benchmarks.bench_current_view", step, folder], check=True,
                          capture_output=True, text=True)
    return done.stdout


def main() -> int:
    """Build the inputs, measure in a child process, and print the ratio and the memory."""
    with tempfile.TemporaryDirectory() as tmp:
        _child("--write", tmp)
        figures = json.loads(_child("--measure", tmp).strip().splitlines()[-1])
    ratio = figures["view_seconds"] / figures["compare_seconds"]
    peak = figures["peak_rss"]
    print(f"current view: {figures['vault_rows']:,} vault versions, {figures['keys']:,} keys, "
          f"{figures['differing']:,} differing, as of the middle of their history")
    print(f"  current view / compare seconds  {ratio:5.2f}   (goal <= {GOAL_RATIO})")
    print(f"  peak RSS (both)                 {peak / 1e9:5.2f} GB   peak/goal {peak / GOAL_BYTES:.2f}")
    return 0 if ratio <= GOAL_RATIO and peak <= GOAL_BYTES else 1


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--write":
        _write_inputs(Path(sys.argv[2]))
        sys.exit(0)
    if len(sys.argv) == 3 and sys.argv[1] == "--measure":
        print(json.dumps(_measure(Path(sys.argv[2]))))
        sys.exit(0)
    sys.exit(main())
