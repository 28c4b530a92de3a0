"""The Batch Replication job: its exact CreateJob request, idempotency, waiting, confirming, following.

The request tests stub the S3 Control client of a real run context (the embedded backend checks
the identities); the watcher tests use a fake context whose describe_job follows a script, and a
fake clock, so no test waits.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import botocore.session
import pytest
from botocore.stub import Stubber
from runbook_fixtures import DRILL_PARAMS, CtxFactory, Drill

from runbook_lib import batch_job
from runbook_lib.accounts import AccountSessions, Identity
from runbook_lib.batch_job import (
    client_request_token,
    confirm_job,
    create_replication_job,
    follow_job,
    wait_for_status,
)
from runbook_lib.context import RunContext
from runbook_lib.errors import ConfirmationRequired, JobError
from runbook_lib.ledger import Ledger, open_ledger
from runbook_lib.params import RunbookParams, load_params
from runbook_lib.run_state import JobRecord

pytestmark = pytest.mark.xdist_group("runbook-batch-job")

JOB_ID = "0b6e4c1a-7f2d-4e8b-9c3a-5d1f2e3a4b5c"


# ------------------------------------------------------------------------------ the request


def test_client_request_token_is_stable_per_run_and_differs_across_runs_and_purposes() -> None:
    tokens = {
        client_request_token("drill"), client_request_token("drill-2"),
        client_request_token("drill", "retry-1"), client_request_token("drill", "retry-2"),
    }

    # A re-run in a new kernel, or after an upgrade, must find the job the first run created.
    assert client_request_token("drill") == "dbb599ab-5ff9-5a0c-a763-f1fb59558d74"
    assert client_request_token("drill") == client_request_token("drill", "recovery")
    assert len(tokens) == 4
    assert all(len(token) <= 64 and uuid.UUID(token) for token in tokens)


def _expected_create_job(params: RunbookParams, token: str, filters: dict[str, Any]) -> dict[str, Any]:
    reports = f"arn:aws:s3:::{params.report_bucket}"
    return {
        "AccountId": "111111111111",
        "ConfirmationRequired": True,
        "Operation": {"S3ReplicateObject": {}},
        "Report": {
            "Bucket": reports,
            "Format": "Report_CSV_20180820",
            "Enabled": True,
            "Prefix": "batch-replication-reports",
            "ReportScope": "AllTasks",
            "ExpectedBucketOwner": "111111111111",
        },
        "ClientRequestToken": token,
        "Priority": 10,
        "RoleArn": f"arn:aws:iam::111111111111:role/{params.batch_role_name}",
        "Description": f"Recover vault-golden-copies into {params.recovery.bucket} ({params.run_id})",
        "ManifestGenerator": {
            "S3JobManifestGenerator": {
                "ExpectedBucketOwner": "111111111111",
                "SourceBucket": "arn:aws:s3:::vault-golden-copies",
                "EnableManifestOutput": True,
                "ManifestOutputLocation": {
                    "ExpectedManifestBucketOwner": "111111111111",
                    "Bucket": reports,
                    "ManifestPrefix": "batch-replication-manifests",
                    "ManifestEncryption": {"SSES3": {}},
                    "ManifestFormat": "S3InventoryReport_CSV_20211130",
                },
                "Filter": filters,
            }
        },
        "Tags": [{"Key": "Project", "Value": "vault-recovery"}, {"Key": "RunbookRunId", "Value": params.run_id}],
    }


WINDOW_START = datetime(2025, 3, 1, tzinfo=timezone.utc)
WINDOW_END = datetime(2026, 11, 1, 12, 30, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("job", "filters"),
    [
        ({}, {"EligibleForReplication": True, "ObjectReplicationStatuses": ["REPLICA"]}),
        ({"replication_statuses": ["NONE", "FAILED"], "created_after": "2025-03-01T00:00:00Z",
          "created_before": "2026-11-01T12:30:00Z"},
         {"EligibleForReplication": True, "ObjectReplicationStatuses": ["NONE", "FAILED"],
          "CreatedAfter": WINDOW_START, "CreatedBefore": WINDOW_END}),
    ],
    ids=["replicas", "window"],
)
def test_create_job_request_is_exactly_seed_step_7(
    aws_env: Drill, make_ctx: CtxFactory, job: dict[str, Any], filters: dict[str, Any]
) -> None:
    ctx = make_ctx(job=job)
    params = ctx.params
    expected = _expected_create_job(params, client_request_token(params.run_id), filters)

    with Stubber(ctx.vault("s3control")) as s3control:
        s3control.add_response("create_job", {"JobId": JOB_ID}, expected_params=expected)
        created = create_replication_job(ctx)
        s3control.assert_no_pending_responses()

    assert created == (JOB_ID, True)
    assert batch_job.current_job_id(ctx) == JOB_ID
    assert [(r["kind"], r["id"], r["token"]) for r in ctx.ledger.created("batch_job")] == [
        ("batch_job", JOB_ID, expected["ClientRequestToken"])]


def test_create_job_again_finds_the_runs_job_instead_of_creating_another(aws_env: Drill, make_ctx: CtxFactory) -> None:
    first = make_ctx()
    first.ledger.save_job(JobRecord(purpose="recovery-1", job_id=JOB_ID, attempt=1))
    again = make_ctx()

    with Stubber(again.vault("s3control")) as s3control:
        s3control.add_response("describe_job", {"Job": {"JobId": JOB_ID, "Status": "Suspended"}},
                               expected_params={"AccountId": "111111111111", "JobId": JOB_ID})
        found = create_replication_job(again)
        s3control.assert_no_pending_responses()

    assert found == (JOB_ID, False)


def test_create_job_replaces_a_job_the_service_no_longer_knows(aws_env: Drill, make_ctx: CtxFactory) -> None:
    ctx = make_ctx()
    ctx.ledger.save_job(JobRecord(purpose="recovery-1", job_id="expired-job", attempt=1))
    request = batch_job.replication_job_request(ctx)

    with Stubber(ctx.vault("s3control")) as s3control:
        s3control.add_client_error("describe_job", "NoSuchJob", http_status_code=404)
        s3control.add_response("create_job", {"JobId": JOB_ID}, expected_params=request)
        created = create_replication_job(ctx)

    assert created == (JOB_ID, True)
    assert batch_job.current_job_id(ctx) == JOB_ID
    # A new attempt, with a token of its own: the expired job's token would find nothing new.
    assert [job.attempt for job in ctx.ledger.state.recovery_jobs()] == [1, 2]
    assert request["ClientRequestToken"] != batch_job.client_request_token(ctx.params.run_id)


# ------------------------------------------------------------------------------ the watcher


def job(status: str, total: int = 0, succeeded: int = 0, failed: int = 0) -> dict[str, Any]:
    return {"JobId": JOB_ID, "Status": status, "Priority": 10,
            "ProgressSummary": {"TotalNumberOfTasks": total, "NumberOfTasksSucceeded": succeeded,
                                "NumberOfTasksFailed": failed}}


@dataclass
class ScriptedS3Control:
    """describe_job answers from a script (the last answer repeats); update_job_status is recorded."""

    script: list[dict[str, Any]]
    described: int = 0
    updates: list[dict[str, Any]] = field(default_factory=list)

    def describe_job(self, AccountId: str, JobId: str) -> dict[str, Any]:  # boto3's argument names
        assert (AccountId, JobId) == ("111111111111", JOB_ID)
        answer = self.script[min(self.described, len(self.script) - 1)]
        self.described += 1
        return {"Job": answer}

    def update_job_status(self, **request: Any) -> dict[str, Any]:
        self.updates.append(request)
        self.script = [job("Ready")]
        return {"JobId": JOB_ID, "Status": "Ready"}


@dataclass
class FakeContext:
    """What batch_job reads from a run context: parameters, the ledger and the S3 Control client."""

    params: RunbookParams
    ledger: Ledger
    s3control: ScriptedS3Control

    def vault(self, service: str) -> ScriptedS3Control:
        assert service == "s3control"
        return self.s3control


class FakeClock:
    """Monotonic time that moves only when someone sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(batch_job, "time", SimpleNamespace(monotonic=fake.monotonic, sleep=fake.sleep))
    return fake


