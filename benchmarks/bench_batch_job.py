"""The embedded Batch Replication job against a client-side boto3 copy loop of the same versions.

Run from the repository root: `python -m benchmarks.bench_batch_job [--versions N] [--threads T]`.
Both run on one embedded backend seeded with N versions (default 10,000) and provisioned as a
drill provisions it. The job is timed from UpdateJobStatus Ready to Complete (with the backend's
default pacing of the transitional statuses); the loop copies the job's versions with get_object
+ put_object carrying Object Lock headers, from a pool of T threads (default 8) sharing one client
per account. Goal: job seconds / loop seconds <= 1.0.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from runbook_lib import batch_job, provision
from runbook_lib.context import RunContext, open_run
from runbook_lib.embedded.seed import seed_vault
from runbook_lib.embedded.server import REGION, VAULT_ACCOUNT, start_backend

__all__ = ["main"]

GOAL = 1.0
PARAMETERS = Path(__file__).resolve().parents[1] / "parameters" / "drill.yaml"
TERMINAL = ("Complete", "Failed", "Cancelled")


def _provision(ctx: RunContext) -> None:
    """Create everything the recovery job needs, as phases 01 to 04 do."""
    for step in (provision.ensure_recovery_key, provision.ensure_recovery_bucket, provision.ensure_report_bucket,
                 provision.ensure_batch_policy, provision.ensure_batch_role, provision.ensure_vault_key_grants,
                 provision.ensure_recovery_key_grants, provision.ensure_recovery_bucket_policy,
                 provision.ensure_replication_rule):
        step(ctx)


def _wait(s3control: Any, job_id: str, statuses: tuple[str, ...], poll: float = 0.05) -> dict[str, Any]:
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
    started = time.perf_counter()
    s3control.update_job_status(AccountId=VAULT_ACCOUNT, JobId=job_id, RequestedJobStatus="Ready")
    job = _wait(s3control, job_id, TERMINAL)
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


def main(argv: list[str] | None = None) -> int:
    """Seed, provision, time the job and the loop; print the figures; exit 1 when the goal is missed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", type=int, default=10_000, help="versions to seed (default 10000)")
    parser.add_argument("--threads", type=int, default=8, help="threads of the copy loop (default 8)")
    args = parser.parse_args(argv)

    backend = start_backend()
    os.environ.update(backend.environ())
    try:
        started = time.perf_counter()
        truth = seed_vault(backend.endpoint, args.versions, random_seed=1)
        seeded = time.perf_counter() - started
        ctx = open_run(PARAMETERS, Path(tempfile.mkdtemp(prefix="bench-batch-job-")), create=True)
        _provision(ctx)
        job_seconds, job = time_job(ctx)
        progress = job["ProgressSummary"]
        if job["Status"] != "Complete" or progress["NumberOfTasksFailed"]:
            print(f"job ended {job['Status']} with {progress['NumberOfTasksFailed']} failed tasks", file=sys.stderr)
            return 1
        versions = _job_versions(ctx, job)
        loop_seconds = time_loop(ctx, versions, args.threads)
    finally:
        backend.stop()

    tasks = progress["TotalNumberOfTasks"]
    ratio = job_seconds / loop_seconds
    print(f"seeded {len(truth.versions)} versions in {seeded:.1f} s; the job replicates {tasks} of them ({REGION})")
    print(f"batch job, Ready to Complete:   {job_seconds:7.2f} s  {tasks / job_seconds:8.0f} tasks/s")
    print(f"boto3 copy loop, {args.threads} threads:   {loop_seconds:7.2f} s  "
          f"{len(versions) / loop_seconds:8.0f} versions/s")
    print(f"ratio job/loop: {ratio:.3f} (goal <= {GOAL})")
    return 0 if ratio <= GOAL else 1


if __name__ == "__main__":
    raise SystemExit(main())
