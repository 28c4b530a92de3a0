"""How a Batch Operations job moves through its statuses in the embedded backend, and why it stops.

Jobs are created through the S3 Control API (or, where only the job store is under test, on a
`JobStore` directly) over buckets whose versions are written straight into moto. The tasks run
through a fake replication function, so each test decides which tasks fail; the real replication
is tested in tests/test_replication.py.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from moto.s3.models import s3_backends
from runbook_fixtures import Drill

from runbook_lib.accounts import make_client, session_for
from runbook_lib.embedded.faults import Faults
from runbook_lib.embedded.replication import TaskResult
from runbook_lib.embedded.s3control.models import JobStore
from runbook_lib.embedded.s3control.runner import TaskFunctions
from runbook_lib.embedded.server import REGION, VAULT_ACCOUNT, VAULT_PROFILE
from runbook_lib.policies import job_status_event_pattern

pytestmark = pytest.mark.xdist_group("batch-lifecycle")

BATCH_TRUST = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "batchoperations.s3.amazonaws.com"},
                   "Action": "sts:AssumeRole"}],
}
ALLOW_S3 = {"Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}], "Version": "2012-10-17"}
TERMINAL = {"Complete", "Failed", "Cancelled"}


def _replicate(account: str, bucket: str, key: str, version_id: str, role_arn: str) -> TaskResult:
    """Fail every task whose key says so; succeed for the rest."""
    if "fail" in key:
        return TaskResult(False, 500, "DstPutObjectNotPermitted", "Access denied, check the destination")
    return TaskResult(True, 200, "", "success")


def _replicate_mostly_failing(account: str, bucket: str, key: str, version_id: str, role_arn: str) -> TaskResult:
    """Fail nine tasks in ten, chosen by the version id so that the choice is repeatable."""
    if int(hashlib.md5(version_id.encode()).hexdigest(), 16) % 10:
        return TaskResult(False, 500, "DstPutObjectNotPermitted", "Access denied")
    return TaskResult(True, 200, "", "success")


FAKE = TaskFunctions(_replicate, lambda account, bucket: lambda version: True)


@dataclass(frozen=True)
class World:
    """The module's job role and report bucket, and a way to make source buckets."""

    role_arn: str
    report: str
    s3: Any
    iam: Any

    def source(self, keys: list[str], prefix: str = "src") -> str:
        """Return a new versioned bucket holding one version of each key (written into moto directly)."""
        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        self.s3.create_bucket(Bucket=name)
        self.s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        backend = s3_backends[VAULT_ACCOUNT]["aws"]
        for key in keys:
            backend.put_object(name, key, key.encode(), disable_notification=True)
        return name

    def role(self, policy: dict[str, Any]) -> str:
        """Return the ARN of a new batch role with this identity policy."""
        name = f"lifecycle-{uuid.uuid4().hex[:10]}"
        arn = self.iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(BATCH_TRUST))["Role"]["Arn"]
        self.iam.put_role_policy(RoleName=name, PolicyName="p", PolicyDocument=json.dumps(policy))
        return str(arn)


@pytest.fixture(scope="module")
def world(drill: Drill) -> Iterator[World]:
    """Create the role and report bucket; make the module's job store fast and its tasks fake."""
    s3, iam = drill.client("s3"), drill.client("iam")
    report = f"lifecycle-report-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=report)
    world = World("", report, s3, iam)
    world = World(world.role(ALLOW_S3), report, s3, iam)
    store = drill.backend.app.jobs_app.store
    store.min_state_seconds = 0.02
    store.task_functions = FAKE
    yield world
    store.task_functions = None
    store.min_state_seconds = 0.3


@pytest.fixture
def store(drill: Drill) -> Iterator[JobStore]:
    """Return the backend's job store; whatever a test changes on it is put back afterwards."""
    jobs = drill.backend.app.jobs_app.store
    saved = (jobs.tasks_per_second, jobs.task_functions)
    yield jobs
    jobs.tasks_per_second, jobs.task_functions = saved


@pytest.fixture
def s3control(aws_env: Drill) -> Any:
    """Return an S3 Control client of the vault account."""
    return make_client(session_for(VAULT_PROFILE, REGION), "s3control", region_name=REGION)