def fake_ctx(tmp_path: Path, *script: dict[str, Any]) -> Any:
    """Return a context whose recovery job (JOB_ID) answers from `script`."""
    ledger = open_ledger(tmp_path, create=True)
    ledger.save_job(JobRecord(purpose="recovery-1", job_id=JOB_ID, attempt=1))
    return FakeContext(load_params(DRILL_PARAMS), ledger, ScriptedS3Control(list(script)))


def recorded(ctx: Any) -> JobRecord:
    """Return what the run state holds about the fake context's job."""
    record = ctx.ledger.state.job(JOB_ID)
    assert record is not None
    return record


@dataclass
class Recorder:
    seen: list[tuple[str, int, int]] = field(default_factory=list)

    def on_progress(self, job: dict[str, Any]) -> None:
        summary = job["ProgressSummary"]
        self.seen.append((job["Status"], summary["NumberOfTasksSucceeded"], summary["NumberOfTasksFailed"]))


def test_wait_reports_every_look_to_subscribers_and_returns_at_the_status(tmp_path: Path, clock: FakeClock) -> None:
    ctx = fake_ctx(tmp_path, job("Preparing"), job("Active", 10, 3), job("Active", 10, 3),
                   job("Active", 10, 8, 1), job("Complete", 10, 9, 1))
    recorder = Recorder()

    final = wait_for_status(ctx, JOB_ID, batch_job.TERMINAL, [recorder], sleep=clock.sleep)

    assert final["Status"] == "Complete"
    assert recorder.seen == [("Preparing", 0, 0), ("Active", 3, 0), ("Active", 3, 0), ("Active", 8, 1),
                             ("Complete", 9, 1)]
    assert clock.sleeps == [1.0] * 4
    history = recorded(ctx).progress
    assert [(h.status, h.succeeded, h.failed) for h in history] == [
        ("Preparing", 0, 0), ("Active", 3, 0), ("Active", 8, 1), ("Complete", 9, 1)]


