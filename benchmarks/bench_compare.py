"""Verification at scale: about 1M vault versions against 1M recovered versions through `compare`.

Run from the repository root: `python -m benchmarks.bench_compare`. The comparison runs in a fresh
child process that first loads its inputs, so its peak resident memory (ru_maxrss) is the
comparison's own peak plus the inputs it needs. Goal: peak <= 1.5 GB.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from runbook_lib.verify import compare

__all__ = ["main"]

# About 95 % are eligible, so the recovery bucket ends up with about a million versions too.
VERSIONS = 1_050_000
GOAL_BYTES = 1.5e9
_STRING = pd.StringDtype("pyarrow")


def _vault(rng: np.random.Generator) -> pd.DataFrame:
    """Return a synthetic vault snapshot: mostly replicas under lock, some skipped kinds."""
    n = VERSIONS
    index = np.arange(n)
    kind = rng.choice(4, size=n, p=[0.95, 0.02, 0.02, 0.01])  # replica, not replica, delete marker, archived
    deleted = kind == 2
    keys = pd.array([f"data/{i % 1000:03d}/object-{i // 2:08d}.bin" for i in index], dtype=_STRING)
    versions = pd.array([f"{v:032x}" for v in rng.integers(0, 2**63, size=n)], dtype=_STRING)
    mode = pd.array(np.where(index % 3 == 0, "GOVERNANCE", "COMPLIANCE"), dtype=_STRING)
    retain = pd.Series(pd.Timestamp("2027-01-01", tz="UTC") + pd.to_timedelta(rng.integers(0, 10**10, n), "ms"))
    hold = pd.array(np.where(index % 7 == 0, "ON", "OFF"), dtype=_STRING)
    frame = pd.DataFrame(
        {
            "key": keys,
            "version_id": versions,
            "is_latest": index % 2 == 1,
            "is_delete_marker": deleted,
            "size": pd.array(np.where(deleted, 0, rng.integers(1, 10**9, n)), dtype="Int64"),
            "etag": pd.array([f'"{e:032x}"' for e in rng.integers(0, 2**63, size=n)], dtype=_STRING),
            "last_modified": pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(index, "s"),
            "storage_class": pd.array(np.where(kind == 3, "GLACIER", "STANDARD"), dtype=_STRING),
            "replication_status": pd.array(np.where(kind == 0, "REPLICA", "NONE"), dtype=_STRING),
            "encryption": pd.array(np.full(n, "aws:kms"), dtype=_STRING),
            "kms_key": pd.array(np.full(n, "arn:aws:kms:us-east-1:111111111111:key/vault"), dtype=_STRING),
            "object_lock_mode": mode,
            "object_lock_retain_until_date": retain,
            "object_lock_legal_hold_status": hold,
        }
    )
    for name in ("size", "etag", "object_lock_mode", "object_lock_legal_hold_status"):
        frame.loc[deleted, name] = pd.NA
    frame.loc[deleted, "object_lock_retain_until_date"] = pd.NaT
    return frame


def _recovery(vault: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Return the recovery snapshot: the eligible versions, with a few lost or altered."""
    replica = vault["replication_status"].eq("REPLICA")
    eligible = ~vault["is_delete_marker"] & replica & vault["storage_class"].ne("GLACIER")
    lost = rng.random(len(vault)) < 0.005
    recovery = vault[eligible & ~lost].reset_index(drop=True)
    recovery["storage_class"] = pd.array(np.full(len(recovery), "INTELLIGENT_TIERING"), dtype=_STRING)
    altered = rng.random(len(recovery))
    recovery.loc[altered < 0.001, "size"] = 1
    recovery.loc[(altered >= 0.001) & (altered < 0.002), "object_lock_mode"] = "GOVERNANCE"
    recovery.loc[(altered >= 0.002) & (altered < 0.003), "object_lock_legal_hold_status"] = "OFF"
    return recovery


