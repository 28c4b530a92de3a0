"""A whole drill at scale: its wall time against the job's own Ready-to-Complete time, and the job's task rate.

Run from the repository root: `python -m benchmarks.bench_drill_scale [--objects N] [--verify inventory|head]`,
or `--run-dir DIR` to read the figures of a drill that already ran (`runbook drill --objects 1000000
--verify inventory --out DIR`). The drill runs as `runbook drill` in a child process; its peak
resident memory is the largest of the drill process (the embedded backend with the job runner
and the seeded vault) and the phase kernels.

In a run it prints the ratio twice: the whole command (which also seeds the vault and its
inventory) and the phases alone (summary.json's phase timings). The job's Ready-to-Complete time
comes from the watcher's observations in the run state (one a second): from the first
observation in Ready or Active to the first in Complete. Goals: the drill
takes at most 3x the job's time; the job runs at least 11,500 tasks a second (AWS's rate when it
replicates 10^9 objects in a day).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

__all__ = ["job_figures", "main"]

GOAL_RATIO = 3.0
GOAL_TASKS_PER_SECOND = 11_500


def job_figures(run_dir: Path) -> dict[str, Any]:
    """Return the recovery job's Ready-to-Complete seconds, tasks and rate from a run folder's run state."""
    ledger = json.loads((run_dir / "ledger.json").read_text())
    jobs = [job for job in ledger["jobs"].values() if str(job.get("purpose", "")).startswith("recovery")]
    progress = jobs[-1]["progress"]

    def first(statuses: tuple[str, ...]) -> datetime:
        return next(datetime.fromisoformat(p["at"]) for p in progress if p["status"] in statuses)

    ready, complete = first(("Ready", "Active")), first(("Complete",))
    seconds = (complete - ready).total_seconds()
    tasks = int(progress[-1]["total"])
    return {"job_seconds": seconds, "tasks": tasks, "tasks_per_second": tasks / seconds if seconds else 0.0,
            "active_seconds": progress[-1]["active_seconds"]}


def _report(drill_seconds: float, figures: dict[str, Any], peak_bytes: int | None, verdict: str,
            phase_seconds: float | None = None) -> int:
    ratio = drill_seconds / figures["job_seconds"]
    print(f"verdict {verdict}; drill {drill_seconds:,.0f} s; job Ready to Complete {figures['job_seconds']:,.0f} s "
          f"({figures['tasks']:,} tasks)")
    print(f"drill/job: {ratio:.2f}x (goal <= {GOAL_RATIO}x)")
    if phase_seconds is not None:
        # The whole command also seeds the vault; the phases are what a recovery itself takes.
        print(f"phases/job: {phase_seconds / figures['job_seconds']:.2f}x ({phase_seconds:,.0f} s in summary.json)")
    print(f"job: {figures['tasks_per_second']:,.0f} tasks/s (goal >= {GOAL_TASKS_PER_SECOND:,})")
    if peak_bytes is not None:
        print(f"peak memory of the drill's processes: {peak_bytes / 1e9:.2f} GB")
    return 0 if verdict == "PASS" else 1


def main(argv: list[str] | None = None) -> int:
    """Run (or read) a drill and print its wall time, the job's time, their ratio and the task rate."""
    parser = argparse.ArgumentParser(prog="bench_drill_scale")
    parser.add_argument("--objects", type=int, default=20_000)
    parser.add_argument("--verify", choices=["head", "inventory"], default="inventory")
    parser.add_argument("--run-dir", type=Path, default=None, help="read a finished drill instead of running one")
    parser.add_argument("--drill-seconds", type=float, default=None, help="with --run-dir: its measured wall time")
    args = parser.parse_args(argv if argv is not None else sys.argv[1:])
    if args.run_dir is not None:
        summary = json.loads((args.run_dir / "summary.json").read_text())
        seconds = args.drill_seconds or sum(float(p["seconds"]) for p in summary["phases"])
        return _report(seconds, job_figures(args.run_dir), None, summary["verdict"])
    with tempfile.TemporaryDirectory(prefix="bench-drill-") as folder:
        out = Path(folder) / "drill"
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "runbook_lib.cli", "drill", "--objects", str(args.objects),
                               "--verify", args.verify, "--out", str(out)], capture_output=True, text=True)
        seconds = time.perf_counter() - started
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
        if not (out / "summary.json").exists():
            print(done.stdout[-2000:], done.stderr[-2000:])
            return 1
        summary = json.loads((out / "summary.json").read_text())
        print(f"{args.objects:,} versions, verified by {args.verify}")
        return _report(seconds, job_figures(out), peak, summary["verdict"],
                       sum(float(p["seconds"]) for p in summary["phases"]))


if __name__ == "__main__":
    sys.exit(main())
