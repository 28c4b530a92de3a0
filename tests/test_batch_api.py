"""The S3 Control job API of the embedded backend, driven with boto3 exactly as the runbook drives it.

Each call goes over HTTP to the backend; what we check is what a boto3 caller sees: the fields
DescribeJob echoes, the error code and message of a bad request, ListJobs filters and pages, and
that one account never sees another's jobs. The wire format itself is checked by serializing
requests with botocore and parsing them back with the emulator's parser.
"""

from __future__ import annotations

import copy
import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from xml.etree import ElementTree

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from runbook_fixtures import Drill

from runbook_lib.accounts import make_client, session_for
from runbook_lib.embedded.replication import TaskResult
from runbook_lib.embedded.s3control.responses import parse_request_body
from runbook_lib.embedded.s3control.runner import TaskFunctions
from runbook_lib.embedded.server import RECOVERY_ACCOUNT, RECOVERY_PROFILE, REGION, VAULT_ACCOUNT, VAULT_PROFILE

pytestmark = pytest.mark.xdist_group("batch-api")

BATCH_TRUST = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "batchoperations.s3.amazonaws.com"},
                   "Action": "sts:AssumeRole"}],
}
ALLOW_S3 = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}


def _succeed(account: str, bucket: str, key: str, version_id: str, role_arn: str) -> TaskResult:
    return TaskResult(True, 200, "", "success")


@dataclass(frozen=True)
class World:
    """A source bucket with a few versions, a report bucket, and a job role that may do all of it."""

    source: str
    report: str
    role_arn: str


@pytest.fixture(scope="module")
def world(drill: Drill) -> Iterator[World]:
    """Build the module's buckets and role; run jobs quickly with a task function that succeeds."""
    suffix = uuid.uuid4().hex[:8]
    s3, iam = drill.client("s3"), drill.client("iam")
    source, report = f"api-source-{suffix}", f"api-report-{suffix}"
    for bucket in (source, report):
        s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=source, VersioningConfiguration={"Status": "Enabled"})
    for index in range(3):
        s3.put_object(Bucket=source, Key=f"data/object-{index}.txt", Body=b"x" * index)
    role = iam.create_role(RoleName=f"api-batch-{suffix}", AssumeRolePolicyDocument=json.dumps(BATCH_TRUST))
    iam.put_role_policy(RoleName=f"api-batch-{suffix}", PolicyName="s3", PolicyDocument=json.dumps(ALLOW_S3))
    store = drill.backend.app.jobs_app.store
    store.min_state_seconds = 0.02
    store.task_functions = TaskFunctions(_succeed, lambda account, bucket: lambda version: True)
    yield World(source, report, role["Role"]["Arn"])
    store.task_functions = None
    store.min_state_seconds = 0.3


def _client(profile: str = VAULT_PROFILE, validate: bool = True) -> Any:
    config = Config(parameter_validation=validate, retries={"max_attempts": 1})
    return make_client(session_for(profile, REGION), "s3control", region_name=REGION, config=config)


def _request(world: World, **changes: Any) -> dict[str, Any]:
    request: dict[str, Any] = {
        "AccountId": VAULT_ACCOUNT,
        "ConfirmationRequired": True,
        "Operation": {"S3ReplicateObject": {}},
        "Report": {"Bucket": f"arn:aws:s3:::{world.report}", "Format": "Report_CSV_20180820", "Enabled": True,
                   "Prefix": "reports", "ReportScope": "AllTasks", "ExpectedBucketOwner": VAULT_ACCOUNT},
        "ClientRequestToken": str(uuid.uuid4()),
        "Priority": 10,
        "RoleArn": world.role_arn,
        "Description": "api test",
        "ManifestGenerator": {"S3JobManifestGenerator": {
            "ExpectedBucketOwner": VAULT_ACCOUNT,
            "SourceBucket": f"arn:aws:s3:::{world.source}",
            "EnableManifestOutput": False,
            "Filter": {"ObjectReplicationStatuses": ["NONE", "FAILED"],
                       "CreatedBefore": datetime(2099, 1, 1, tzinfo=timezone.utc)},
        }},
    }
    request.update(changes)
    return request