def _request(world: World, bucket: str, **changes: Any) -> dict[str, Any]:
    request: dict[str, Any] = {
        "AccountId": VAULT_ACCOUNT,
        "ConfirmationRequired": False,
        "Operation": {"S3ReplicateObject": {}},
        "Report": {"Bucket": f"arn:aws:s3:::{world.report}", "Format": "Report_CSV_20180820", "Enabled": True,
                   "Prefix": f"reports/{bucket}", "ReportScope": "AllTasks"},
        "ClientRequestToken": str(uuid.uuid4()),
        "Priority": 10,
        "RoleArn": world.role_arn,
        "ManifestGenerator": {"S3JobManifestGenerator": {
            "SourceBucket": f"arn:aws:s3:::{bucket}", "EnableManifestOutput": False, "Filter": {}}},
    }
    request.update(changes)
    return request


def _describe(s3control: Any, job_id: str) -> dict[str, Any]:
    return dict(s3control.describe_job(AccountId=VAULT_ACCOUNT, JobId=job_id)["Job"])


def _watch(
    s3control: Any, job_id: str, until: Callable[[dict[str, Any]], bool], timeout: float = 30.0,
) -> list[dict[str, Any]]:
    """Return every description seen while polling, up to the first one `until` accepts."""
    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen.append(_describe(s3control, job_id))
        if until(seen[-1]):
            return seen
        time.sleep(0.01)
    raise AssertionError(f"job {job_id} did not get there in {timeout} s; last seen {seen[-1]['Status']}")


def _ended(job: dict[str, Any]) -> bool:
    return job["Status"] in TERMINAL


def _report_keys(world: World, bucket: str) -> list[str]:
    listed = world.s3.list_objects_v2(Bucket=world.report, Prefix=f"reports/{bucket}/")
    return [item["Key"] for item in listed.get("Contents", [])]


# --- confirmation --------------------------------------------------------------------------


@pytest.mark.parametrize("confirmation", [True, None], ids=["required", "omitted"])
def test_a_job_awaiting_confirmation_stays_suspended_until_set_ready(
    world: World, s3control: Any, confirmation: bool | None
) -> None:
    bucket = world.source(["a.txt", "b.txt"])
    request = _request(world, bucket, ConfirmationRequired=confirmation)
    if confirmation is None:
        del request["ConfirmationRequired"]
    job_id = s3control.create_job(**request)["JobId"]

    seen = _watch(s3control, job_id, lambda job: job["Status"] == "Suspended")
    time.sleep(0.2)
    still = _describe(s3control, job_id)
    s3control.update_job_status(AccountId=VAULT_ACCOUNT, JobId=job_id, RequestedJobStatus="Ready")
    final = _watch(s3control, job_id, _ended)[-1]

    assert {job["Status"] for job in seen} <= {"New", "Preparing", "Suspended"}
    assert still["Status"] == "Suspended"
    assert still["SuspendedCause"] == "AwaitingConfirmation"
    assert still["ConfirmationRequired"] is True
    assert still["ProgressSummary"]["NumberOfTasksSucceeded"] == 0
    assert final["Status"] == "Complete"
    assert final["ProgressSummary"]["NumberOfTasksSucceeded"] == 2
    assert final["SuspendedDate"] < final["TerminationDate"]


def test_a_job_without_confirmation_runs_to_complete_on_its_own(world: World, s3control: Any) -> None:
    bucket = world.source(["a.txt", "b.txt", "c.txt"])

    job_id = s3control.create_job(**_request(world, bucket))["JobId"]
    seen = _watch(s3control, job_id, _ended)

    statuses = [job["Status"] for job in seen]
    assert "Suspended" not in statuses
    assert statuses[-1] == "Complete"
    assert seen[-1]["ProgressSummary"]["TotalNumberOfTasks"] == 3
    assert seen[-1]["ProgressSummary"]["NumberOfTasksSucceeded"] == 3
    assert seen[-1]["FailureReasons"] == []
    assert "SuspendedDate" not in seen[-1]
    assert len(_report_keys(world, bucket)) == 2  # manifest.json and the succeeded tasks' file


# --- cancelling ----------------------------------------------------------------------------


