"""Embedded backend at 20,000 versions: seeding, then listing every version with our moto patches and without.

Run from the repository root: `python -m benchmarks.bench_backend [--versions N]`.

Each server runs in a process of its own, one after the other, so the client never shares its
interpreter and each server's peak memory (VmHWM) is its own. Both are seeded by the same code
(`seed_vault`) with the same random seed; the unpatched one is moto's own ThreadedMotoServer.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["main"]

VERSIONS = 20_000
RANDOM_SEED = 1
PAGE_SIZE = 1000
READY_TIMEOUT_SECONDS = 600


@dataclass(frozen=True)
class Measurement:
    """What one server did: seconds to seed and to list, and its peak memory before and after listing."""

    mode: str
    seed_seconds: float
    list_seconds: float
    listed: int
    seeded: int
    peak_mib_after_seed: float
    peak_mib_after_list: float


# ------------------------------------------------------------------------------ server side


def _serve(mode: str, versions: int, config_file: Path) -> None:
    """Start a server in this process, seed it, report on stdout, and serve until stdin closes."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    from runbook_lib.embedded.seed import seed_vault
    from runbook_lib.embedded.server import start_backend, write_aws_config

    if mode == "patched":
        endpoint = start_backend(port=0, config_file=config_file).endpoint
    else:
        from moto.server import ThreadedMotoServer

        server = ThreadedMotoServer("127.0.0.1", 0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        write_aws_config(config_file, endpoint)
    started = time.perf_counter()
    truth = seed_vault(endpoint, versions, RANDOM_SEED)
    report = {
        "endpoint": endpoint,
        "seed_seconds": time.perf_counter() - started,
        "seeded": len(truth.versions),
        "patched": _listing_is_patched(),
    }
    print(json.dumps(report), flush=True)
    sys.stdin.read()
    # Tearing down 20k stored versions one by one only costs time here.
    os._exit(0)


def _listing_is_patched() -> bool:
    from moto.s3.models import S3Backend

    return not S3Backend.list_object_versions.__module__.startswith("moto.")


# ------------------------------------------------------------------------------ client side


def _peak_mib(pid: int) -> float:
    """Return a process's peak resident memory (VmHWM) in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("VmHWM is not available on this system (Linux /proc is needed)")


def _list_all_versions(config_file: Path) -> tuple[int, float]:
    """Return how many versions and delete markers the vault lists, and the seconds it took."""
    from runbook_lib.accounts import make_client, session_for
    from runbook_lib.embedded.seed import VAULT_BUCKET
    from runbook_lib.embedded.server import VAULT_PROFILE

    os.environ["AWS_CONFIG_FILE"] = str(config_file)
    os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    s3 = make_client(session_for(VAULT_PROFILE), "s3")
    # Assume the role and open the connection pool before the clock starts.
    s3.list_object_versions(Bucket=VAULT_BUCKET, MaxKeys=1)
    started = time.perf_counter()
    listed = 0
    pages = s3.get_paginator("list_object_versions").paginate(
        Bucket=VAULT_BUCKET, PaginationConfig={"PageSize": PAGE_SIZE}
    )
    for page in pages:
        listed += len(page.get("Versions", [])) + len(page.get("DeleteMarkers", []))
    return listed, time.perf_counter() - started


def _measure(mode: str, versions: int, folder: Path) -> Measurement:
    """Run one server in a child process and measure it."""
    config_file = folder / f"{mode}-aws-config"
    command = [sys.executable, "-m", "benchmarks.bench_backend", "--serve", mode,
               "--versions", str(versions), "--config-file", str(config_file)]
    child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True, cwd=Path(__file__).resolve().parent.parent)
    try:
        line = child.stdout.readline() if child.stdout else ""
        if not line:
            raise RuntimeError(f"the {mode} server exited before it was seeded (status {child.wait()})")
        report: dict[str, Any] = json.loads(line)
        if report["patched"] != (mode == "patched"):
            raise RuntimeError(f"the {mode} server's listing is patched={report['patched']}")
        after_seed = _peak_mib(child.pid)
        listed, list_seconds = _list_all_versions(config_file)
        after_list = _peak_mib(child.pid)
    finally:
        if child.stdin:
            child.stdin.close()
        try:
            child.wait(timeout=60)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    return Measurement(mode, report["seed_seconds"], list_seconds, listed, report["seeded"], after_seed, after_list)


def _print_table(results: list[Measurement]) -> None:
    print(f"{'server':<10} {'seed s':>8} {'list s':>8} {'listed':>8} {'versions/s':>11} "
          f"{'peak MiB seeded':>16} {'peak MiB listed':>16}")
    for r in results:
        print(f"{r.mode:<10} {r.seed_seconds:>8.2f} {r.list_seconds:>8.2f} {r.listed:>8,} "
              f"{r.listed / r.list_seconds:>11,.0f} {r.peak_mib_after_seed:>16,.0f} {r.peak_mib_after_list:>16,.0f}")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (or, with --serve, one server for it); return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_backend", description=__doc__.splitlines()[0])
    parser.add_argument("--versions", type=int, default=VERSIONS, help=f"versions to seed (default {VERSIONS:,})")
    parser.add_argument("--serve", choices=("patched", "unpatched"), help=argparse.SUPPRESS)
    parser.add_argument("--config-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.serve:
        _serve(args.serve, args.versions, args.config_file)
        return 0

    saved = {name: os.environ.get(name) for name in ("AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE")}
    try:
        with tempfile.TemporaryDirectory(prefix="bench-backend-") as folder:
            print(f"seeding {args.versions:,} versions into each server, then listing them all "
                  f"({PAGE_SIZE} per page)", flush=True)
            results = [_measure(mode, args.versions, Path(folder)) for mode in ("patched", "unpatched")]
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    _print_table(results)
    patched, unpatched = results
    print(f"listing: patched is {unpatched.list_seconds / patched.list_seconds:,.1f}x faster than unpatched moto")
    print(f"peak memory after listing: unpatched / patched = "
          f"{unpatched.peak_mib_after_list / patched.peak_mib_after_list:,.1f}x; "
          f"listing added {patched.peak_mib_after_list - patched.peak_mib_after_seed:,.0f} MiB (patched) vs "
          f"{unpatched.peak_mib_after_list - unpatched.peak_mib_after_seed:,.0f} MiB (unpatched)")
    complete = all(r.listed == r.seeded for r in results)
    print("every seeded version listed by both servers" if complete else "LISTINGS ARE INCOMPLETE")
    return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(main())