def _error(call: Any) -> tuple[str, str, int]:
    with pytest.raises(ClientError) as caught:
        call()
    response = caught.value.response
    return response["Error"]["Code"], response["Error"]["Message"], response["ResponseMetadata"]["HTTPStatusCode"]


def _wait(client: Any, job_id: str, statuses: set[str], timeout: float = 20.0) -> dict[str, Any]:
    import time

    deadline = time.monotonic() + timeout
    while True:
        job = client.describe_job(AccountId=VAULT_ACCOUNT, JobId=job_id)["Job"]
        if job["Status"] in statuses | {"Complete", "Failed", "Cancelled"} or time.monotonic() > deadline:
            return job
        time.sleep(0.02)


# --- round trips ---------------------------------------------------------------------------


def test_describe_job_echoes_the_request_with_its_state(world: World, aws_env: Drill) -> None:
    client = _client()
    request = _request(world, Description="recover & <check>")
    request["ManifestGenerator"]["S3JobManifestGenerator"]["Filter"]["MatchAnyObjectEncryption"] = [{"NOTSSE": {}}]
    job_id = client.create_job(**request)["JobId"]
    job = _wait(client, job_id, {"Suspended"})

    assert len(job_id) == 36
    assert job["JobArn"] == f"arn:aws:s3:{REGION}:{VAULT_ACCOUNT}:job/{job_id}"
    assert job["Status"] == "Suspended"
    assert job["ConfirmationRequired"] is True
    assert job["Description"] == "recover & <check>"
    assert job["Priority"] == 10
    assert job["RoleArn"] == world.role_arn
    assert job["Operation"] == {"S3ReplicateObject": {}}
    assert job["Report"] == request["Report"]
    assert job["ManifestGenerator"] == request["ManifestGenerator"]
    assert job["SuspendedCause"] == "AwaitingConfirmation"
    assert job["CreationTime"] <= job["SuspendedDate"]
    assert "TerminationDate" not in job
    assert job["ProgressSummary"]["TotalNumberOfTasks"] == 3
    client.update_job_status(AccountId=VAULT_ACCOUNT, JobId=job_id, RequestedJobStatus="Cancelled")


def test_a_confirmed_job_runs_to_complete(world: World, aws_env: Drill) -> None:
    client = _client()
    job_id = client.create_job(**_request(world))["JobId"]
    _wait(client, job_id, {"Suspended"})

    answer = client.update_job_status(
        AccountId=VAULT_ACCOUNT, JobId=job_id, RequestedJobStatus="Ready", StatusUpdateReason="checked by ops"
    )
    job = _wait(client, job_id, {"Complete", "Failed"})

    assert (answer["JobId"], answer["Status"], answer["StatusUpdateReason"]) == (job_id, "Ready", "checked by ops")
    assert job["Status"] == "Complete"
    assert job["StatusUpdateReason"] == "checked by ops"
    assert job["ProgressSummary"]["NumberOfTasksSucceeded"] == 3
    assert job["TerminationDate"] >= job["CreationTime"]


def test_update_job_priority_changes_what_describe_job_shows(world: World, aws_env: Drill) -> None:
    client = _client()
    job_id = client.create_job(**_request(world))["JobId"]

    answer = client.update_job_priority(AccountId=VAULT_ACCOUNT, JobId=job_id, Priority=42)

    assert (answer["JobId"], answer["Priority"]) == (job_id, 42)
    assert client.describe_job(AccountId=VAULT_ACCOUNT, JobId=job_id)["Job"]["Priority"] == 42
    client.update_job_status(AccountId=VAULT_ACCOUNT, JobId=job_id, RequestedJobStatus="Cancelled")


