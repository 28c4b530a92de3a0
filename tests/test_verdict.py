"""The verdict against the ways it could be fooled, end to end on the embedded backend.

Each test seeds a fresh vault (80 versions) on the module's backend, provisions a run and runs its
Batch Replication job in-process with the same library calls the phase notebooks make, then acts as
an attacker, an impatient operator or a careful one would: edits the manifest and report, copies a
version the job left out, re-verifies without confirming, cancels the job, resumes a verification,
narrows the job's scope. The backend fails a share of first tasks (retries succeed), so every run
has failed tasks to hide and retry rounds to run.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import pandas as pd
import pytest
import yaml
from runbook_fixtures import PROVISION_ORDER, verify_in_process

from runbook_lib import batch_job, cli, guide, pins, proof, reports
from runbook_lib.accounts import make_client, session_for
from runbook_lib.context import RunContext, open_run
from runbook_lib.drill import DRILL_PARAMS
from runbook_lib.embedded.faults import Faults
from runbook_lib.embedded.seed import RECOVER, GroundTruth, seed_vault
from runbook_lib.embedded.server import RECOVERY_PROFILE, REGION, VAULT_PROFILE, EmbeddedBackend, start_backend
from runbook_lib.errors import ConfirmationRequired, JobEndedError, RunStateError, ScopeError

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("verdict")]

SEEDED_VERSIONS = 80
VAULT = "vault-golden-copies"
RECOVERY = "recovery-golden-copies"
REPORTS = "vault-batch-reports"


@pytest.fixture(scope="module")
def backend() -> Iterator[EmbeddedBackend]:
    """A backend for the module that fails a quarter of first tasks (a version's retry succeeds).

    Its jobs stay in each status 0.02 s rather than 0.3 s: these tests follow jobs to their end, and
    none watches a job move (the batch tests do).
    """
    with start_backend(faults=Faults(task_failure_rate=0.25, seed=7)) as running:
        running.app.jobs_app.store.min_state_seconds = 0.02
        yield running
        running.reset()


@pytest.fixture
def world(backend: EmbeddedBackend, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> World:
    """A freshly reset backend with a seeded vault, this test's AWS environment, and a run factory."""
    for name, value in backend.environ().items():
        monkeypatch.setenv(name, value)
    backend.reset()
    truth = seed_vault(backend.endpoint, SEEDED_VERSIONS, random_seed=3)
    return World(backend, truth, tmp_path)


class World:
    """One test's seeded vault, with helpers to run phases in-process and to act on the buckets."""

    def __init__(self, backend: EmbeddedBackend, truth: GroundTruth, folder: Path) -> None:
        self.backend = backend
        self.truth = truth
        self.folder = folder
        self._clients: dict[tuple[str, str], Any] = {}

    def params_file(self, **job: Any) -> Path:
        params = yaml.safe_load(DRILL_PARAMS.read_text())
        params["job"].update(poll_seconds=0.05, **job)
        path = self.folder / "params.yaml"
        path.write_text(yaml.safe_dump(params, sort_keys=False))
        return path

    def ctx(self, **job: Any) -> RunContext:
        return open_run(self.params_file(**job), self.folder / "run", create=True)

    def client(self, service: str, side: str = "vault") -> Any:
        if (service, side) not in self._clients:
            profile = VAULT_PROFILE if side == "vault" else RECOVERY_PROFILE
            self._clients[(service, side)] = make_client(session_for(profile, REGION), service, region_name=REGION)
        return self._clients[(service, side)]

    def in_scope(self, created_after: str | None = None, created_before: str | None = None,
                 key_prefix: str | None = None) -> set[tuple[str, str]]:
        """Return the seeded versions a recovery with this scope must bring back (the ground truth)."""
        chosen = set()
        for v in self.truth.versions:
            created = datetime.fromisoformat(v.last_modified)
            if v.expected_outcome != RECOVER:
                continue
            if created_after and created < datetime.fromisoformat(created_after):
                continue
            if created_before and created >= datetime.fromisoformat(created_before):
                continue
            if key_prefix and not v.key.startswith(key_prefix):
                continue
            chosen.add((v.key, v.version_id))
        return chosen

    def recovered(self) -> set[tuple[str, str]]:
        s3 = self.client("s3", "recovery")
        pages = s3.get_paginator("list_object_versions").paginate(Bucket=RECOVERY)
        return {(v["Key"], v["VersionId"]) for page in pages for v in page.get("Versions", [])}


def provision_and_replicate(ctx: RunContext, *, confirm: bool = True) -> dict[str, Any]:
    """Run phases 01-06 in-process as their notebooks do; return the job's final description."""
    for ensure in PROVISION_ORDER:
        ensure(ctx)
    job_id, _ = batch_job.create_replication_job(ctx)
    batch_job.wait_for_status(ctx, job_id, {"Suspended", "Ready", "Active"})
    if not confirm:
        return batch_job.describe_job(ctx, job_id)
    batch_job.confirm_job(ctx, job_id, "confirmed by the test")
    return batch_job.follow_job(ctx, job_id)


def summary(ctx: RunContext) -> dict[str, Any]:
    return dict(json.loads((ctx.ledger.run_dir / "summary.json").read_text()))


def details(ctx: RunContext) -> pd.DataFrame:
    return pd.read_csv(ctx.ledger.run_dir / "details" / "all_versions.csv", keep_default_na=False, dtype=str)


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


# ----------------------------------------------------------------------------- the honest run


def test_a_run_with_failed_tasks_passes_after_its_retry_round_and_pins_what_it_read(world: World) -> None:
    ctx = world.ctx()
    final = provision_and_replicate(ctx)
    assert final["ProgressSummary"]["NumberOfTasksFailed"] > 0, "the backend should have failed some tasks"

    verdict = verify_in_process(ctx)

    assert verdict["verdict"] == "PASS" and verdict["findings"] == []
    assert world.recovered() >= world.in_scope()
    assert verdict["expected"] == len(world.in_scope())
    pin = pins.pinned(ctx, final["JobId"])
    assert pin is not None and pin["failed"] == final["ProgressSummary"]["NumberOfTasksFailed"]
    assert pin["report"]["file_etags"] and pin["generated_manifest"]["file_etags"]


# ----------------------------------------------------------------------------- an edited manifest and report


def _drop_rows(world: World, bucket: str, index_key: str, files_field: str, key_field: str, md5_field: str,
               doomed: set[tuple[str, str]], key_column: int, version_column: int) -> None:
    """Remove the rows naming `doomed` versions from every file an index lists, and fix the MD5s."""
    s3 = world.client("s3")
    index = json.loads(s3.get_object(Bucket=bucket, Key=index_key)["Body"].read())
    for entry in index[files_field]:
        body = s3.get_object(Bucket=bucket, Key=entry[key_field])["Body"].read()
        zipped = entry[key_field].endswith(".gz")
        text = (gzip.decompress(body) if zipped else body).decode()
        kept = []
        for line in text.splitlines(keepends=True):
            fields = line.rstrip("\r\n").split(",")
            if (unquote_plus(fields[key_column]), fields[version_column]) not in doomed:
                kept.append(line)
        data = "".join(kept).encode()
        data = gzip.compress(data) if zipped else data
        s3.put_object(Bucket=bucket, Key=entry[key_field], Body=data)
        entry[md5_field] = _md5(data)
    s3.put_object(Bucket=bucket, Key=index_key, Body=json.dumps(index).encode())


def test_removing_failed_tasks_from_manifest_and_report_fails_and_names_the_versions(world: World) -> None:
    ctx = world.ctx(confirmation_required=True)
    final = provision_and_replicate(ctx)
    report = reports.load_completion_report(world.client("s3"), REPORTS, reports.completion_report_manifest_key(
        ctx.params.job.report_prefix, final["JobId"]))
    failed = reports.failed_tasks(report)
    doomed = set(zip(failed["key"], failed["version_id"], strict=True))
    assert doomed
    # Anyone who may write the report bucket can do this: rows out, MD5s in the indexes fixed.
    _drop_rows(world, REPORTS, reports.completion_report_manifest_key(ctx.params.job.report_prefix, final["JobId"]),
               "Results", "Key", "MD5Checksum", doomed, 1, 2)
    bucket, key = final["GeneratedManifestDescriptor"]["Location"]["ObjectArn"].split(":::", 1)[1].split("/", 1)
    _drop_rows(world, bucket, key, "files", "key", "MD5checksum", doomed, 1, 2)

    verdict = verify_in_process(ctx, confirm_job=False)

    assert verdict["verdict"] == "FAIL"
    findings = " ".join(verdict["findings"])
    assert "changed since the job finished" in findings and "S3 counted" in findings
    rows = details(ctx).set_index(["key", "version_id"])
    for pair in doomed:
        assert rows.loc[pair, "category"] in ("unknown_unreadable", "missing_in_recovery"), pair
    assert summary(ctx)["verdict"] == "FAIL"


# ----------------------------------------------------------------------------- versions outside the scope


def _copy_by_another_job(world: World, ctx: RunContext, versions: list[tuple[str, str]]) -> None:
    """Replicate versions into the recovery bucket with jobs of our own, outside the runbook."""
    s3 = world.client("s3")
    body = reports.retry_manifest_csv(pd.DataFrame(versions, columns=["key", "version_id"]), VAULT)
    etag = s3.put_object(Bucket=REPORTS, Key="by-hand/manifest.csv", Body=body)["ETag"].strip('"')
    # The backend fails some first tasks of a version; a second job copies what the first did not.
    for attempt in range(2):
        job_id = world.client("s3control").create_job(
            AccountId=ctx.params.vault.account_id, ConfirmationRequired=False, Operation={"S3ReplicateObject": {}},
            Report={"Enabled": False}, ClientRequestToken=f"by-hand-{len(versions)}-{attempt}", Priority=1,
            RoleArn=ctx.params.batch_role_arn,
            Manifest={"Spec": {"Format": "S3BatchOperations_CSV_20180820", "Fields": ["Bucket", "Key", "VersionId"]},
                      "Location": {"ObjectArn": f"arn:aws:s3:::{REPORTS}/by-hand/manifest.csv", "ETag": etag}},
        )["JobId"]
        batch_job.wait_for_status(ctx, job_id, batch_job.TERMINAL)
    assert set(versions) <= world.recovered()


def test_a_non_replica_copied_into_the_recovery_bucket_is_extra_and_fails(world: World) -> None:
    ctx = world.ctx()
    provision_and_replicate(ctx)
    assert verify_in_process(ctx)["verdict"] == "PASS"
    outsider = next((v.key, v.version_id) for v in world.truth.versions
                    if v.replication_status is None and not v.is_delete_marker and v.storage_class != "GLACIER")

    _copy_by_another_job(world, ctx, [outsider])
    verdict = verify_in_process(ctx)

    assert outsider in world.recovered()
    assert verdict["verdict"] == "FAIL" and verdict["extra"] == 1
    assert details(ctx).set_index(["key", "version_id"]).loc[outsider, "category"] == "extra_in_recovery"


# ----------------------------------------------------------------------------- no stale verdict


def test_reverifying_damage_without_confirmation_withdraws_the_pass_and_waits(world: World) -> None:
    ctx = world.ctx()
    provision_and_replicate(ctx)
    assert verify_in_process(ctx)["verdict"] == "PASS"
    (ctx.ledger.run_dir / "evidence.html").write_text("Verdict: PASS")
    victim = next(v for v in world.truth.versions if v.expected_outcome == RECOVER
                  and v.object_lock_mode is None and v.object_lock_legal_hold_status != "ON")
    world.client("s3", "recovery").delete_object(Bucket=RECOVERY, Key=victim.key, VersionId=victim.version_id)

    with pytest.raises(ConfirmationRequired, match="retry round"):
        verify_in_process(ctx, confirm_job=False)

    written = summary(ctx)
    assert written["verdict"] == "INCOMPLETE"
    assert written["waiting"]["versions"] == 1 and written["counts"]["missing"] == 1
    assert ctx.ledger.state.verdict is not None and ctx.ledger.state.verdict.verdict == "INCOMPLETE"
    assert not (ctx.ledger.run_dir / "evidence.html").exists()


def test_runbook_run_exits_3_and_its_evidence_says_incomplete_while_a_retry_waits(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = world.ctx()
    provision_and_replicate(ctx)
    assert verify_in_process(ctx)["verdict"] == "PASS"
    victim = next(v for v in world.truth.versions if v.expected_outcome == RECOVER
                  and v.object_lock_mode is None and v.object_lock_legal_hold_status != "ON")
    world.client("s3", "recovery").delete_object(Bucket=RECOVERY, Key=victim.key, VersionId=victim.version_id)
    saved = dict(os.environ)
    try:
        status = cli.main(["run", "--params", str(world.params_file()), "--out", str(ctx.ledger.run_dir),
                           "--from", "07"])
    finally:
        os.environ.clear()
        os.environ.update(saved)

    assert status == 3
    assert summary(ctx)["verdict"] == "INCOMPLETE"
    html = (ctx.ledger.run_dir / "evidence.html").read_text()
    assert "Verdict: INCOMPLETE" in html and "Verdict: PASS" not in html


def test_a_resumed_verification_keeps_its_retry_round(world: World) -> None:
    ctx = world.ctx()
    provision_and_replicate(ctx)
    with pytest.raises(ConfirmationRequired):
        verify_in_process(ctx, confirm_job=False)

    verdict = verify_in_process(ctx, confirm_job=True)

    rounds = summary(ctx)["retry_rounds"]
    assert verdict["verdict"] == "PASS"
    assert len(rounds) == 1 and rounds[0]["status"] == "Complete" and rounds[0]["versions"] > 0
    assert rounds[0]["why"]["task failed"] == rounds[0]["versions"]


# ----------------------------------------------------------------------------- job end states


def test_a_cancelled_job_fails_the_phase_and_a_rerun_starts_a_new_attempt(world: World) -> None:
    ctx = world.ctx()
    suspended = provision_and_replicate(ctx, confirm=False)
    first = suspended["JobId"]
    world.client("s3control").update_job_status(AccountId=ctx.params.vault.account_id, JobId=first,
                                                RequestedJobStatus="Cancelled", StatusUpdateReason="test")
    with pytest.raises(JobEndedError, match="ended Cancelled") as ended:
        batch_job.follow_job(ctx, first)
    assert ended.value.status == "Cancelled"

    second, created = batch_job.create_replication_job(ctx)
    request = batch_job.replication_job_request(ctx)
    batch_job.wait_for_status(ctx, second, {"Suspended"})
    batch_job.confirm_job(ctx, second)
    batch_job.follow_job(ctx, second)

    assert created and second != first
    attempts = ctx.ledger.state.recovery_jobs()
    assert [a.attempt for a in attempts] == [1, 2] and attempts[0].ended == "Cancelled"
    assert attempts[1].token == request["ClientRequestToken"] != attempts[0].token
    assert verify_in_process(ctx)["verdict"] == "PASS"


# ----------------------------------------------------------------------------- the job's scope


def _median_time(world: World) -> str:
    times = sorted(v.last_modified for v in world.truth.versions if v.expected_outcome == RECOVER)
    return datetime.fromisoformat(times[len(times) // 2]).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize("scope", ["created_before", "created_after", "window", "key_prefix"])
def test_a_narrowed_scope_is_what_the_job_copies_verification_expects_and_retries_touch(
    world: World, scope: str
) -> None:
    middle = _median_time(world)
    earliest = min(v.last_modified for v in world.truth.versions)
    job = {
        "created_before": {"created_before": middle},
        "created_after": {"created_after": middle},
        "window": {"created_after": datetime.fromisoformat(earliest).strftime("%Y-%m-%dT%H:%M:%SZ"),
                   "created_before": middle},
        "key_prefix": {"key_prefix": "logs/"},
    }[scope]
    ctx = world.ctx(**job)
    wanted = world.in_scope(**job)
    assert 0 < len(wanted) < len(world.in_scope())

    final = provision_and_replicate(ctx)
    manifest = proof.load_job_manifest(ctx)
    verdict = verify_in_process(ctx)

    assert set(zip(manifest["key"], manifest["version_id"], strict=True)) == wanted
    assert final["ProgressSummary"]["TotalNumberOfTasks"] == len(wanted)
    assert verdict["verdict"] == "PASS" and verdict["expected"] == len(wanted)
    assert world.recovered() == wanted, "nothing outside the scope may reach the recovery account"
    rounds = summary(ctx)["retry_rounds"]
    assert bool(rounds) == bool(final["ProgressSummary"]["NumberOfTasksFailed"])
    for retry in rounds:
        body = world.client("s3").get_object(Bucket=REPORTS, Key=retry["manifest_key"])["Body"].read().decode()
        retried = {(unquote_plus(line.split(",")[1]), line.split(",")[2]) for line in body.splitlines()}
        assert retried and retried <= wanted
    assert summary(ctx)["scope"]["description"].count("created") == ("created_after" in job) + ("created_before" in job)


def test_a_later_version_copied_by_other_means_fails_as_extra(world: World) -> None:
    middle = _median_time(world)
    ctx = world.ctx(created_before=middle)
    provision_and_replicate(ctx)
    assert verify_in_process(ctx)["verdict"] == "PASS"
    later = sorted(world.in_scope() - world.in_scope(created_before=middle))[:2]

    _copy_by_another_job(world, ctx, later)
    verdict = verify_in_process(ctx)

    assert verdict["verdict"] == "FAIL" and verdict["extra"] == 2
    rows = details(ctx).set_index(["key", "version_id"])
    for pair in later:
        assert rows.loc[pair, "category"] == "extra_in_recovery"
        assert rows.loc[pair, "scope"].startswith("created at or after")


# ----------------------------------------------------------------------------- verdicts that must not come back


def test_a_stale_kernel_cannot_put_back_a_pass_over_a_newer_fail(world: World) -> None:
    old_tab = world.ctx()
    provision_and_replicate(old_tab)
    proof.begin_verification(old_tab)
    manifest, report = proof.load_job_manifest(old_tab), proof.load_job_reports(old_tab)
    vault = proof.snapshot_vault(old_tab, subscribers=[])
    comparison = proof.compare_buckets(old_tab, vault, proof.snapshot_recovery(old_tab, subscribers=[]), manifest,
                                       report)
    comparison, rounds = proof.retry_failures(old_tab, comparison, vault, manifest, True)
    assert proof.conclude(old_tab, comparison, rounds, report)["verdict"] == "PASS"
    victim = next(v for v in world.truth.versions if v.expected_outcome == RECOVER and v.object_lock_legal_hold_status
                  == "ON")
    world.client("s3", "recovery").put_object_legal_hold(Bucket=RECOVERY, Key=victim.key, VersionId=victim.version_id,
                                                         LegalHold={"Status": "OFF"})
    assert verify_in_process(world.ctx())["verdict"] == "FAIL"  # a newer verification, in another kernel or process

    with pytest.raises(RunStateError, match="written by another process or notebook kernel"):
        proof.conclude(old_tab, comparison, rounds, report)

    assert summary(world.ctx())["verdict"] == "FAIL"


def test_a_phase_that_changes_the_recovery_withdraws_the_verdict_and_a_new_scope_is_refused(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = world.ctx()
    provision_and_replicate(ctx)
    assert verify_in_process(ctx)["verdict"] == "PASS"
    monkeypatch.setattr(guide, "lock_for_phase", lambda _: False)  # this test holds no run lock

    again = guide.start_phase(str(world.params_file()), str(ctx.ledger.run_dir), "06_batch_replication")

    assert summary(again)["verdict"] == "INCOMPLETE" and "phase 06_batch_replication ran after" in summary(again)[
        "reason"]
    assert again.ledger.state.verdict is not None and again.ledger.state.verdict.verdict == "INCOMPLETE"
    narrowed = open_run(world.params_file(key_prefix="logs/"), ctx.ledger.run_dir)
    with pytest.raises(ScopeError, match="A run has one scope"):
        batch_job.create_replication_job(narrowed)