@pytest.mark.parametrize("terminal", sorted(batch_job.TERMINAL))
def test_wait_stops_on_a_terminal_status_it_was_not_waiting_for(
    tmp_path: Path, clock: FakeClock, terminal: str
) -> None:
    ctx = fake_ctx(tmp_path, job("New"), job("Preparing"), job(terminal), job("Active"))

    final = wait_for_status(ctx, JOB_ID, {"Suspended"}, sleep=clock.sleep)

    assert final["Status"] == terminal
    assert ctx.s3control.described == 3


def test_wait_gives_up_after_the_timeout_and_says_what_to_do(tmp_path: Path, clock: FakeClock) -> None:
    ctx = fake_ctx(tmp_path, job("Active", 100, 1))

    with pytest.raises(JobError) as gave_up:
        wait_for_status(ctx, JOB_ID, batch_job.TERMINAL, timeout_seconds=3, sleep=clock.sleep)

    message = str(gave_up.value)
    assert f"job {JOB_ID} is still Active after 3 s" in message
    assert "job.timeout_minutes" in message
    assert 3 < clock.now <= 3 + ctx.params.job.poll_seconds
    assert recorded(ctx).progress[-1].status == "Active"


def test_follow_stops_at_a_job_waiting_for_confirmation_and_says_how_to_confirm(
    tmp_path: Path, clock: FakeClock
) -> None:
    ctx = fake_ctx(tmp_path, job("Suspended", 72))

    with pytest.raises(ConfirmationRequired) as waiting:
        follow_job(ctx, JOB_ID)

    message = str(waiting.value)
    assert JOB_ID in message
    assert "confirm_job=True" in message and "--confirm-job" in message
    assert ctx.s3control.updates == []