def test_job_tags_round_trip(world: World, aws_env: Drill) -> None:
    client = _client()
    job_id = client.create_job(**_request(world, Tags=[{"Key": "Project", "Value": "vault-recovery"}]))["JobId"]

    tagged = client.get_job_tagging(AccountId=VAULT_ACCOUNT, JobId=job_id)["Tags"]
    client.put_job_tagging(AccountId=VAULT_ACCOUNT, JobId=job_id, Tags=[{"Key": "Run", "Value": "drill"}])
    replaced = client.get_job_tagging(AccountId=VAULT_ACCOUNT, JobId=job_id)["Tags"]
    client.delete_job_tagging(AccountId=VAULT_ACCOUNT, JobId=job_id)

    assert tagged == [{"Key": "Project", "Value": "vault-recovery"}]
    assert replaced == [{"Key": "Run", "Value": "drill"}]
    assert client.get_job_tagging(AccountId=VAULT_ACCOUNT, JobId=job_id)["Tags"] == []
    client.update_job_status(AccountId=VAULT_ACCOUNT, JobId=job_id, RequestedJobStatus="Cancelled")


# --- validation ----------------------------------------------------------------------------


def _generator(request: dict[str, Any]) -> dict[str, Any]:
    return request["ManifestGenerator"]["S3JobManifestGenerator"]


def _break(change: Any) -> Any:
    def apply(request: dict[str, Any]) -> dict[str, Any]:
        broken = copy.deepcopy(request)
        change(broken)
        return broken

    return apply


INVALID_REQUESTS = [
    ("role-arn", _break(lambda r: r.update(RoleArn="batch-role")),
     "RoleArn 'batch-role' does not match the pattern arn:[^:]+:iam::\\d{12}:role/.*"),
    ("priority", _break(lambda r: r.update(Priority=-1)), "Priority -1 is below the minimum 0"),
    ("description", _break(lambda r: r.update(Description="d" * 257)), "Description is longer than 256 characters"),
    ("no-role", _break(lambda r: r.pop("RoleArn")), "RoleArn is required"),
    ("both-lists", _break(lambda r: r.update(Manifest={
        "Spec": {"Format": "S3BatchOperations_CSV_20180820", "Fields": ["Bucket", "Key", "VersionId"]},
        "Location": {"ObjectArn": "arn:aws:s3:::b/m.csv", "ETag": "abc"}})),
     "Give exactly one of Manifest and ManifestGenerator"),
    ("no-list", _break(lambda r: r.pop("ManifestGenerator")), "Give exactly one of Manifest and ManifestGenerator"),
    ("report-bucket", _break(lambda r: r["Report"].update(Bucket="my-report-bucket")),
     "Report.Bucket 'my-report-bucket' does not match the pattern arn:[^:]+:s3:.*"),
    ("report-bucket-object", _break(lambda r: r["Report"].update(Bucket="arn:aws:s3:::bucket/key")),
     "Report.Bucket 'arn:aws:s3:::bucket/key' is not a bucket ARN"),
    ("report-scope", _break(lambda r: r["Report"].update(ReportScope="Everything")),
     "Report.ReportScope 'Everything' is not one of AllTasks, FailedTasksOnly"),
    ("manifest-format", _break(lambda r: _generator(r).update(EnableManifestOutput=True, ManifestOutputLocation={
        "Bucket": "arn:aws:s3:::out", "ManifestFormat": "CSV"})),
     "ManifestOutputLocation.ManifestFormat 'CSV' is not one of S3InventoryReport_CSV_20211130"),
    ("status-filter", _break(lambda r: _generator(r)["Filter"].update(ObjectReplicationStatuses=["PENDING"])),
     "ObjectReplicationStatuses[0] 'PENDING' is not one of COMPLETED, FAILED, REPLICA, NONE"),
    ("two-encryptions", _break(lambda r: _generator(r)["Filter"].update(
        MatchAnyObjectEncryption=[{"SSES3": {}}, {"NOTSSE": {}}])),
     "MatchAnyObjectEncryption takes at most 1 item(s), got 2"),
    ("operation", _break(lambda r: r.update(Operation={"S3PutObjectTagging": {"TagSet": []}})),
     "Operation S3PutObjectTagging is not supported: the embedded backend runs S3ReplicateObject (Batch "
     "Replication) and S3InitiateRestoreObject (restore) jobs only"),
    ("restore-days", _break(lambda r: r.update(Operation={"S3InitiateRestoreObject": {
        "ExpirationInDays": 0, "GlacierJobTier": "BULK"}})),
     "Operation.S3InitiateRestoreObject.ExpirationInDays 0 must be 1 or greater"),
    ("fields", _break(lambda r: (r.pop("ManifestGenerator"), r.update(Manifest={
        "Spec": {"Format": "S3BatchOperations_CSV_20180820", "Fields": ["Key", "Bucket"]},
        "Location": {"ObjectArn": "arn:aws:s3:::b/m.csv", "ETag": "abc"}}))),
     "Manifest.Spec.Fields ['Key', 'Bucket'] must list Bucket, Key and optionally VersionId"),
    ("account", _break(lambda r: r.update(AccountId="1111")), "AccountId '1111' does not match the pattern"),
    # A user-supplied CSV manifest, as a sample drill's job is given one.
    ("manifest-etag", _break(lambda r: (r.pop("ManifestGenerator"), r.update(Manifest={
        "Spec": {"Format": "S3BatchOperations_CSV_20180820", "Fields": ["Bucket", "Key", "VersionId"]},
        "Location": {"ObjectArn": "arn:aws:s3:::b/m.csv"}}))), "ETag is required"),
    ("manifest-bucket-arn", _break(lambda r: (r.pop("ManifestGenerator"), r.update(Manifest={
        "Spec": {"Format": "S3BatchOperations_CSV_20180820", "Fields": ["Bucket", "Key", "VersionId"]},
        "Location": {"ObjectArn": "arn:aws:s3:::b", "ETag": "abc"}}))), "is not an object ARN"),
    ("manifest-field", _break(lambda r: (r.pop("ManifestGenerator"), r.update(Manifest={
        "Spec": {"Format": "S3BatchOperations_CSV_20180820", "Fields": ["Bucket", "Key", "Version"]},
        "Location": {"ObjectArn": "arn:aws:s3:::b/m.csv", "ETag": "abc"}}))),
     "is not one of Ignore, Bucket, Key, VersionId"),
    ("manifest-spec-format", _break(lambda r: (r.pop("ManifestGenerator"), r.update(Manifest={
        "Spec": {"Format": "CSV", "Fields": ["Bucket", "Key"]},
        "Location": {"ObjectArn": "arn:aws:s3:::b/m.csv", "ETag": "abc"}}))),
     "Manifest.Spec.Format 'CSV' is not one of S3BatchOperations_CSV_20180820, S3InventoryReport_CSV_20161130"),
]


