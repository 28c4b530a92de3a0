"""Snapshot of 10,000 versions behind 20 ms of latency: ours, the naive script, and a bare parallel HEAD loop.

Run from the repository root: `python -m benchmarks.bench_snapshot [--versions N] [--sample N]`.

The embedded backend runs in a child process (`runbook backend --objects N --latency-ms 20`), so the
client and the server never share an interpreter lock; every request waits 20 ms in the server, as
a round trip to AWS would. All three ways use the same client (`accounts.make_client`) and, for the
parallel ones, the same 16 threads. Listing time counts in all three:

(a) ours: `snapshot_bucket(..., workers=16)`, which lists and HEADs at the same time and, to tell
    "none" from "unknown", also asks GetObjectRetention / GetObjectLegalHold about each version whose
    HEAD lacks that field (most versions carry no legal hold, so most get a second call);
(b) the naive script: list every version, then for each one, one after the other, head_object +
    get_object_retention + get_object_legal_hold. At 3 x 20 ms per version that would take about ten
    minutes, so it runs on a random sample and the per-version time is extrapolated linearly;
    its listing time is the one measured for (c);
(c) the ceiling: list every version first, then HEAD them with a bare 16-thread loop (no
    readability probe, no progress, no DataFrame).

Goals: (b) / (a) >= 10, and (a)'s throughput >= 0.7 of (c)'s, i.e. (c) / (a) in seconds >= 0.7.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import queue
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

__all__ = ["main"]

VERSIONS = 10_000
SAMPLE = 500
LATENCY_MS = 20
WORKERS = 16
RANDOM_SEED = 1
READY_TIMEOUT_SECONDS = 300
SPEEDUP_GOAL = 10.0
CEILING_GOAL = 0.7
_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Server:
    """The backend child process and what it printed about itself."""

    process: subprocess.Popen[str]
    endpoint: str
    config_file: Path
    seeded: int


# ------------------------------------------------------------------------------ the backend


def _read_lines(process: subprocess.Popen[str], lines: queue.SimpleQueue[str | None]) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        lines.put(line.rstrip("\n"))
    lines.put(None)


def _wait_until_seeded(process: subprocess.Popen[str], config_file: Path) -> Server:
    """Return the server once it printed that its vault is seeded, or raise with what it printed."""
    lines: queue.SimpleQueue[str | None] = queue.SimpleQueue()
    threading.Thread(target=_read_lines, args=(process, lines), daemon=True).start()
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    endpoint, seeded = "", 0
    printed: list[str] = []
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            break
        if line is None:
            raise RuntimeError("the backend exited before it was ready:\n" + "\n".join(printed))
        printed.append(line)
        if match := re.match(r"embedded AWS listening on (\S+)", line):
            endpoint = match.group(1)
        if match := re.match(r"seeded vault bucket \S+: (\d+) versions", line):
            seeded = int(match.group(1))
        if line.startswith("press Ctrl-C"):
            return Server(process, endpoint, config_file, seeded)
    raise RuntimeError(f"the backend was not ready within {READY_TIMEOUT_SECONDS} s:\n" + "\n".join(printed))


@contextmanager
def seeded_backend(versions: int, folder: Path, *options: str) -> Iterator[Server]:
    """Run `runbook backend` seeded with `versions` versions (and its `options`) in a child process."""
    config_file = folder / "aws-config"
    command = [sys.executable, "-m", "runbook_lib.cli", "backend", "--port", "0", "--objects", str(versions),
               *options, "--config-file", str(config_file)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=_ROOT)
    try:
        yield _wait_until_seeded(process, config_file)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _backend(versions: int, folder: Path) -> contextlib.AbstractContextManager[Server]:
    """Run `runbook backend` seeded with `versions` versions and 20 ms latency in a child process."""
    return seeded_backend(versions, folder, "--random-seed", str(RANDOM_SEED), "--latency-ms", str(LATENCY_MS))


def _vault_client(config_file: Path) -> Any:
    """Return the vault account's S3 client, with credentials resolved and a connection made."""
    from runbook_lib.accounts import make_client, session_for
    from runbook_lib.embedded.seed import VAULT_BUCKET
    from runbook_lib.embedded.server import REGION, VAULT_PROFILE

    os.environ["AWS_CONFIG_FILE"] = str(config_file)
    os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    s3 = make_client(session_for(VAULT_PROFILE, REGION), "s3")
    # The role is assumed on the first call: do it before any clock starts.
    s3.list_object_versions(Bucket=VAULT_BUCKET, MaxKeys=1)
    return s3


# ------------------------------------------------------------------------------ the three ways


def _ours(s3: Any, bucket: str) -> tuple[float, int]:
    """Return seconds and rows of snapshot_bucket with 16 workers."""
    from runbook_lib.snapshot import snapshot_bucket

    started = time.perf_counter()
    frame = snapshot_bucket(s3, bucket, workers=WORKERS)
    seconds = time.perf_counter() - started
    if frame["head_error"].notna().any():
        raise RuntimeError(f"{int(frame['head_error'].notna().sum())} HEADs failed in the snapshot")
    return seconds, len(frame)