def test_follow_watches_a_running_job_to_its_end_and_keeps_the_summary(tmp_path: Path, clock: FakeClock) -> None:
    ctx = fake_ctx(tmp_path, job("Active", 72), job("Active", 72, 40), job("Complete", 72, 71, 1))
    ctx.params = ctx.params.model_copy(update={"job": ctx.params.job.model_copy(update={"poll_seconds": 0.0})})
    recorder = Recorder()

    final = follow_job(ctx, JOB_ID, [recorder])

    assert final["Status"] == "Complete"
    assert recorder.seen[-1] == ("Complete", 71, 1)
    summary = recorded(ctx).final
    assert summary is not None
    assert (summary["status"], summary["total_tasks"], summary["succeeded_tasks"], summary["failed_tasks"]) == (
        "Complete", 72, 71, 1)


@pytest.mark.parametrize("status", ["Ready", "Active", "Paused", "Complete", "Failed", "Cancelled"])
def test_confirm_leaves_a_job_past_confirmation_alone(tmp_path: Path, status: str) -> None:
    ctx = fake_ctx(tmp_path, job(status))

    answer = confirm_job(ctx, JOB_ID)

    assert answer["Status"] == status
    assert ctx.s3control.updates == []
    assert recorded(ctx).confirmed is None


def test_confirm_moves_a_suspended_job_to_ready_and_records_when(tmp_path: Path) -> None:
    ctx = fake_ctx(tmp_path, job("Suspended", 72))

    answer = confirm_job(ctx, JOB_ID, "reviewed the manifest")

    assert answer["Status"] == "Ready"
    assert ctx.s3control.updates == [{"AccountId": "111111111111", "JobId": JOB_ID,
                                      "RequestedJobStatus": "Ready", "StatusUpdateReason": "reviewed the manifest"}]
    assert recorded(ctx).confirmed


@pytest.mark.parametrize("status", ["New", "Preparing"])
def test_confirm_refuses_a_job_not_yet_waiting_for_confirmation(tmp_path: Path, status: str) -> None:
    ctx = fake_ctx(tmp_path, job(status))

    with pytest.raises(JobError, match=f"is {status}; it can be confirmed only once it awaits confirmation"):
        confirm_job(ctx, JOB_ID)
    assert ctx.s3control.updates == []


# ------------------------------------------------------------------------------ no server at all


def test_a_context_with_stubbed_clients_needs_no_backend(tmp_path: Path) -> None:
    # The client factory is the seam: every AWS call of the phase goes through botocore's Stubber,
    # so the exact request is checked and nothing listens anywhere.
    params = load_params(DRILL_PARAMS)
    stubbed: dict[str, Any] = {}

    def factory(session: Any, service: str, region: str) -> Any:
        client = botocore.session.get_session().create_client(
            service, region_name=region, aws_access_key_id="stub", aws_secret_access_key="stub")
        stubbed[service] = Stubber(client)
        return client

    sessions = AccountSessions(vault=None, recovery=None,  # type: ignore[arg-type]  # the factory never asks them
                               vault_identity=Identity("111111111111", "arn:aws:iam::111111111111:role/v", "v"),
                               recovery_identity=Identity("222222222222", "arn:aws:iam::222222222222:role/r", "r"))
    ctx = RunContext(params=params, ledger=open_ledger(tmp_path, create=True), sessions=sessions,
                     phase="06_batch_replication", client_factory=factory)
    request = batch_job.replication_job_request(ctx)
    ctx.vault("s3control")
    with stubbed["s3control"] as s3control:
        s3control.add_response("create_job", {"JobId": JOB_ID}, expected_params=request)
        created = create_replication_job(ctx)

    assert created == (JOB_ID, True)
    assert recorded(ctx).token == request["ClientRequestToken"]
