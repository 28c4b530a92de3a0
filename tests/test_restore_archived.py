"""Archived golden copies: the restore step of phase 06, in-process with the calls the notebooks make.

The module's seeded vault holds an archived replica (DEEP_ARCHIVE) that the drill's scope would
otherwise select. Without the restore step it is reported as archived, not recovered, and never
counts as recovered; a restore job whose role may not s3:RestoreObject stops phase 06; with the
step the version is restored, replicated and verified like every other. The tests run in file
order: the restore in the last one makes the archived version replicable for the rest of the module.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import pytest
from runbook_fixtures import PROVISION_ORDER, CtxFactory, Drill, verify_in_process, write_requests

from runbook_lib import batch_job, cleanup, guide, plan, proof, restore_job
from runbook_lib.context import RunContext
from runbook_lib.embedded.request_ids import RequestLog
from runbook_lib.errors import RestoreError

pytestmark = pytest.mark.xdist_group("restore-archived")

FAST = {"job": {"poll_seconds": 0.05}}
RESTORE_ON = {**FAST, "restore": {"archived": True, "tier": "BULK", "expiration_days": 3}}


def replicate(ctx: RunContext) -> dict[str, Any]:
    """Phase 06's replication job, created, confirmed and followed as the notebook does."""
    job_id, _ = batch_job.create_replication_job(ctx)
    batch_job.wait_for_status(ctx, job_id, {"Suspended", "Ready", "Active"})
    batch_job.confirm_job(ctx, job_id, "confirmed by the test")
    return batch_job.follow_job(ctx, job_id)


def restore(ctx: RunContext) -> restore_job.RestoreRecord | None:
    """Phase 06's restore step: the job, its confirmation, its end and every restore finished."""
    bucket, scope = ctx.params.vault.bucket, proof.job_scope(ctx)
    restore_job.create_restore_job(ctx, bucket, scope)
    guide.restore_gate(ctx, confirm_job=True)
    return restore_job.finish_restore(ctx, bucket, scope)


def recovered(drill: Drill, ctx: RunContext) -> set[tuple[str, str]]:
    pages = drill.client("s3", "recovery").get_paginator("list_object_versions").paginate(
        Bucket=ctx.params.recovery.bucket)
    return {(v["Key"], v["VersionId"]) for page in pages for v in page.get("Versions", [])}


def archived_truth(drill: Drill) -> set[tuple[str, str]]:
    return {(v.key, v.version_id) for v in drill.truth.archived_versions()}


def test_without_the_step_archived_versions_are_reported_and_never_recovered(
    aws_env: Drill, make_ctx: CtxFactory,
) -> None:
    archived = archived_truth(aws_env)
    assert archived, "the seeded vault must hold an archived replica in scope"
    ctx = make_ctx("off", params=FAST)
    estimate = restore_job.estimate_restore(ctx, ctx.params.vault.bucket, proof.job_scope(ctx))
    for ensure in PROVISION_ORDER:
        ensure(ctx)
    assert restore(ctx) is None

    replicate(ctx)
    verdict = verify_in_process(ctx)

    summary = json.loads((ctx.ledger.run_dir / "summary.json").read_text())
    assert verdict["verdict"] == "PASS"  # leaving the step off is the operator's choice, not a failure
    assert verdict["expected"] == aws_env.truth.counts()["expected"] == verdict["recovered"]
    assert summary["archived"] == {"step": False, "in_scope": len(archived), "restored": 0, "recovered": 0,
                                   "not_recovered": len(archived), "tier": None, "expiration_days": None,
                                   "restore_jobs": []}
    assert summary["counts"]["archived_not_recovered"] == len(archived)
    listed = pd.read_csv(ctx.ledger.run_dir / "details" / "archived_not_recovered.csv", dtype=str)
    assert set(zip(listed["key"], listed["version_id"], strict=True)) == archived
    assert not archived & recovered(aws_env, ctx)
    assert "NOT recovered" in (guide._archived_line(verdict) or "")
    cleanup.clean_up(ctx)  # phase 08: the vault's replication rule goes, for the next run on this vault

    # Phase 00 showed what leaving the step off leaves out, and what restoring it would cost.
    sizes = {(v.key, v.version_id): (v.size, v.storage_class) for v in aws_env.truth.archived_versions()}
    assert (estimate["step"], estimate["versions"]) == (False, len(archived))
    assert estimate["bytes"] == sum(size for size, _ in sizes.values())
    chosen = [row for row in estimate["by_class"] if row["chosen"]]
    assert {(row["storage_class"], row["tier"]) for row in chosen} == {(c, "STANDARD") for _, c in sizes.values()}
    gigabytes = estimate["bytes"] / 2**30
    deep = sum(1 for _, c in sizes.values() if c == "DEEP_ARCHIVE")
    glacier = len(sizes) - deep
    # Per GB and per request by class, the restored copies' STANDARD storage for 7 days, the job's fees.
    retrieval = sum(size / 2**30 * (0.02 if c == "DEEP_ARCHIVE" else 0.01) for size, c in sizes.values())
    expected_usd = (retrieval + deep / 1000 * 0.10 + glacier / 1000 * 0.05 + gigabytes * 0.023 * 7 / (365.25 / 12)
                    + 0.25 + len(sizes) / 1e6)
    assert estimate["usd"] == pytest.approx(expected_usd, abs=0.01)
    assert estimate["typical_hours"] == (12 if deep else 5)
    assert "OFF" in restore_job.estimate_rows(estimate)[1]["value"]