def _list_versions(s3: Any, bucket: str) -> tuple[float, list[tuple[str, str]], int]:
    """Return seconds to list, the (key, version id) of every object version, and the delete markers."""
    started = time.perf_counter()
    versions: list[tuple[str, str]] = []
    markers = 0
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        versions.extend((v["Key"], v["VersionId"]) for v in page.get("Versions", []))
        markers += len(page.get("DeleteMarkers", []))
    return time.perf_counter() - started, versions, markers


def _bare_heads(s3: Any, bucket: str, versions: list[tuple[str, str]]) -> float:
    """Return seconds to HEAD every version with a plain 16-thread pool."""

    def head(version: tuple[str, str]) -> Any:
        return s3.head_object(Bucket=bucket, Key=version[0], VersionId=version[1])

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        for _ in pool.map(head, versions):
            pass
    return time.perf_counter() - started


def _naive_seconds_per_version(s3: Any, bucket: str, sample: list[tuple[str, str]]) -> float:
    """Return the mean seconds per version of HEAD + retention + legal hold, one call after another."""
    started = time.perf_counter()
    for key, version_id in sample:
        s3.head_object(Bucket=bucket, Key=key, VersionId=version_id)
        for call in (s3.get_object_retention, s3.get_object_legal_hold):
            # A version without retention (or an archived one) answers with an error; the script moves on.
            with suppress(ClientError):
                call(Bucket=bucket, Key=key, VersionId=version_id)
    return (time.perf_counter() - started) / len(sample)


# ------------------------------------------------------------------------------ report


def main(argv: list[str] | None = None) -> int:
    """Measure the three ways in one run, print seconds and ratios, and return 0 when both goals are met."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_snapshot", description=__doc__.splitlines()[0])
    parser.add_argument("--versions", type=int, default=VERSIONS, help=f"versions to seed (default {VERSIONS:,})")
    parser.add_argument("--sample", type=int, default=SAMPLE,
                        help=f"versions the naive script reads before extrapolating (default {SAMPLE})")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    from runbook_lib.embedded.seed import VAULT_BUCKET

    saved = {name: os.environ.get(name) for name in ("AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE",
                                                      "AWS_EC2_METADATA_DISABLED")}
    try:
        with (
            tempfile.TemporaryDirectory(prefix="bench-snapshot-") as folder,
            _backend(args.versions, Path(folder)) as server,
        ):
            print(f"backend in a child process at {server.endpoint}: {server.seeded:,} versions seeded, "
                  f"{LATENCY_MS} ms added to every request; {os.cpu_count()} CPUs shared by client and server",
                  flush=True)
            s3 = _vault_client(server.config_file)
            ours_seconds, rows = _ours(s3, VAULT_BUCKET)
            list_seconds, versions, markers = _list_versions(s3, VAULT_BUCKET)
            heads_seconds = _bare_heads(s3, VAULT_BUCKET, versions)
            sample = random.Random(RANDOM_SEED).sample(versions, min(args.sample, len(versions)))
            per_version = _naive_seconds_per_version(s3, VAULT_BUCKET, sample)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

    ceiling_seconds = list_seconds + heads_seconds
    naive_seconds = list_seconds + per_version * len(versions)
    if rows != len(versions) + markers or rows != server.seeded:
        print(f"SNAPSHOT INCOMPLETE: {rows:,} rows, {len(versions) + markers:,} listed, {server.seeded:,} seeded")
        return 1
    speedup = naive_seconds / ours_seconds
    ceiling_ratio = ceiling_seconds / ours_seconds
    print(f"{len(versions):,} object versions + {markers:,} delete markers; listing counted in (a), (b) and (c)")
    print(f"  (a) ours: snapshot_bucket, {WORKERS} workers      {ours_seconds:8.1f} s   "
          f"{len(versions) / ours_seconds:6.0f} versions/s")
    print(f"  (b) naive: sequential HEAD+retention+hold {naive_seconds:8.1f} s   "
          f"{len(versions) / naive_seconds:6.0f} versions/s   (extrapolated: {per_version * 1000:.1f} ms/version "
          f"measured on {len(sample)} random versions, x {len(versions):,}, + {list_seconds:.1f} s listing)")
    print(f"  (c) ceiling: list, then bare {WORKERS}-thread HEADs {ceiling_seconds:8.1f} s   "
          f"{len(versions) / ceiling_seconds:6.0f} versions/s   "
          f"({list_seconds:.1f} s listing + {heads_seconds:.1f} s HEADs)")
    print(f"  (b)/(a) speed-up              {speedup:6.1f}x   goal >= {SPEEDUP_GOAL:g}")
    print(f"  (a)/(c) throughput            {ceiling_ratio:6.2f}    goal >= {CEILING_GOAL:g}")
    met = speedup >= SPEEDUP_GOAL and ceiling_ratio >= CEILING_GOAL
    print("both goals met" if met else "GOAL MISSED")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