@pytest.mark.parametrize(("change", "message"), [(c, m) for _, c, m in INVALID_REQUESTS],
                         ids=[name for name, _, _ in INVALID_REQUESTS])
def test_create_job_rejects_an_invalid_request(
    world: World, aws_env: Drill, change: Any, message: str
) -> None:
    client = _client(validate=False)
    request = change(_request(world))

    code, text, status = _error(lambda: client.create_job(**request))

    assert (code, status) == ("InvalidRequest", 400)
    assert message in text


@pytest.mark.parametrize(
    ("operation", "arguments"),
    [
        ("describe_job", {}),
        ("update_job_status", {"RequestedJobStatus": "Cancelled"}),
        ("update_job_priority", {"Priority": 1}),
    ],
)
def test_an_unknown_job_is_not_found(world: World, aws_env: Drill, operation: str, arguments: dict[str, Any]) -> None:
    client = _client()
    missing = str(uuid.uuid4())

    code, text, status = _error(lambda: getattr(client, operation)(AccountId=VAULT_ACCOUNT, JobId=missing, **arguments))

    assert (code, status) == ("NotFoundException", 404)
    assert missing in text


def test_update_job_priority_rejects_a_negative_priority(world: World, aws_env: Drill) -> None:
    client = _client(validate=False)
    job_id = client.create_job(**_request(world))["JobId"]

    code, text, status = _error(lambda: client.update_job_priority(AccountId=VAULT_ACCOUNT, JobId=job_id, Priority=-5))

    assert (code, status) == ("InvalidRequest", 400)
    assert "Priority -5 is below the minimum 0" in text
    client.update_job_status(AccountId=VAULT_ACCOUNT, JobId=job_id, RequestedJobStatus="Cancelled")


