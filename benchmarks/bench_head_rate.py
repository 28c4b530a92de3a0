"""HEAD reading on the embedded backend: versions read per second, the rate of a `--verify head` drill.

Run from the repository root: `python -m benchmarks.bench_head_rate [--versions N] [--against TREE]`.

The backend runs in a child process (`runbook backend --objects N`), with no added latency, and
the vault is read as phases 00 and 07 read it: `snapshot_bucket(..., workers=16)`, which lists
every version and reads each with HeadObject, plus GetObjectRetention or GetObjectLegalHold where
the HEAD lacks that field. On this backend the reading is bound by CPU (the client's botocore and
the server's moto), so its rate is what a HEAD drill of N versions can reach on this machine.

`--against TREE` measures another checkout of the project (an earlier commit, say) the same way,
in turns with this tree (`--rounds`, default 1 each), each with its own backend and its own
client code; the ratio of their rates says what the changes between them bought.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmarks import trees

__all__ = ["main"]

VERSIONS = 10_000
WORKERS = 16

_CHILD = """
import json, tempfile, time
from pathlib import Path
from benchmarks.bench_snapshot import seeded_backend, _vault_client
from runbook_lib.embedded.seed import VAULT_BUCKET
from runbook_lib.snapshot import snapshot_bucket
with tempfile.TemporaryDirectory() as folder:
    with seeded_backend({versions}, Path(folder), "--random-seed", "1") as server:
        s3 = _vault_client(server.config_file)
        started, cpu = time.perf_counter(), time.process_time()
        frame = snapshot_bucket(s3, VAULT_BUCKET, workers={workers})
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        failed = int(frame["head_error"].notna().sum())
print(json.dumps({{"versions": len(frame), "seconds": seconds, "client_cpu": cpu, "failed": failed}}))
"""


def measure(tree: Path, versions: int) -> dict[str, float]:
    """Return versions, seconds and the client's CPU seconds of one snapshot read with `tree`'s code."""
    figures = trees.run_in_tree(tree, _CHILD.format(versions=versions, workers=WORKERS), "the snapshot")
    if figures["failed"]:
        raise SystemExit(f"{figures['failed']:.0f} HEADs failed with {tree}")
    return figures


def main(argv: list[str] | None = None) -> int:
    """Read the vault with this tree (and another, in turns); print versions per second and the ratio."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_head_rate", description=__doc__.splitlines()[0])
    parser.add_argument("--versions", type=int, default=VERSIONS, help=f"versions to seed (default {VERSIONS:,})")
    parser.add_argument("--against", type=Path, default=None, help="another checkout of the project to compare with")
    parser.add_argument("--rounds", type=int, default=1, help="turns of each tree (default 1)")
    args = parser.parse_args(argv)
    here = Path(__file__).resolve().parents[1]
    trees = [here] + ([args.against.resolve()] if args.against else [])
    totals = {tree: [0.0, 0.0, 0.0] for tree in trees}
    for _ in range(max(1, args.rounds)):
        for tree in trees:
            figures = measure(tree, args.versions)
            print(f"{tree!s:40s} {figures['versions']:8.0f} versions  {figures['seconds']:7.1f} s  "
                  f"{figures['versions'] / figures['seconds']:6.0f} versions/s  "
                  f"(client CPU {figures['client_cpu']:.1f} s)", flush=True)
            for index, name in enumerate(("versions", "seconds", "client_cpu")):
                totals[tree][index] += figures[name]
    rate = {tree: read / seconds for tree, (read, seconds, _) in totals.items()}
    print(f"one 10^6-version bucket read once at {rate[here]:,.0f} versions/s: "
          f"{1_000_000 / rate[here] / 60:,.0f} minutes")
    if args.against:
        print(f"this tree against {trees[1]}: {rate[here] / rate[trees[1]]:.2f}x versions/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
