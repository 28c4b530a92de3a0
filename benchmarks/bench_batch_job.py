"""The embedded Batch Replication job: its tasks per second, and against a client-side boto3 copy loop.

Run from the repository root: `python -m benchmarks.bench_batch_job [--versions N] [--threads T]
[--no-loop] [--no-baseline] [--million]`. The job runs on an embedded backend seeded with N versions
(default 10,000) and provisioned as a drill provisions it, and is timed from UpdateJobStatus Ready
to Complete (with the backend's default pacing of the transitional statuses); its rate is tasks
over those seconds. Two comparisons, side by side in the same run:

- the same job on a freshly reset and re-seeded backend with the task caches turned off
  (`task_caches.use_caches(False)`): every task then reads each policy from scratch, as the
  job runner did before the cache existed; the ratio says what the cache saves;
- a copy loop over the job's versions with get_object + put_object carrying Object Lock headers,
  from a pool of T threads (default 8) sharing one client per account. Goal: job seconds / loop
  seconds <= 1.0.

`--million` runs 1,000,000 versions without the slow comparisons (the loop would take hours, the
uncached job most of one); the goal there is at least 11,500 tasks per second, the rate at which
AWS replicates 10^9 objects in a day.

`--against TREE` compares the job with the code of another checkout of the project (an earlier
commit, say) instead: the same job, seeded and provisioned alike, runs in a fresh process for
this tree and for TREE, in turns (`--rounds`, default 1 each), each through that tree's own
`run_job`; the ratio of their task rates says what the changes between them bought.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import trees
from runbook_lib import batch_job, provision
from runbook_lib.context import RunContext, open_run
from runbook_lib.embedded import task_caches
from runbook_lib.embedded.seed import seed_vault
from runbook_lib.embedded.server import REGION, VAULT_ACCOUNT, EmbeddedBackend, start_backend

__all__ = ["main"]

GOAL = 1.0
TASKS_PER_SECOND_GOAL = 11_500
MILLION = 1_000_000
PARAMETERS = Path(__file__).resolve().parents[1] / "parameters" / "drill.yaml"
TERMINAL = ("Complete", "Failed", "Cancelled")


def _provision(ctx: RunContext) -> None:
    """Create everything the recovery job needs, as phases 01 to 04 do."""
    for step in (provision.ensure_recovery_key, provision.ensure_recovery_bucket, provision.ensure_report_bucket,
                 provision.ensure_batch_policy, provision.ensure_batch_role, provision.ensure_vault_key_grants,
                 provision.ensure_recovery_key_grants, provision.ensure_recovery_bucket_policy,
                 provision.ensure_replication_rule):
        step(ctx)


# How often the job is watched: DescribeJob runs in this process, under the same interpreter lock as
# the job's tasks, so watching costs the job time; a drill's watcher asks once a second.
POLL_SECONDS = 0.2


def _wait(s3control: Any, job_id: str, statuses: tuple[str, ...], poll: float = POLL_SECONDS) -> dict[str, Any]:
    while True:
        job = s3control.describe_job(AccountId=VAULT_ACCOUNT, JobId=job_id)["Job"]
        if job["Status"] in statuses:
            return dict(job)
        time.sleep(poll)


def time_job(ctx: RunContext) -> tuple[float, dict[str, Any]]:
    """Return the seconds from confirming the recovery job to its completion, and the job."""
    request = batch_job.replication_job_request(ctx)
    request["ConfirmationRequired"] = True
    s3control = ctx.vault("s3control")
    job_id = s3control.create_job(**request)["JobId"]
    suspended = _wait(s3control, job_id, ("Suspended", *TERMINAL))
    if suspended["Status"] != "Suspended":
        raise SystemExit(f"the job ended {suspended['Status']} before confirmation: {suspended.get('FailureReasons')}")
    started, cpu_started = time.perf_counter(), time.process_time()
    s3control.update_job_status(AccountId=VAULT_ACCOUNT, JobId=job_id, RequestedJobStatus="Ready")
    job = _wait(s3control, job_id, TERMINAL)
    job["_cpu_seconds"] = time.process_time() - cpu_started
    return time.perf_counter() - started, job


def _job_versions(ctx: RunContext, job: dict[str, Any]) -> list[tuple[str, str]]:
    """Return the (key, version id) of every task the job ran, from its generated manifest."""
    from runbook_lib.reports import load_generated_manifest

    location = job["GeneratedManifestDescriptor"]["Location"]["ObjectArn"]
    bucket, key = location.split(":::", 1)[1].split("/", 1)
    manifest = load_generated_manifest(ctx.vault("s3"), bucket, key)
    return list(zip(manifest["key"].tolist(), manifest["version_id"].tolist(), strict=True))


def time_loop(ctx: RunContext, versions: list[tuple[str, str]], threads: int) -> float:
    """Return the seconds a client-side loop takes to copy the versions with their lock state."""
    source_bucket = ctx.params.vault.bucket
    assert source_bucket, "the drill parameters name the vault bucket"
    target = f"bench-loop-{uuid.uuid4().hex[:8]}"
    vault_s3, recovery_s3 = ctx.vault("s3"), ctx.recovery("s3")
    recovery_s3.create_bucket(Bucket=target, ObjectLockEnabledForBucket=True)

    def copy(version: tuple[str, str]) -> None:
        key, version_id = version
        read = vault_s3.get_object(Bucket=source_bucket, Key=key, VersionId=version_id)
        arguments: dict[str, Any] = {"Bucket": target, "Key": key, "Body": read["Body"].read(),
                                     "StorageClass": "INTELLIGENT_TIERING"}
        if read.get("ObjectLockMode"):
            arguments.update(ObjectLockMode=read["ObjectLockMode"],
                             ObjectLockRetainUntilDate=read["ObjectLockRetainUntilDate"])
        if read.get("ObjectLockLegalHoldStatus"):
            arguments["ObjectLockLegalHoldStatus"] = read["ObjectLockLegalHoldStatus"]
        recovery_s3.put_object(**arguments)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(copy, versions))
    return time.perf_counter() - started


@dataclass(frozen=True)
class JobRun:
    """One seeded, provisioned and timed job."""

    ctx: RunContext
    seeded: int
    seed_seconds: float
    job_seconds: float
    job: dict[str, Any]

    @property
    def tasks(self) -> int:
        """Return the number of tasks the job ran."""
        return int(self.job["ProgressSummary"]["TotalNumberOfTasks"])

    @property
    def rate(self) -> float:
        """Return the job's tasks per second, Ready to Complete."""
        return self.tasks / self.job_seconds

    @property
    def cpu_rate(self) -> float:
        """Return the job's tasks per second of this process's CPU time (the backend runs in it).

        Other work on a shared machine slows the wall clock, far less the CPU time a job uses.
        """
        return self.tasks / max(float(self.job["_cpu_seconds"]), 1e-9)