def _write_inputs(folder: Path) -> None:
    """Write the synthetic vault, recovery, manifest and report as Parquet files."""
    rng = np.random.default_rng(11)
    vault = _vault(rng)
    recovery = _recovery(vault, rng)
    listed = vault["replication_status"].eq("REPLICA") & ~vault["is_delete_marker"]
    manifest = vault.loc[listed, ["key", "version_id"]]
    manifest.insert(0, "bucket", "vault")
    report = manifest.reset_index(drop=True).copy()
    failed = ~report.set_index(["key", "version_id"]).index.isin(recovery.set_index(["key", "version_id"]).index)
    statuses = np.where(failed, "failed", "succeeded")
    report["task_status"] = pd.Categorical(statuses, categories=["succeeded", "failed"])
    report["http_status"] = pd.array(np.where(failed, 500, 200), dtype="Int16")
    report["error_code"] = pd.array(np.where(failed, "DstPutObjectNotPermitted", pd.NA), dtype=_STRING)
    report["result_message"] = pd.array(np.where(failed, "Access denied", "success"), dtype=_STRING)
    for name, frame in (("vault", vault), ("recovery", recovery), ("manifest", manifest), ("report", report)):
        frame.reset_index(drop=True).to_parquet(folder / f"{name}.parquet")


def _rss_bytes() -> int:
    """Return this process's current resident memory in bytes."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize()


def _measure(folder: Path) -> dict[str, float]:
    """Load the inputs, run compare once, and return seconds and memory figures."""
    names = ("vault", "recovery", "manifest", "report")
    inputs = {name: pd.read_parquet(folder / f"{name}.parquet") for name in names}
    loaded = _rss_bytes()
    start = time.perf_counter()
    result = compare(
        inputs["vault"],
        inputs["recovery"],
        manifest=inputs["manifest"],
        report=inputs["report"],
        expected_statuses={"REPLICA"},
    )
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux
    return {
        "seconds": seconds,
        "inputs_rss": loaded,
        "peak_rss": peak,
        "vault_rows": len(inputs["vault"]),
        "recovery_rows": len(inputs["recovery"]),
        "detail_rows": len(result.details),
        "missing": result.counts["missing"],
        "failed_tasks": result.counts["failed_tasks"],
    }


def _child(step: str, folder: str) -> str:
    """Run one step of this benchmark in a fresh interpreter and return what it printed."""
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_compare", step, folder], check=True, capture_output=True, text=True
    )
    return done.stdout


def main() -> int:
    """Build the inputs, measure compare in a child process, and print time and memory."""
    with tempfile.TemporaryDirectory() as tmp:
        # Both steps run in children: Linux carries a parent's peak RSS into a forked child, so
        # this process must stay small for the measuring child's ru_maxrss to mean anything.
        _child("--write", tmp)
        figures = json.loads(_child("--measure", tmp).strip().splitlines()[-1])
    peak = figures["peak_rss"]
    print(
        f"compare: {figures['vault_rows']:,} vault versions vs {figures['recovery_rows']:,} recovered "
        f"(+ manifest and report), {figures['detail_rows']:,} detail rows"
    )
    print(f"  seconds                 {figures['seconds']:7.2f}")
    print(f"  RSS with inputs loaded  {figures['inputs_rss'] / 1e9:7.2f} GB")
    print(f"  peak RSS                {peak / 1e9:7.2f} GB   peak/goal {peak / GOAL_BYTES:.2f} (goal <= 1.5 GB)")
    print(f"  added by compare        {(peak - figures['inputs_rss']) / 1e9:7.2f} GB")
    return 0 if peak <= GOAL_BYTES else 1


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--write":
        _write_inputs(Path(sys.argv[2]))
        sys.exit(0)
    if len(sys.argv) == 3 and sys.argv[1] == "--measure":
        print(json.dumps(_measure(Path(sys.argv[2]))))
        sys.exit(0)
    sys.exit(main())