def test_status_changes_a_job_cannot_make_are_refused(world: World, aws_env: Drill) -> None:
    client = _client()
    job_id = client.create_job(**_request(world, ConfirmationRequired=False))["JobId"]
    _wait(client, job_id, {"Complete"})

    ready = _error(lambda: client.update_job_status(AccountId=VAULT_ACCOUNT, JobId=job_id, RequestedJobStatus="Ready"))
    cancel = _error(
        lambda: client.update_job_status(AccountId=VAULT_ACCOUNT, JobId=job_id, RequestedJobStatus="Cancelled"))

    assert ready == ("JobStatusException", f"Job {job_id} is Complete; only a Suspended job can be set to Ready.", 400)
    assert cancel == ("JobStatusException", f"Job {job_id} is Complete and can no longer be cancelled.", 400)


# --- idempotency ---------------------------------------------------------------------------


def test_the_same_token_and_request_give_the_same_job(world: World, aws_env: Drill) -> None:
    client = _client()
    request = _request(world)

    first = client.create_job(**request)["JobId"]
    second = client.create_job(**request)["JobId"]

    assert first == second
    client.update_job_status(AccountId=VAULT_ACCOUNT, JobId=first, RequestedJobStatus="Cancelled")


def test_the_same_token_with_another_request_is_refused(world: World, aws_env: Drill) -> None:
    client = _client()
    request = _request(world)
    first = client.create_job(**request)["JobId"]

    code, text, status = _error(lambda: client.create_job(**{**request, "Priority": 11}))

    assert (code, status) == ("IdempotencyException", 400)
    assert first in text and request["ClientRequestToken"] in text
    client.update_job_status(AccountId=VAULT_ACCOUNT, JobId=first, RequestedJobStatus="Cancelled")


# --- listing -------------------------------------------------------------------------------


def test_list_jobs_filters_by_status_and_pages(world: World, aws_env: Drill) -> None:
    client = _client()
    created = [client.create_job(**_request(world, Description=f"page {i}"))["JobId"] for i in range(5)]
    for job_id in created:
        _wait(client, job_id, {"Suspended"})

    pages, token = [], None
    while True:
        arguments = {"AccountId": VAULT_ACCOUNT, "JobStatuses": ["Suspended"], "MaxResults": 2}
        page = client.list_jobs(**arguments, **({"NextToken": token} if token else {}))
        pages.append([job["JobId"] for job in page["Jobs"]])
        token = page.get("NextToken")
        if not token:
            break
    listed = [job_id for page in pages for job_id in page]
    complete = client.list_jobs(AccountId=VAULT_ACCOUNT, JobStatuses=["Complete"])["Jobs"]

    assert all(len(page) <= 2 for page in pages)
    assert len(listed) == len(set(listed))
    assert set(created) <= set(listed)
    assert listed.index(created[-1]) < listed.index(created[0])  # newest first
    assert all(job["Status"] == "Complete" for job in complete)
    assert not set(created) & {job["JobId"] for job in complete}
    entry = next(job for job in client.list_jobs(AccountId=VAULT_ACCOUNT)["Jobs"] if job["JobId"] == created[0])
    assert entry["Operation"] == "S3ReplicateObject"
    assert entry["Description"] == "page 0"
    assert entry["ProgressSummary"]["TotalNumberOfTasks"] == 3
    for job_id in created:
        client.update_job_status(AccountId=VAULT_ACCOUNT, JobId=job_id, RequestedJobStatus="Cancelled")


@pytest.mark.parametrize(
    ("arguments", "code"),
    [
        ({"NextToken": "not-a-token"}, "InvalidNextTokenException"),
        ({"JobStatuses": ["Running"]}, "InvalidRequest"),
        ({"MaxResults": 5000}, "InvalidRequest"),
    ],
)
def test_list_jobs_rejects_bad_arguments(world: World, aws_env: Drill, arguments: dict[str, Any], code: str) -> None:
    client = _client(validate=False)

    error = _error(lambda: client.list_jobs(AccountId=VAULT_ACCOUNT, **arguments))

    assert (error[0], error[2]) == (code, 400)


# --- accounts ------------------------------------------------------------------------------


