"""End-to-end drills: the whole runbook on the embedded backend, as `runbook drill` runs it."""

from __future__ import annotations

import base64
import json
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import boto3
import pandas as pd
import pytest
from botocore.config import Config
from runbook_fixtures import backend_secrets, drill_summary, replace_with_one_part_changed, write_requests

from runbook_lib import cli, history
from runbook_lib.accounts import APP_ID, make_client
from runbook_lib.call_log import read_calls
from runbook_lib.drill import DRILL_PARAMS, phase_names, run_phases, select_phases
from runbook_lib.embedded import moto_state
from runbook_lib.embedded.seed import RECOVER, GroundTruth, seed_vault
from runbook_lib.embedded.server import (
    RECOVERY_ACCOUNT,
    RECOVERY_PROFILE,
    REGION,
    VAULT_ACCOUNT,
    VAULT_PROFILE,
    EmbeddedBackend,
    start_backend,
)
from runbook_lib.errors import PhaseError

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("drill"), pytest.mark.usefixtures("restored_environ")]

RECOVERY_BUCKET = "recovery-golden-copies"
THROUGH_JOB = select_phases(None, "06")
THROUGH_VERIFY = select_phases(None, "07")
JOB_PHASE = "06_batch_replication"
VERIFY_PHASE = "07_verify"