def run_job(backend: EmbeddedBackend, versions: int, *, cache: bool) -> JobRun:
    """Seed the backend, provision the recovery, and time the job with the task caches on or off."""
    started = time.perf_counter()
    truth = seed_vault(backend.endpoint, versions, random_seed=1)
    seed_seconds = time.perf_counter() - started
    ctx = open_run(PARAMETERS, Path(tempfile.mkdtemp(prefix="bench-batch-job-")), create=True)
    _provision(ctx)
    task_caches.use_caches(cache)
    try:
        job_seconds, job = time_job(ctx)
    finally:
        task_caches.use_caches(True)
    progress = job["ProgressSummary"]
    if job["Status"] != "Complete" or progress["NumberOfTasksFailed"]:
        raise SystemExit(f"job ended {job['Status']} with {progress['NumberOfTasksFailed']} failed tasks")
    return JobRun(ctx, len(truth.versions), seed_seconds, job_seconds, job)


# Run in a child process whose working directory and import path are one tree: its own run_job.
_CHILD = """
import json, os
from benchmarks import bench_batch_job as bench
backend = bench.start_backend()
os.environ.update(backend.environ())
try:
    run = bench.run_job(backend, {versions}, cache=True)
finally:
    backend.stop()
print(json.dumps({{"tasks": run.tasks, "seconds": run.job_seconds, "cpu": float(run.job["_cpu_seconds"])}}))
"""


def run_in_tree(tree: Path, versions: int) -> dict[str, float]:
    """Return the tasks, seconds and CPU seconds of the job run by the code of `tree`, in a fresh process."""
    return trees.run_in_tree(tree, _CHILD.format(versions=versions), "the job")