def test_cancelling_a_suspended_job_ends_it_without_a_report(world: World, s3control: Any) -> None:
    bucket = world.source(["a.txt"])
    job_id = s3control.create_job(**_request(world, bucket, ConfirmationRequired=True))["JobId"]
    _watch(s3control, job_id, lambda job: job["Status"] == "Suspended")

    answer = s3control.update_job_status(
        AccountId=VAULT_ACCOUNT, JobId=job_id, RequestedJobStatus="Cancelled", StatusUpdateReason="wrong bucket"
    )
    final = _watch(s3control, job_id, _ended)[-1]

    assert answer["Status"] == "Cancelling"
    assert final["Status"] == "Cancelled"
    assert final["StatusUpdateReason"] == "wrong bucket"
    assert "TerminationDate" in final
    assert _report_keys(world, bucket) == []


def test_cancelling_an_active_job_stops_its_tasks_and_reports_those_that_ran(
    world: World, s3control: Any, store: JobStore
) -> None:
    store.tasks_per_second = 50
    bucket = world.source([f"k{i:03d}" for i in range(100)])
    job_id = s3control.create_job(**_request(world, bucket))["JobId"]
    _watch(s3control, job_id, lambda job: job["ProgressSummary"]["NumberOfTasksSucceeded"] >= 5)

    s3control.update_job_status(AccountId=VAULT_ACCOUNT, JobId=job_id, RequestedJobStatus="Cancelled")
    final = _watch(s3control, job_id, _ended)[-1]

    ran = final["ProgressSummary"]["NumberOfTasksSucceeded"]
    assert final["Status"] == "Cancelled"
    assert 5 <= ran < 100
    index_key = f"reports/{bucket}/job-{job_id}/manifest.json"
    index = json.loads(world.s3.get_object(Bucket=world.report, Key=index_key)["Body"].read())
    rows = world.s3.get_object(Bucket=world.report, Key=index["Results"][0]["Key"])["Body"].read().decode().splitlines()
    assert len(rows) == ran


# --- progress ------------------------------------------------------------------------------


def test_a_watcher_sees_counters_and_active_time_grow(world: World, s3control: Any, store: JobStore) -> None:
    store.tasks_per_second = 40
    bucket = world.source([f"k{i:03d}" for i in range(60)])

    job_id = s3control.create_job(**_request(world, bucket))["JobId"]
    seen = _watch(s3control, job_id, _ended)

    active = [job["ProgressSummary"] for job in seen if job["Status"] == "Active"]
    done = [p["NumberOfTasksSucceeded"] for p in active]
    assert any(0 < count < 60 for count in done)
    assert done == sorted(done)
    assert max(p["Timers"]["ElapsedTimeInActiveSeconds"] for p in active) >= 1
    assert seen[-1]["Status"] == "Complete"
    assert seen[-1]["ProgressSummary"]["Timers"]["ElapsedTimeInActiveSeconds"] >= 1


# --- failing -------------------------------------------------------------------------------


def test_a_generator_that_matches_nothing_fails_the_job_without_a_report(world: World, s3control: Any) -> None:
    bucket = world.source(["a.txt", "b.txt"])
    request = _request(world, bucket)
    request["ManifestGenerator"]["S3JobManifestGenerator"]["Filter"] = {"ObjectReplicationStatuses": ["REPLICA"]}

    job_id = s3control.create_job(**request)["JobId"]
    final = _watch(s3control, job_id, _ended)[-1]

    assert final["Status"] == "Failed"
    assert final["FailureReasons"] == [{
        "FailureCode": "InvalidManifestContent",
        "FailureReason": "Manifest generation found no keys matching the filter criteria.",
    }]
    assert final["ProgressSummary"]["TotalNumberOfTasks"] == 0
    assert "GeneratedManifestDescriptor" not in final
    assert _report_keys(world, bucket) == []