def test_a_restore_job_whose_role_may_not_restore_stops_phase_06(aws_env: Drill, make_ctx: CtxFactory) -> None:
    ctx = make_ctx("denied", params=FAST)
    for ensure in PROVISION_ORDER:
        ensure(ctx)  # the role's policy is made without the step, so without s3:RestoreObject
    ctx = make_ctx("denied", params=RESTORE_ON)

    with pytest.raises(RestoreError, match=r"AccessDenied.*s3:RestoreObject") as stopped:
        restore(ctx)

    archived = len(archived_truth(aws_env))
    assert f"{archived} of {archived} restore tasks failed" in str(stopped.value)
    assert ctx.ledger.state.current_recovery_job() is None  # nothing was replicated
    cleanup.clean_up(ctx)


def test_with_the_step_archived_versions_are_restored_recovered_and_verified(
    aws_env: Drill, make_ctx: CtxFactory, served: RequestLog,
) -> None:
    archived = archived_truth(aws_env)
    ctx = make_ctx("on", params=RESTORE_ON)
    for ensure in PROVISION_ORDER:
        ensure(ctx)
    served.clear()
    planned = plan.plan_phases(ctx, ["06_batch_replication"])
    writes = [(w.service, w.operation) for w in planned.writes()]
    assert ("s3", "PutObject") in writes and writes.count(("s3control", "CreateJob")) == 2
    restore_request = next(w.document for w in planned.writes() if w.operation == "CreateJob")
    assert restore_request["Operation"] == {"S3InitiateRestoreObject": {"ExpirationInDays": 3,
                                                                        "GlacierJobTier": "BULK"}}
    assert write_requests(served.served()) == []  # a plan writes nothing

    record = restore(ctx)
    replicate(ctx)
    verdict = verify_in_process(ctx)

    assert record is not None and record.restored == len(archived) == record.archived_in_scope
    assert verdict["verdict"] == "PASS"
    expected = {(v.key, v.version_id) for v in aws_env.truth.expected_versions(restore_archived=True)}
    assert verdict["expected"] == verdict["recovered"] == len(expected) == aws_env.truth.counts(True)["expected"]
    assert recovered(aws_env, ctx) == expected
    assert verdict["archived"] == {"step": True, "in_scope": len(archived), "restored": len(archived),
                                   "recovered": len(archived), "not_recovered": 0, "tier": "BULK",
                                   "expiration_days": 3, "restore_jobs": record.job_ids}
    recovery_s3 = aws_env.client("s3", "recovery")
    for key, version_id in archived:
        head = recovery_s3.head_object(Bucket=ctx.params.recovery.bucket, Key=key, VersionId=version_id)
        assert head.get("StorageClass") == ctx.params.job.replica_storage_class  # the rule's class

    # Re-running phase 06's restore step reuses the job and asks S3 to restore nothing again.
    served.clear()
    again = restore(ctx)
    assert again is not None and again.job_ids == record.job_ids
    assert write_requests(served.served()) == []