def test_drill_with_failed_tasks_passes_after_a_retry_round_and_its_counts_equal_the_ground_truth(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    # A relative run folder, as `make drill` passes it: the kernels run elsewhere and must still find it.
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "runs" / "drill"

    status = cli.main(["drill", "--objects", "100", "--out", "runs/drill", "--fail-tasks", "0.2", "--fault-seed", "5"])

    assert status == 0
    # The backend failed a fifth of the first job's tasks; one retry round recovered every one of them.
    summary = drill_summary(out)
    failed_first = summary["first_round_failed_tasks"]
    assert failed_first, "the faults should have failed some tasks of the first job"
    assert {f["error_code"] for f in failed_first} == {"InternalError"}
    rounds = summary["retry_rounds"]
    assert len(rounds) == 1 and rounds[0]["versions"] == len(failed_first) and rounds[0]["failed"] == 0
    # The terminal shows the phases and the verdict, not the kernels' start-up warnings.
    assert "WARNING" not in capfd.readouterr().err
    truth = json.loads((out / "ground_truth.json").read_text())
    assert summary["verdict"] == "PASS"
    assert summary["counts"]["source_versions"] == truth["counts"]["source_versions"]
    assert summary["counts"]["expected"] == truth["counts"]["expected"]
    assert summary["counts"]["recovered"] == truth["counts"]["expected"]
    assert summary["counts"]["missing"] == 0 and summary["counts"]["failed_tasks"] == 0
    assert [p["phase"] for p in summary["phases"]] == phase_names()
    assert all(p["status"] == "ok" and p["seconds"] > 0 for p in summary["phases"])
    assert summary["recovery_seconds"] > 0
    html = (out / "evidence.html").read_text()
    assert "Verdict: PASS" in html and "Phase 06" in html and "Phase 08" in html
    assert (out / "details" / "all_versions.csv").exists()
    # Golden copies uploaded in parts were recovered with their multipart ETags and checksum, and the
    # evidence says how content was compared.
    assert sorted(v["parts"] for v in truth["versions"] if v["parts"]) == [2, 3]
    assert summary["content_checks"]["multipart_etag"] == 2 and summary["content_checks"]["checksum_compared"] == 1
    assert "uploaded in parts" in html and "compared as it is" in html
    # Every phase's calls are in the run folder's call log, which the evidence links.
    assert {call["phase"] for call in read_calls(out)} == set(phase_names())
    assert 'href="calls.jsonl"' in html
    # The verdict is in the history next to the run folders, and reconciled for an auditor.
    records = history.read_history(tmp_path / "runs" / "history.jsonl").records
    assert [(r["verdict"], r["run_folder"], r["counts"]) for r in records] == [
        ("PASS", str(out.resolve()), summary["counts"])]
    assert records[0]["recovery_seconds"] == summary["recovery_seconds"]
    assert set(records[0]["phase_seconds"]) == {p for p in phase_names() if p < "07"}
    page = (out / "reconciliation.html").read_text()
    assert f"<td>recovered identical</td><td>{summary['counts']['recovered']:,}</td>" in page
    assert "Reconciliation: PASS" in html and "The trend over runs" in html


def _client(service: str, profile: str) -> Any:
    return boto3.Session(profile_name=profile).client(service)


def _test_client(service: str, side: str) -> Any:
    """Return a client of the vault or recovery account without the runbook's app id: no call log expects its calls.

    A plain session, not `session_for`, whose app id would also mark the AssumeRole calls of the profile's role.
    """
    session = boto3.Session(profile_name=VAULT_PROFILE if side == "vault" else RECOVERY_PROFILE, region_name=REGION)
    return make_client(session, service, region_name=REGION, config=Config())


def _job_ids() -> set[str]:
    """Return the ids of every Batch Operations job in the vault account."""
    return {job["JobId"] for job in _test_client("s3control", "vault").list_jobs(AccountId=VAULT_ACCOUNT)["Jobs"]}


def _job_status(job_id: str) -> str:
    return str(_test_client("s3control", "vault").describe_job(AccountId=VAULT_ACCOUNT, JobId=job_id)["Job"]["Status"])


def _recovered_versions() -> int:
    pages = _test_client("s3", "recovery").get_paginator("list_object_versions").paginate(Bucket=RECOVERY_BUCKET)
    return sum(len(page.get("Versions", [])) for page in pages)


def _state() -> dict[str, list[str]]:
    """Return what a run could create in either account: buckets, roles, policies, keys, topics, rules."""
    found: dict[str, list[str]] = {}
    for side, account in (("vault", VAULT_ACCOUNT), ("recovery", RECOVERY_ACCOUNT)):
        found[f"{account} buckets"] = sorted(b["Name"] for b in _test_client("s3", side).list_buckets()["Buckets"])
        found[f"{account} roles"] = sorted(r["RoleName"] for r in _test_client("iam", side).list_roles()["Roles"])
        found[f"{account} policies"] = sorted(
            p["PolicyName"] for p in _test_client("iam", side).list_policies(Scope="Local")["Policies"])
        found[f"{account} keys"] = sorted(k["KeyId"] for k in _test_client("kms", side).list_keys()["Keys"])
        found[f"{account} topics"] = sorted(t["TopicArn"] for t in _test_client("sns", side).list_topics()["Topics"])
        found[f"{account} rules"] = sorted(r["Name"] for r in _test_client("events", side).list_rules()["Rules"])
    return found


def _ledger(run_dir: Path) -> dict[str, Any]:
    return dict(json.loads((run_dir / "ledger.json").read_text()))


@dataclass(frozen=True)
class VerifiedDrill:
    """A drill verified by phases 00-07 on a backend that recorded every request it served, then run again.

    The first run is not confirmed: it stops at phase 06's gate (`waited`, with the job's id and
    status and the recovery bucket's versions then); phase 06 runs again confirmed (`after_confirming`)
    and phase 07 verifies, as an operator who confirms later does. A second run of phases 00-07 on
    the same run folder follows; `ledgers`, `verdicts` and `states` are each run's.
    """

    backend: EmbeddedBackend
    truth: GroundTruth
    run_dir: Path
    first_preflight: str  # the first run's executed phase 00 notebook (the second run's replaced it)
    waited: PhaseError
    waiting: tuple[str, str, int]
    after_confirming: tuple[str, str, int]
    ledgers: tuple[dict[str, Any], dict[str, Any]]
    verdicts: tuple[str, str]
    states: tuple[dict[str, list[str]], dict[str, list[str]]]
    new_jobs: set[str]


@pytest.fixture(scope="class")
def verified_drill(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VerifiedDrill]:
    folder = tmp_path_factory.mktemp("verified-drill")
    saved = dict(os.environ)  # run_phases exports the backend's variables
    with start_backend(config_file=folder / "aws-config", record_requests=True) as backend:
        try:
            backend.reset()
            os.environ.update(backend.environ())
            truth = seed_vault(backend.endpoint, 120, 2)
            run_dir = folder / "run"
            jobs_before = _job_ids()

            def run(phases: list[str], confirm: bool) -> None:
                run_phases(DRILL_PARAMS, run_dir, phases, confirm_job=confirm, extra_env=backend.environ())

            with pytest.raises(PhaseError) as stopped:
                run(THROUGH_JOB, False)
            job_id = _ledger(run_dir)["jobs"]["recovery-1"]["job_id"]
            waiting = (job_id, _job_status(job_id), _recovered_versions())
            run([JOB_PHASE], True)
            after_confirming = (_ledger(run_dir)["jobs"]["recovery-1"]["job_id"], _job_status(job_id),
                                _recovered_versions())
            run([VERIFY_PHASE], True)
            ledgers, verdicts, states = [_ledger(run_dir)], [drill_summary(run_dir)["verdict"]], [_state()]
            # The second run's phase 07 must write its own verdict.
            (run_dir / "summary.json").unlink()
            first_preflight = (run_dir / "notebooks" / "00_preflight.ipynb").read_text()
            run(THROUGH_VERIFY, True)
            ledgers.append(_ledger(run_dir))
            verdicts.append(drill_summary(run_dir)["verdict"])
            states.append(_state())
            yield VerifiedDrill(backend, truth, run_dir, first_preflight, stopped.value, waiting, after_confirming,
                                (ledgers[0], ledgers[1]), (verdicts[0], verdicts[1]), (states[0], states[1]),
                                _job_ids() - jobs_before)
        finally:
            os.environ.clear()
            os.environ.update(saved)
            backend.reset()


def _outcome_rows(ledger: dict[str, Any]) -> list[dict[str, Any]]:
    """Return every outcome the ledger records, of every phase."""
    return [row for rows in ledger["outcomes"].values() for row in rows]


class TestAfterAVerifiedDrill:
    """A job that waits for its confirmation, a second run that changes nothing, what a drill leaves for
    auditors, and what a later check finds when the recovery is damaged."""

    def test_an_unconfirmed_job_waits_without_replicating_until_confirmed(self, verified_drill: VerifiedDrill) -> None:
        waited = verified_drill.waited
        assert (waited.phase, waited.error_name) == (JOB_PHASE, "ConfirmationRequired")
        assert waited.awaits_confirmation
        assert "confirm_job=True" in waited.error_value and "--confirm-job" in waited.error_value
        job_id, status, recovered = verified_drill.waiting
        assert (status, recovered) == ("Suspended", 0)
        # Phase 06 run again, confirmed: the same job, run to its end, every expected version recovered.
        assert verified_drill.after_confirming == (job_id, "Complete", verified_drill.truth.counts()["expected"])

    def test_both_runs_verify_the_recovery(self, verified_drill: VerifiedDrill) -> None:
        assert verified_drill.verdicts == ("PASS", "PASS")

    def test_a_second_run_on_the_same_folder_creates_nothing(self, verified_drill: VerifiedDrill) -> None:
        first, second = verified_drill.ledgers
        assert "created" in {row["status"] for row in _outcome_rows(first)}
        assert second["created"] == first["created"]
        assert second["jobs"]["recovery-1"]["job_id"] == first["jobs"]["recovery-1"]["job_id"]
        assert verified_drill.new_jobs == {first["jobs"]["recovery-1"]["job_id"]}
        assert verified_drill.states[1] == verified_drill.states[0]

    def test_a_second_run_reports_the_same_resources_unchanged(self, verified_drill: VerifiedDrill) -> None:
        first, second = verified_drill.ledgers
        changed = [row for row in _outcome_rows(second) if row["status"] != "unchanged"]
        assert changed == []
        assert {(row["resource"], row["identifier"]) for row in _outcome_rows(second)} >= {
            (row["resource"], row["identifier"]) for row in _outcome_rows(first)}

    def test_the_call_log_lists_every_request_of_every_phase_and_no_secret(self, verified_drill: VerifiedDrill) -> None:
        calls = read_calls(verified_drill.run_dir)
        served = [r for r in verified_drill.backend.served_requests() if f"app/{APP_ID}" in r.user_agent]

        # Every request the runbook's kernels sent is in the run folder's log, with the id the backend gave it.
        assert len(calls) == len(served) > 500
        assert Counter(c["request_id"] for c in calls) == Counter(r.request_id for r in served)
        assert {c["phase"] for c in calls} == {p for p in phase_names() if p < "08"}
        assert {c["service"] for c in calls} >= {"sts", "s3", "kms", "iam", "s3control", "sns", "sqs", "events"}
        assert sum(1 for c in calls if (c["service"], c["operation"]) == ("s3control", "CreateJob")) == 1
        text = (verified_drill.run_dir / "calls.jsonl").read_text(encoding="utf-8")
        secrets = backend_secrets(verified_drill.backend.config_file)
        assert len(secrets) > 10 and [secret for secret in secrets if secret in text] == []
        vault = moto_state.find_bucket(verified_drill.truth.vault_bucket)
        bodies = [v.value[:48] for name in list(vault.keys)[:40] for v in moto_state.versions_of(vault, name)
                  if not moto_state.is_delete_marker(v) and v.size >= 48]
        assert bodies and not any(base64.b64encode(b).decode() in text or b.hex() in text for b in bodies)
        assert '"Statement"' not in text and "Credential=" not in text

    def test_the_drill_checked_its_policies_and_a_plan_after_it_lists_nothing_to_change(
        self, verified_drill: VerifiedDrill, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        run_dir = verified_drill.run_dir
        analyzer_calls = [c for c in read_calls(run_dir) if c["service"] == "accessanalyzer"]
        assert {(c["phase"], c["operation"]) for c in analyzer_calls} >= {
            ("00_preflight", "ValidatePolicy"), ("00_preflight", "CheckNoNewAccess"),
            ("00_preflight", "CheckAccessNotGranted")}
        assert all(c["error_code"] is None for c in analyzer_calls)
        assert "IAM Access Analyzer on the policies" in verified_drill.first_preflight
        for name, value in verified_drill.backend.environ().items():
            monkeypatch.setenv(name, value)
        served_before = len(verified_drill.backend.served_requests())

        status = cli.main(["plan", "--params", str(DRILL_PARAMS), "--out", str(run_dir), "--to", "07"])

        assert status == 0
        document = json.loads((run_dir / "plan.json").read_text())
        assert set(document["counts"]) == {"leave"}
        assert [w for p in document["phases"] for w in p["writes"]] == []
        job = next(s for p in document["phases"] if p["phase"].startswith("06") for s in p["steps"])
        assert (job["action"], job["identifier"]) == ("leave", json.loads(
            (run_dir / "ledger.json").read_text())["jobs"]["recovery-1"]["job_id"])
        served = verified_drill.backend.served_requests()[served_before:]
        planned = [r for r in served if f"app/{APP_ID}" in r.user_agent]
        assert planned and write_requests(planned) == []

    def test_damage_after_a_drill_fails_reverification_with_exactly_those_versions(
        self, verified_drill: VerifiedDrill, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        backend, truth, run_dir = verified_drill.backend, verified_drill.truth, verified_drill.run_dir
        for name, value in backend.environ().items():
            monkeypatch.setenv(name, value)
        assert drill_summary(run_dir)["verdict"] == "PASS"
        assert drill_summary(run_dir)["content_checks"]["multipart_etag"] == 2

        recovered = [v for v in truth.versions if v.expected_outcome == RECOVER]
        in_parts = next(v for v in recovered if v.parts == 3)
        whole = [v for v in recovered if not v.parts]
        removed = next(v for v in whole if v.object_lock_mode is None and v.object_lock_legal_hold_status != "ON")
        extended = next(v for v in whole if v.object_lock_mode == "GOVERNANCE" and v is not removed)
        released = next(
            v for v in whole if v.object_lock_legal_hold_status == "ON" and v not in (removed, extended))
        s3 = _client("s3", "drill-recovery")
        s3.delete_object(Bucket=RECOVERY_BUCKET, Key=removed.key, VersionId=removed.version_id)
        later = datetime.now(timezone.utc) + timedelta(days=4000)
        s3.put_object_retention(Bucket=RECOVERY_BUCKET, Key=extended.key, VersionId=extended.version_id,
                                Retention={"Mode": "GOVERNANCE", "RetainUntilDate": later})
        s3.put_object_legal_hold(Bucket=RECOVERY_BUCKET, Key=released.key, VersionId=released.version_id,
                                 LegalHold={"Status": "OFF"})
        replace_with_one_part_changed(s3, RECOVERY_BUCKET, in_parts)

        with pytest.raises(PhaseError) as stopped:
            run_phases(DRILL_PARAMS, run_dir, ["07_verify"], confirm_job=True, extra_env=backend.environ())
        assert (stopped.value.phase, stopped.value.error_name) == ("07_verify", "NotVerifiedError")
        assert "NOT verified" in stopped.value.error_value
        assert stopped.value.notebook_path == str(run_dir.resolve() / "notebooks" / "07_verify.ipynb")

        summary = drill_summary(run_dir)
        assert summary["verdict"] == "FAIL"
        # Each later verification of the same run folder (the second run's, then this one) is a record of
        # its own, marked as such in the trend.
        past = history.read_history(run_dir.parent / "history.jsonl")
        assert [(r["verdict"], r["run_folder"]) for r in past.records] == [
            ("PASS", str(run_dir.resolve())), ("PASS", str(run_dir.resolve())), ("FAIL", str(run_dir.resolve()))]
        assert past.records[2]["counts"] == summary["counts"]
        trend = history.trend_lines(past)
        assert "re-verification" not in trend[1]
        assert all("re-verification of the run of line 1" in line for line in trend[2:4])
        details = pd.read_csv(run_dir / "details" / "all_versions.csv", keep_default_na=False)
        damaged = details[details["category"] != "recovered_identical"]
        damaged = damaged[~damaged["category"].isin(["not_expected", "archived_not_recovered"])]
        by_version = {(row.key, row.version_id): row for row in damaged.itertuples()}
        assert set(by_version) == {(v.key, v.version_id) for v in (removed, extended, released, in_parts)}
        # The removed version was retried; Batch Replication refuses versions deleted at the destination.
        gone = by_version[(removed.key, removed.version_id)]
        assert bool(gone.missing_in_recovery)
        assert gone.category in ("missing_in_recovery", "task_failed")
        if gone.category == "task_failed":
            assert gone.error_code == "DstObjectHardDeleted"
        assert by_version[(extended.key, extended.version_id)].category == "retain_until_differs"
        assert by_version[(released.key, released.version_id)].category == "legal_hold_differs"
        # One changed byte in one part of a golden copy in parts: another multipart ETag, another checksum.
        tampered = by_version[(in_parts.key, in_parts.version_id)]
        assert tampered.category == "content_differs"
        assert tampered.vault_etag != tampered.recovery_etag and tampered.recovery_etag.endswith("-3")
        assert tampered.vault_checksum != tampered.recovery_checksum
        assert summary["counts"]["retention_mismatches"] == 1
        assert summary["counts"]["legal_hold_mismatches"] == 1
        assert summary["counts"]["missing"] == 1
        assert summary["counts"]["content_mismatches"] == 1
        assert "uploaded in parts" in summary["content_basis"]