def test_a_role_trusting_batch_operations_only_with_a_source_account_fails_the_job(
    world: World, s3control: Any
) -> None:
    # AWS documents no aws:SourceAccount for Batch Operations: a trust policy that requires it is
    # refused here, not only on the day of a recovery.
    bucket = world.source(["a.txt"])
    name = f"lifecycle-guarded-{uuid.uuid4().hex[:8]}"
    guarded = json.loads(json.dumps(BATCH_TRUST))
    guarded["Statement"][0]["Condition"] = {"StringEquals": {"aws:SourceAccount": VAULT_ACCOUNT}}
    role_arn = world.iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(guarded))["Role"]["Arn"]
    world.iam.put_role_policy(RoleName=name, PolicyName="p", PolicyDocument=json.dumps(ALLOW_S3))

    job_id = s3control.create_job(**_request(world, bucket, RoleArn=role_arn))["JobId"]
    final = _watch(s3control, job_id, _ended)[-1]

    assert final["Status"] == "Failed"
    (reason,) = final["FailureReasons"]
    assert reason["FailureCode"] == "AccessDenied"
    assert role_arn in reason["FailureReason"] and "aws:SourceAccount" in reason["FailureReason"]
    assert final["ProgressSummary"]["TotalNumberOfTasks"] == 0


def test_a_small_job_whose_tasks_all_fail_still_completes(world: World, s3control: Any) -> None:
    bucket = world.source([f"fail-{i}" for i in range(5)])

    job_id = s3control.create_job(**_request(world, bucket))["JobId"]
    final = _watch(s3control, job_id, _ended)[-1]

    assert final["Status"] == "Complete"
    assert final["ProgressSummary"]["NumberOfTasksFailed"] == 5
    assert final["ProgressSummary"]["NumberOfTasksSucceeded"] == 0
    assert final["FailureReasons"] == []


def test_more_than_half_failed_after_a_thousand_tasks_fails_the_job(
    world: World, s3control: Any, store: JobStore
) -> None:
    store.task_functions = TaskFunctions(_replicate_mostly_failing, lambda account, bucket: lambda version: True)
    bucket = world.source([f"k{i:05d}" for i in range(1100)])

    job_id = s3control.create_job(**_request(world, bucket))["JobId"]
    final = _watch(s3control, job_id, _ended)[-1]

    progress = final["ProgressSummary"]
    assert final["Status"] == "Failed"
    assert [r["FailureCode"] for r in final["FailureReasons"]] == ["TaskFailureThresholdExceeded"]
    assert progress["TotalNumberOfTasks"] == 1100
    assert progress["NumberOfTasksSucceeded"] + progress["NumberOfTasksFailed"] == 1000
    assert progress["NumberOfTasksFailed"] > 500
    assert len(_report_keys(world, bucket)) == 3  # the report of what ran is still written


def test_a_report_bucket_with_default_retention_fails_the_job(world: World, s3control: Any) -> None:
    bucket = world.source(["a.txt"])
    locked = f"locked-report-{uuid.uuid4().hex[:8]}"
    world.s3.create_bucket(Bucket=locked, ObjectLockEnabledForBucket=True)
    world.s3.put_object_lock_configuration(Bucket=locked, ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}})
    request = _request(world, bucket)
    request["Report"]["Bucket"] = f"arn:aws:s3:::{locked}"

    job_id = s3control.create_job(**request)["JobId"]
    final = _watch(s3control, job_id, _ended)[-1]

    assert final["Status"] == "Failed"
    assert final["FailureReasons"][0]["FailureCode"] == "ReportWriteFailed"
    assert final["FailureReasons"][0]["FailureReason"].startswith(
        "The job report could not be written to your report bucket. Please check your permissions."
    )
    assert final["ProgressSummary"]["NumberOfTasksSucceeded"] == 1
    assert world.s3.list_objects_v2(Bucket=locked).get("KeyCount", 0) == 0


def _deny_manifest_reads(world: World) -> str:
    return world.role({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:*", "Resource": "*"},
        {"Effect": "Deny", "Action": ["s3:GetObject", "s3:GetObjectVersion"],
         "Resource": f"arn:aws:s3:::{world.report}/*"},
    ]})