def compare_trees(versions: int, other: Path, rounds: int) -> int:
    """Time the job with this tree's code and with another tree's, in turns; print both and their ratio."""
    here = Path(__file__).resolve().parents[1]
    totals = {here: [0.0, 0.0, 0.0], other: [0.0, 0.0, 0.0]}
    for _ in range(rounds):
        for tree in (here, other):
            figures = run_in_tree(tree, versions)
            print(f"{tree!s:40s} {figures['tasks']:8.0f} tasks  {figures['seconds']:8.2f} s  "
                  f"{figures['tasks'] / figures['seconds']:8.0f} tasks/s  "
                  f"({figures['tasks'] / figures['cpu']:,.0f} per CPU second)", flush=True)
            for index, name in enumerate(("tasks", "seconds", "cpu")):
                totals[tree][index] += figures[name]
    (tasks, seconds, cpu), (other_tasks, other_seconds, other_cpu) = totals[here], totals[other]
    print(f"this tree against {other}: {(tasks / seconds) / (other_tasks / other_seconds):.2f}x tasks/s, "
          f"{(tasks / cpu) / (other_tasks / other_cpu):.2f}x per CPU second")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Seed, provision, time the job (cached and not) and the loop; print the figures; exit 1 when a goal is missed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", type=int, default=10_000, help="versions to seed (default 10000)")
    parser.add_argument("--threads", type=int, default=8, help="threads of the copy loop (default 8)")
    parser.add_argument("--no-loop", action="store_true", help="skip the boto3 copy loop")
    parser.add_argument("--no-baseline", action="store_true", help="skip the job without the task caches")
    parser.add_argument("--million", action="store_true",
                        help=f"{MILLION:,} versions, no loop, no baseline; goal {TASKS_PER_SECOND_GOAL:,} tasks/s")
    parser.add_argument("--against", type=Path, default=None,
                        help="another checkout of the project: compare the job with its code, nothing else")
    parser.add_argument("--rounds", type=int, default=1, help="with --against: turns of each tree (default 1)")
    args = parser.parse_args(argv)
    versions = MILLION if args.million else args.versions
    if args.against is not None:
        return compare_trees(versions, args.against.resolve(), args.rounds)
    loop, baseline = not (args.no_loop or args.million), not (args.no_baseline or args.million)

    backend = start_backend()
    os.environ.update(backend.environ())
    loop_seconds = uncached = None
    try:
        cached = run_job(backend, versions, cache=True)
        if loop:
            job_versions = _job_versions(cached.ctx, cached.job)
            loop_seconds = time_loop(cached.ctx, job_versions, args.threads)
        if baseline:
            backend.reset()
            uncached = run_job(backend, versions, cache=False)
    finally:
        backend.stop()

    print(f"seeded {cached.seeded} versions in {cached.seed_seconds:.1f} s; "
          f"the job replicates {cached.tasks} of them ({REGION})")
    print(f"batch job, Ready to Complete:          {cached.job_seconds:8.2f} s  {cached.rate:8.0f} tasks/s"
          f"  ({cached.cpu_rate:,.0f} per CPU second)")
    passed = True
    if uncached is not None:
        print(f"same job, task caches off:             {uncached.job_seconds:8.2f} s  {uncached.rate:8.0f} tasks/s"
              f"  ({uncached.cpu_rate:,.0f} per CPU second)")
        print(f"speed-up of the caches: {cached.rate / uncached.rate:.2f}x wall clock, "
              f"{cached.cpu_rate / uncached.cpu_rate:.2f}x CPU time")
    if loop_seconds is not None:
        ratio = cached.job_seconds / loop_seconds
        print(f"boto3 copy loop, {args.threads} threads:            {loop_seconds:8.2f} s  "
              f"{cached.tasks / loop_seconds:8.0f} versions/s")
        print(f"ratio job/loop: {ratio:.3f} (goal <= {GOAL})")
        passed = passed and ratio <= GOAL
    share = cached.rate / TASKS_PER_SECOND_GOAL
    print(f"tasks/s against AWS's {TASKS_PER_SECOND_GOAL:,} (10^9 objects a day): {share:.2f}x"
          + ("" if versions >= MILLION else f" (the goal is set at {MILLION:,} versions)"))
    if versions >= MILLION:
        passed = passed and cached.rate >= TASKS_PER_SECOND_GOAL
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
