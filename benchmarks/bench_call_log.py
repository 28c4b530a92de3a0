"""The cost of recording every call: a vault snapshot with and without the run folder's call log, side by side.

Run from the repository root: `python -m benchmarks.bench_call_log [--versions N] [--rounds N]`.

The embedded backend runs in a child process (`runbook backend --objects N`) with no added latency,
the worst case for the log: each request is as short as it gets, so the log's share of it is the
largest it can be (on AWS a round trip takes tens of milliseconds). Two sessions of the vault
profile take turns: one as `accounts.session_for` makes it, one with a `call_log.CallLog` attached
as `accounts.open_sessions` attaches it. Each round snapshots the whole vault with 16 workers once
per session, alternating which goes first; the best time of each is kept.

Goal: with the log / without <= 1.15, and one log line per request.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.bench_snapshot import seeded_backend

__all__ = ["main"]

VERSIONS = 3_000
ROUNDS = 3
WORKERS = 16
GOAL = 1.15
_ROOT = Path(__file__).resolve().parent.parent


def _clients(config_file: Path, log_file: Path) -> tuple[Any, Any]:
    """Return the vault's S3 client without and with a call log, each with its role already assumed."""
    from runbook_lib.accounts import make_client, session_for
    from runbook_lib.call_log import CallLog
    from runbook_lib.embedded.seed import VAULT_BUCKET
    from runbook_lib.embedded.server import REGION, VAULT_ACCOUNT, VAULT_PROFILE

    os.environ["AWS_CONFIG_FILE"] = str(config_file)
    os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    plain = session_for(VAULT_PROFILE, REGION)
    logged = session_for(VAULT_PROFILE, REGION)
    CallLog(log_file, "bench").attach(logged, side="vault", account=VAULT_ACCOUNT)
    clients = (make_client(plain, "s3", region_name=REGION), make_client(logged, "s3", region_name=REGION))
    for client in clients:
        client.list_object_versions(Bucket=VAULT_BUCKET, MaxKeys=1)
    return clients


def _snapshot_seconds(s3: Any) -> float:
    from runbook_lib.embedded.seed import VAULT_BUCKET
    from runbook_lib.snapshot import snapshot_bucket

    started = time.perf_counter()
    frame = snapshot_bucket(s3, VAULT_BUCKET, workers=WORKERS)
    seconds = time.perf_counter() - started
    if frame["head_error"].notna().any():
        raise RuntimeError("HEADs failed in the snapshot")
    return seconds


def main(argv: list[str] | None = None) -> int:
    """Measure both in alternating rounds, print seconds and the ratio, and return 0 when the goal is met."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_call_log", description=__doc__.splitlines()[0])
    parser.add_argument("--versions", type=int, default=VERSIONS, help=f"versions to seed (default {VERSIONS:,})")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help=f"rounds of both (default {ROUNDS})")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    from runbook_lib.call_log import read_calls

    saved = {name: os.environ.get(name) for name in ("AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE",
                                                     "AWS_EC2_METADATA_DISABLED")}
    try:
        with tempfile.TemporaryDirectory(prefix="bench-call-log-") as folder, \
                seeded_backend(args.versions, Path(folder)) as server:
            log_file = Path(folder) / "calls.jsonl"
            plain, logged = _clients(server.config_file, log_file)
            before = len(read_calls(log_file))
            best = {"without": float("inf"), "with": float("inf")}
            for round_number in range(args.rounds):
                order = [("without", plain), ("with", logged)]
                for name, client in order if round_number % 2 == 0 else reversed(order):
                    best[name] = min(best[name], _snapshot_seconds(client))
            lines = len(read_calls(log_file)) - before
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    ratio = best["with"] / best["without"]
    print(f"vault of {server.seeded:,} versions, {args.rounds} rounds, best of each, no added latency")
    print(f"  snapshot without the call log: {best['without']:.2f} s")
    print(f"  snapshot with the call log:    {best['with']:.2f} s ({lines:,} lines in {args.rounds} snapshots)")
    print(f"  with / without: {ratio:.3f} (goal <= {GOAL})")
    return 0 if ratio <= GOAL and lines > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