@pytest.mark.parametrize(
    ("case", "code", "reason"),
    [
        ("missing", "NoSuchKey", "Reading the manifest failed: NoSuchKey"),
        ("etag", "InvalidManifestContent", "The manifest's ETag"),
        ("denied", "AccessDenied", "Reading the manifest is forbidden: AccessDenied"),
        ("short-row", "InvalidManifestContent", "Invalid manifest content: row 2"),
        # AWS reads no CSV manifest encrypted with SSE-KMS, and lists KMS among the causes of this error.
        ("kms", "AccessDenied", "Reading the manifest is forbidden: AccessDenied"),
        ("empty", "InvalidManifestContent", "Invalid manifest content"),
    ],
)
def test_an_unusable_manifest_fails_the_job(world: World, s3control: Any, case: str, code: str, reason: str) -> None:
    bucket = world.source(["a.txt", "b.txt"])
    versions = world.s3.list_object_versions(Bucket=bucket)["Versions"]
    rows = [f"{bucket},{v['Key']},{v['VersionId']}" for v in versions]
    if case == "short-row":
        rows[1] = f"{bucket},{versions[1]['Key']}"
    if case == "empty":
        rows = []
    key = f"manifests/{uuid.uuid4().hex}.csv"
    encryption = {"ServerSideEncryption": "aws:kms"} if case == "kms" else {}
    etag = world.s3.put_object(Bucket=world.report, Key=key, Body="\n".join(rows).encode(), **encryption)["ETag"]
    location = {"ObjectArn": f"arn:aws:s3:::{world.report}/{key}", "ETag": etag}
    if case == "missing":
        location["ObjectArn"] += ".gone"
    if case == "etag":
        location["ETag"] = "0" * 32
    request = _request(world, bucket, RoleArn=_deny_manifest_reads(world) if case == "denied" else world.role_arn)
    del request["ManifestGenerator"]
    request["Manifest"] = {
        "Spec": {"Format": "S3BatchOperations_CSV_20180820", "Fields": ["Bucket", "Key", "VersionId"]},
        "Location": location,
    }

    job_id = s3control.create_job(**request)["JobId"]
    final = _watch(s3control, job_id, _ended)[-1]

    assert final["Status"] == "Failed"
    assert final["FailureReasons"][0]["FailureCode"] == code
    assert final["FailureReasons"][0]["FailureReason"].startswith(reason)
    assert final["ProgressSummary"]["NumberOfTasksSucceeded"] + final["ProgressSummary"]["NumberOfTasksFailed"] == 0


# --- the job store directly ------------------------------------------------------------------


def test_ready_jobs_start_in_priority_order(world: World) -> None:
    store = JobStore(min_state_seconds=0.01, tasks_per_second=200, task_functions=FAKE)
    busy = world.source([f"k{i:03d}" for i in range(100)])
    # Each later job runs 50 paced tasks, so finishing order shows starting order with a wide margin.
    small = world.source([f"s{i:02d}" for i in range(50)])
    first = store.create_job(VAULT_ACCOUNT, REGION, _request(world, busy, Priority=1))
    store.wait_for(VAULT_ACCOUNT, REGION, first, {"Active"}, timeout=10)

    low = store.create_job(VAULT_ACCOUNT, REGION, _request(world, small, Priority=1))
    high = store.create_job(VAULT_ACCOUNT, REGION, _request(world, small, Priority=50))
    jobs = [store.wait_for(VAULT_ACCOUNT, REGION, j, {"Complete"}, timeout=20) for j in (first, low, high)]

    ended = {job.job_id: job.termination_date for job in jobs}
    assert ended[first] < ended[high] < ended[low]