def test_an_account_sees_only_its_own_jobs(world: World, aws_env: Drill) -> None:
    vault, recovery = _client(), _client(RECOVERY_PROFILE)
    job_id = vault.create_job(**_request(world))["JobId"]

    own = _error(lambda: recovery.describe_job(AccountId=RECOVERY_ACCOUNT, JobId=job_id))
    other = _error(lambda: recovery.describe_job(AccountId=VAULT_ACCOUNT, JobId=job_id))
    listed = recovery.list_jobs(AccountId=RECOVERY_ACCOUNT)["Jobs"]

    assert (own[0], own[2]) == ("NotFoundException", 404)
    assert (other[0], other[2]) == ("AccessDenied", 403)
    assert job_id not in {job["JobId"] for job in listed}
    vault.update_job_status(AccountId=VAULT_ACCOUNT, JobId=job_id, RequestedJobStatus="Cancelled")


def test_errors_use_the_s3_control_error_document(world: World, aws_env: Drill) -> None:
    request = urllib.request.Request(
        f"{aws_env.backend.endpoint}/v20180820/jobs/{uuid.uuid4()}", headers={"x-amz-account-id": VAULT_ACCOUNT}
    )

    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=10)
    document = ElementTree.fromstring(caught.value.read())

    assert caught.value.code == 404
    assert document.tag == "ErrorResponse"
    assert document.findtext("Error/Code") == "NotFoundException"
    assert document.findtext("Error/Message")
    assert document.findtext("RequestId")


# --- the wire format -----------------------------------------------------------------------


ENCRYPTIONS = [
    {"SSES3": {}},
    {"SSEKMS": {"KmsKeyArn": f"arn:aws:kms:{REGION}:{VAULT_ACCOUNT}:key/abcd-1234", "BucketKeyEnabled": False}},
    {"DSSEKMS": {"KmsKeyArn": f"arn:aws:kms:{REGION}:{VAULT_ACCOUNT}:key/abcd-1234"}},
    {"SSEC": {}},
    {"NOTSSE": {}},
]


@pytest.mark.parametrize("encryption", ENCRYPTIONS, ids=lambda e: next(iter(e)))
@pytest.mark.parametrize("output", [{"SSES3": {}}, {"SSEKMS": {"KeyId": "arn:aws:kms:us-east-1:111111111111:key/k"}}],
                         ids=["SSE-S3", "SSE-KMS"])
def test_the_parser_reads_what_botocore_sends(encryption: dict[str, Any], output: dict[str, Any]) -> None:
    client = boto3.client("s3control", region_name=REGION, endpoint_url="http://127.0.0.1:9",
                          aws_access_key_id="k", aws_secret_access_key="s")
    sent: list[bytes] = []

    def capture(request: Any, **_: Any) -> Any:
        sent.append(request.body)
        raise _Captured

    client.meta.events.register("before-send.s3-control.CreateJob", capture)
    world = World("source-bucket", "report-bucket", f"arn:aws:iam::{VAULT_ACCOUNT}:role/batch")
    request = _request(world, Tags=[{"Key": "a", "Value": "b"}])
    generator = _generator(request)
    generator["Filter"].update({
        "EligibleForReplication": True, "CreatedAfter": datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone.utc),
        "KeyNameConstraint": {"MatchAnyPrefix": ["a/"], "MatchAnySuffix": [".b"], "MatchAnySubstring": ["c"]},
        "ObjectSizeGreaterThanBytes": 1, "ObjectSizeLessThanBytes": 10**12,
        "MatchAnyStorageClass": ["STANDARD", "GLACIER_IR"], "MatchAnyObjectEncryption": [encryption],
    })
    generator.update(EnableManifestOutput=True, ManifestOutputLocation={
        "ExpectedManifestBucketOwner": VAULT_ACCOUNT, "Bucket": "arn:aws:s3:::out", "ManifestPrefix": "p",
        "ManifestEncryption": output, "ManifestFormat": "S3InventoryReport_CSV_20211130"})

    with pytest.raises(_Captured):
        client.create_job(**request)
    shape = client.meta.service_model.operation_model("CreateJob").input_shape
    parsed = parse_request_body(sent[0], shape)

    assert parsed == {k: v for k, v in request.items() if k != "AccountId"}


class _Captured(Exception):
    """Raised by the capture hook so that nothing is sent."""