def test_injected_faults_fail_first_attempts_only_so_a_retry_succeeds(world: World) -> None:
    succeed = TaskFunctions(_replicate, lambda account, bucket: lambda version: True)
    store = JobStore(Faults(task_failure_rate=0.9, seed=11), min_state_seconds=0.0, task_functions=succeed)
    bucket = world.source([f"k{i:05d}" for i in range(1050)])

    job_id = store.create_job(VAULT_ACCOUNT, REGION, _request(world, bucket))
    job = store.wait_for(VAULT_ACCOUNT, REGION, job_id, TERMINAL, timeout=30)
    failed = [o for o in job.outcomes if not o.succeeded]
    statuses = {getattr(v, "replication_status", None)
                for v in s3_backends[VAULT_ACCOUNT]["aws"].buckets[bucket].keys.values()
                if v.name in {o.entry.key for o in failed}}

    manifest = "\n".join(f"{o.entry.bucket},{o.entry.manifest_key},{o.entry.version_id}" for o in failed).encode()
    etag = world.s3.put_object(Bucket=world.report, Key=f"retry/{job_id}.csv", Body=manifest)["ETag"]
    retry = _request(world, bucket)
    del retry["ManifestGenerator"]
    retry["Manifest"] = {"Spec": {"Format": "S3BatchOperations_CSV_20180820", "Fields": ["Bucket", "Key", "VersionId"]},
                         "Location": {"ObjectArn": f"arn:aws:s3:::{world.report}/retry/{job_id}.csv", "ETag": etag}}
    retry_id = store.create_job(VAULT_ACCOUNT, REGION, retry)
    retried = store.wait_for(VAULT_ACCOUNT, REGION, retry_id, TERMINAL, timeout=30)

    assert job.status == "Failed"
    assert job.succeeded + job.failed == 1000
    assert 850 <= job.failed <= 950
    assert {(o.http_status, o.error_code) for o in failed} == {(500, "InternalError")}
    assert statuses == {"FAILED"}
    assert retried.status == "Complete"
    assert (retried.succeeded, retried.failed) == (len(failed), 0)


def test_faults_are_the_same_for_the_same_seed(world: World) -> None:
    bucket = world.source([f"k{i:03d}" for i in range(200)])

    def failed_keys(seed: int) -> list[str]:
        store = JobStore(Faults(task_failure_rate=0.3, seed=seed), min_state_seconds=0.0, task_functions=FAKE)
        job_id = store.create_job(VAULT_ACCOUNT, REGION, _request(world, bucket))
        job = store.wait_for(VAULT_ACCOUNT, REGION, job_id, TERMINAL, timeout=30)
        return [o.entry.key for o in job.outcomes if not o.succeeded]

    once, again, other = failed_keys(5), failed_keys(5), failed_keys(6)

    assert once == again
    assert once != other
    assert 30 <= len(once) <= 90


# --- events --------------------------------------------------------------------------------


def test_job_status_events_reach_an_sns_topic_and_its_queue(world: World, s3control: Any, aws_env: Drill) -> None:
    events, sns, sqs = aws_env.client("events"), aws_env.client("sns"), aws_env.client("sqs")
    suffix = uuid.uuid4().hex[:8]
    topic = sns.create_topic(Name=f"job-status-{suffix}")["TopicArn"]
    queue = sqs.create_queue(QueueName=f"job-status-{suffix}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    rule = f"job-status-{suffix}"
    events.put_rule(Name=rule, EventPattern=json.dumps(job_status_event_pattern(vault_account_id=VAULT_ACCOUNT)))
    events.put_targets(Rule=rule, Targets=[{"Id": "topic", "Arn": topic}])
    bucket = world.source(["a.txt"])

    try:
        job_id = s3control.create_job(**_request(world, bucket))["JobId"]
        _watch(s3control, job_id, _ended)
    finally:
        events.remove_targets(Rule=rule, Ids=["topic"])
        events.delete_rule(Name=rule)
    received = []
    while True:
        messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
        if not messages:
            break
        received += [json.loads(json.loads(m["Body"])["Message"]) for m in messages]
    ours = [e for e in received if e["detail"]["serviceEventDetails"]["jobId"] == job_id]

    assert [(e["detail"]["eventName"], e["detail"]["serviceEventDetails"]["status"]) for e in ours] == [
        ("JobCreated", "New"), ("JobStatusChanged", "Preparing"), ("JobStatusChanged", "Ready"),
        ("JobStatusChanged", "Active"), ("JobStatusChanged", "Completing"), ("JobStatusChanged", "Complete"),
    ]
    last = ours[-1]
    assert (last["source"], last["detail-type"], last["account"]) == (
        "aws.s3", "AWS Service Event via CloudTrail", VAULT_ACCOUNT)
    assert last["detail"]["eventSource"] == "s3.amazonaws.com"
    details = last["detail"]["serviceEventDetails"]
    assert details["jobArn"] == f"arn:aws:s3:{REGION}:{VAULT_ACCOUNT}:job/{job_id}"
    assert len(details["jobEventId"]) == 32 and int(details["jobEventId"], 16) >= 0
    assert (details["failureCodes"], details["statusChangeReason"]) == ([], [])
