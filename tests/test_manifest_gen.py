"""What a Batch Operations job reads and writes: generated manifests, supplied manifests, reports.

The generator's filter is checked version by version on a bucket whose versions differ in every
filtered property. The files a job writes are read back the way a user would, with pandas, and
must list exactly the tasks that ran, awkward key names included.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import unquote_plus

import pandas as pd
import pytest
from moto.s3.models import FakeDeleteMarker, s3_backends
from runbook_fixtures import Drill

from runbook_lib.accounts import make_client, session_for
from runbook_lib.embedded.manifest_gen import encode_key, generate_manifest
from runbook_lib.embedded.replication import TaskResult
from runbook_lib.embedded.s3control.runner import TaskFunctions
from runbook_lib.embedded.seed import AWKWARD_KEYS
from runbook_lib.embedded.server import REGION, VAULT_ACCOUNT, VAULT_PROFILE
from runbook_lib.reports import load_completion_report, retry_manifest_csv

pytestmark = pytest.mark.xdist_group("batch-manifests")

BATCH_TRUST = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "batchoperations.s3.amazonaws.com"},
                   "Action": "sts:AssumeRole"}],
}
ALLOW_S3 = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
REPORT_COLUMNS = ["bucket", "key", "version_id", "task_status", "http_status", "error_code", "result_message"]
KEY_1 = f"arn:aws:kms:{REGION}:{VAULT_ACCOUNT}:key/11111111-aaaa"
KEY_2 = f"arn:aws:kms:{REGION}:{VAULT_ACCOUNT}:key/22222222-bbbb"
FAILING = ("#", "?", "fail")


def _replicate(account: str, bucket: str, key: str, version_id: str, role_arn: str) -> TaskResult:
    """Fail tasks of keys holding '#', '?' or 'fail', with a message that needs CSV quoting."""
    if any(mark in key for mark in FAILING):
        return TaskResult(False, 500, "DstPutObjectNotPermitted", 'Access denied, "replicas" key policy')
    return TaskResult(True, 200, "", "success")


@dataclass(frozen=True)
class World:
    """The module's job role and report bucket, with clients to build and read buckets."""

    role_arn: str
    report: str
    s3: Any

    def source(self, keys: list[str]) -> str:
        """Return a new versioned bucket with one version of each key, written into moto directly."""
        name = f"gen-src-{uuid.uuid4().hex[:10]}"
        self.s3.create_bucket(Bucket=name)
        self.s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        backend = s3_backends[VAULT_ACCOUNT]["aws"]
        for key in keys:
            backend.put_object(name, key, key.encode(), disable_notification=True)
        return name

    def read(self, key: str, bucket: str | None = None) -> bytes:
        """Return an object's bytes from the report bucket (or another)."""
        return bytes(self.s3.get_object(Bucket=bucket or self.report, Key=key)["Body"].read())


@pytest.fixture(scope="module")
def world(drill: Drill) -> Iterator[World]:
    """Create the role and the report bucket; make the module's jobs fast with fake tasks."""
    s3, iam = drill.client("s3"), drill.client("iam")
    suffix = uuid.uuid4().hex[:8]
    report = f"gen-report-{suffix}"
    s3.create_bucket(Bucket=report)
    role = iam.create_role(RoleName=f"gen-batch-{suffix}", AssumeRolePolicyDocument=json.dumps(BATCH_TRUST))
    iam.put_role_policy(RoleName=f"gen-batch-{suffix}", PolicyName="s3", PolicyDocument=json.dumps(ALLOW_S3))
    store = drill.backend.app.jobs_app.store
    store.min_state_seconds = 0.02
    store.task_functions = TaskFunctions(_replicate, lambda account, bucket: lambda version: True)
    yield World(role["Role"]["Arn"], report, s3)
    store.task_functions = None
    store.min_state_seconds = 0.3


@pytest.fixture
def s3control(aws_env: Drill) -> Any:
    """Return an S3 Control client of the vault account."""
    return make_client(session_for(VAULT_PROFILE, REGION), "s3control", region_name=REGION)


def _request(world: World, bucket: str, *, report: dict[str, Any] | None = None, **generator: Any) -> dict[str, Any]:
    spec = {"SourceBucket": f"arn:aws:s3:::{bucket}", "EnableManifestOutput": False, "Filter": {}}
    spec.update(generator)
    return {
        "AccountId": VAULT_ACCOUNT,
        "ConfirmationRequired": False,
        "Operation": {"S3ReplicateObject": {}},
        "Report": report or {"Bucket": f"arn:aws:s3:::{world.report}", "Format": "Report_CSV_20180820",
                             "Enabled": True, "Prefix": f"reports/{bucket}", "ReportScope": "AllTasks"},
        "ClientRequestToken": str(uuid.uuid4()),
        "Priority": 10,
        "RoleArn": world.role_arn,
        "ManifestGenerator": {"S3JobManifestGenerator": spec},
    }


def _run(s3control: Any, request: dict[str, Any]) -> dict[str, Any]:
    job_id = s3control.create_job(**request)["JobId"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        job = s3control.describe_job(AccountId=VAULT_ACCOUNT, JobId=job_id)["Job"]
        if job["Status"] in ("Complete", "Failed", "Cancelled"):
            return dict(job)
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} did not end")


def _versions(world: World, bucket: str) -> set[tuple[str, str]]:
    pages = world.s3.get_paginator("list_object_versions").paginate(Bucket=bucket)
    return {(v["Key"], v["VersionId"]) for page in pages for v in page.get("Versions", [])}


# --- the generator's filter ----------------------------------------------------------------


@pytest.fixture(scope="module")
def filtered(world: World) -> tuple[str, dict[tuple[str, str], str]]:
    """Return a bucket whose versions differ in every filtered property, and each version's label."""
    bucket = world.source([])
    backend = s3_backends[VAULT_ACCOUNT]["aws"]
    stored = backend.get_bucket(bucket)
    plan = [
        ("a", "logs/a.txt", 10, "STANDARD", "AES256", None, None, datetime(2024, 1, 1), None),
        ("b", "logs/b.csv", 2000, "GLACIER", "aws:kms", KEY_1, True, datetime(2025, 1, 1), "REPLICA"),
        ("c", "data/c.csv", 0, "INTELLIGENT_TIERING", None, None, None, datetime(2025, 6, 1), "COMPLETED"),
        ("d", "data/d.bin", 500, "STANDARD", "aws:kms:dsse", KEY_2, None, datetime(2023, 5, 1), "FAILED"),
        ("e", "data/e.txt", 50, "STANDARD_IA", "aws:kms", KEY_2, False, datetime(2025, 3, 1), "REPLICA"),
    ]
    labels: dict[tuple[str, str], str] = {}
    for label, key, size, storage, encryption, kms, bucket_key, created, status in plan:
        version = backend.put_object(bucket, key, b"x" * size, storage=storage, encryption=encryption,
                                     kms_key_id=kms, bucket_key_enabled=bucket_key, disable_notification=True)
        version.last_modified = created
        version.replication_status = status
        labels[(key, version.version_id)] = label
    marker = FakeDeleteMarker(key=stored.keys["data/c.csv"])
    marker.last_modified = datetime(2025, 7, 1)
    marker.replication_status = "REPLICA"
    stored.keys["data/c.csv"] = marker
    labels[("data/c.csv", marker.version_id)] = "marker"
    return bucket, labels


FILTERS = [
    ({}, "a b c d e marker"),
    ({"CreatedAfter": datetime(2025, 1, 1, tzinfo=timezone.utc)}, "b c e marker"),
    ({"CreatedBefore": datetime(2025, 1, 1, tzinfo=timezone.utc)}, "a d"),
    ({"ObjectReplicationStatuses": ["NONE"]}, "a"),
    ({"ObjectReplicationStatuses": ["REPLICA"]}, "b e marker"),
    ({"ObjectReplicationStatuses": ["COMPLETED", "FAILED"]}, "c d"),
    ({"KeyNameConstraint": {"MatchAnyPrefix": ["logs/"]}}, "a b"),
    ({"KeyNameConstraint": {"MatchAnySuffix": [".csv"]}}, "b c marker"),
    ({"KeyNameConstraint": {"MatchAnySubstring": ["d."]}}, "d"),
    ({"KeyNameConstraint": {"MatchAnyPrefix": ["data/"], "MatchAnySuffix": [".txt"]}}, "e"),
    ({"ObjectSizeGreaterThanBytes": 100}, "b d"),
    ({"ObjectSizeLessThanBytes": 50}, "a c marker"),
    ({"MatchAnyStorageClass": ["GLACIER", "STANDARD_IA"]}, "b e"),
    ({"MatchAnyObjectEncryption": [{"SSES3": {}}]}, "a"),
    ({"MatchAnyObjectEncryption": [{"SSEKMS": {}}]}, "b e"),
    ({"MatchAnyObjectEncryption": [{"SSEKMS": {"KmsKeyArn": KEY_2}}]}, "e"),
    ({"MatchAnyObjectEncryption": [{"SSEKMS": {"BucketKeyEnabled": True}}]}, "b"),
    ({"MatchAnyObjectEncryption": [{"DSSEKMS": {}}]}, "d"),
    ({"MatchAnyObjectEncryption": [{"NOTSSE": {}}]}, "c"),
    ({"MatchAnyObjectEncryption": [{"SSEC": {}}]}, ""),
    ({"ObjectReplicationStatuses": ["REPLICA"], "MatchAnyStorageClass": ["STANDARD_IA"]}, "e"),
]


FILTER_IDS = [f"{i}-{'-'.join(f) or 'none'}" for i, (f, _) in enumerate(FILTERS)]


@pytest.mark.parametrize(("criteria", "expected"), FILTERS, ids=FILTER_IDS)
def test_the_generator_keeps_exactly_the_versions_the_filter_selects(
    filtered: tuple[str, dict[tuple[str, str], str]], criteria: dict[str, Any], expected: str
) -> None:
    bucket, labels = filtered

    entries = generate_manifest({"SourceBucket": f"arn:aws:s3:::{bucket}", "Filter": criteria},
                                lambda account, name: lambda version: True)

    assert sorted(labels[(e.key, e.version_id)] for e in entries) == sorted(expected.split())
    assert all(e.bucket == bucket and e.manifest_key == encode_key(e.key) for e in entries)


def test_eligible_for_replication_asks_the_replication_rules(filtered: tuple[str, dict[tuple[str, str], str]]) -> None:
    bucket, labels = filtered
    asked: list[tuple[str, str]] = []

    def eligibility(account: str, name: str) -> Callable[[Any], bool]:
        asked.append((account, name))
        return lambda version: bool(version.name.startswith("data/") and not isinstance(version, FakeDeleteMarker))

    entries = generate_manifest(
        {"SourceBucket": f"arn:aws:s3:::{bucket}", "Filter": {"EligibleForReplication": True}}, eligibility
    )

    assert sorted(labels[(e.key, e.version_id)] for e in entries) == ["c", "d", "e"]
    assert asked == [(VAULT_ACCOUNT, bucket)]  # the bucket's rules are looked up once, not per version


# --- the generated manifest ------------------------------------------------------------------


def test_the_saved_manifest_and_the_report_list_exactly_the_tasks_that_ran(world: World, s3control: Any) -> None:
    keys = list(AWKWARD_KEYS) + [f"plain/object-{i}.txt" for i in range(20)]
    bucket = world.source(keys)
    request = _request(world, bucket, EnableManifestOutput=True, ManifestOutputLocation={
        "Bucket": f"arn:aws:s3:::{world.report}", "ManifestPrefix": "generated",
        "ManifestEncryption": {"SSES3": {}}, "ManifestFormat": "S3InventoryReport_CSV_20211130"})

    job = _run(s3control, request)
    descriptor = job["GeneratedManifestDescriptor"]
    manifest_key = descriptor["Location"]["ObjectArn"].split(":::", 1)[1].split("/", 1)[1]
    index = json.loads(world.read(manifest_key))
    shards = [world.read(f["key"]) for f in index["files"]]
    listed = pd.concat([pd.read_csv(io.BytesIO(body), header=None, names=["bucket", "key", "version_id"], dtype=str,
                                    keep_default_na=False) for body in shards])
    report_index = json.loads(world.read(f"reports/{bucket}/job-{job['JobId']}/manifest.json"))
    results = [world.read(r["Key"]) for r in report_index["Results"]]
    report = pd.concat([pd.read_csv(io.BytesIO(body), header=None, names=REPORT_COLUMNS, dtype=str,
                                    keep_default_na=False) for body in results])
    source_versions = _versions(world, bucket)

    assert job["Status"] == "Complete"
    assert manifest_key == f"generated/job-{job['JobId']}/manifest.json"
    assert descriptor["Format"] == "S3InventoryReport_CSV_20211130"
    stored_etag = world.s3.head_object(Bucket=world.report, Key=manifest_key)["ETag"].strip('"')
    assert descriptor["Location"]["ETag"] == stored_etag
    assert index["sourceBucket"] == bucket
    assert index["destinationBucket"] == f"arn:aws:s3:::{world.report}"
    assert (index["version"], index["fileFormat"], index["fileSchema"]) == (
        "2021-11-30", "CSV", "Bucket, Key, VersionId")
    assert abs(int(index["creationTimestamp"]) / 1000 - time.time()) < 60
    for listed_file, body in zip(index["files"], shards, strict=True):
        assert re.fullmatch(rf"generated/job-{job['JobId']}/data/[0-9a-f-]{{36}}\.csv", listed_file["key"])
        assert (listed_file["size"], listed_file["MD5checksum"]) == (len(body), hashlib.md5(body).hexdigest())
        assert world.s3.head_object(Bucket=world.report, Key=listed_file["key"])["ServerSideEncryption"] == "AES256"
    assert {(unquote_plus(k), v) for k, v in zip(listed["key"], listed["version_id"], strict=True)} == source_versions
    assert set(listed["bucket"]) == {bucket}

    assert len(report) == len(listed) == job["ProgressSummary"]["TotalNumberOfTasks"] == len(keys)
    assert {(unquote_plus(k), v) for k, v in zip(report["key"], report["version_id"], strict=True)} == source_versions
    assert set(report["key"]) == set(listed["key"])  # keys echoed exactly as the manifest spells them
    failed = report[report["task_status"] == "failed"]
    assert sorted(failed["key"].map(unquote_plus)) == sorted(k for k in keys if any(m in k for m in FAILING))
    assert len(failed) == job["ProgressSummary"]["NumberOfTasksFailed"]
    assert set(failed["result_message"]) == {'Access denied, "replicas" key policy'}
    assert set(zip(failed["http_status"], failed["error_code"], strict=True)) == {("500", "DstPutObjectNotPermitted")}
    succeeded = report[report["task_status"] == "succeeded"]
    outcomes = zip(succeeded["http_status"], succeeded["error_code"], succeeded["result_message"], strict=True)
    assert set(outcomes) == {("200", "", "success")}


def test_the_completion_report_has_the_layout_s3_writes(world: World, s3control: Any) -> None:
    bucket = world.source(["good.txt", "fail.txt", "sub dir/good+plus.txt"])

    job = _run(s3control, _request(world, bucket))
    folder = f"reports/{bucket}/job-{job['JobId']}"
    index = json.loads(world.read(f"{folder}/manifest.json"))
    bodies = {r["TaskExecutionStatus"]: world.read(r["Key"]) for r in index["Results"]}
    loaded = load_completion_report(world.s3, world.report, f"{folder}/manifest.json")

    assert index["Format"] == "Report_CSV_20180820"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z", index["ReportCreationDate"])
    assert index["ReportSchema"] == "Bucket, Key, VersionId, TaskStatus, ErrorCode, HTTPStatusCode, ResultMessage"
    assert [r["TaskExecutionStatus"] for r in index["Results"]] == ["succeeded", "failed"]
    for result in index["Results"]:
        assert result["Bucket"] == world.report
        assert re.fullmatch(rf"{folder}/results/[0-9a-f]{{40}}\.csv", result["Key"])
        assert result["MD5Checksum"] == hashlib.md5(bodies[result["TaskExecutionStatus"]]).hexdigest()
        assert world.s3.head_object(Bucket=world.report, Key=result["Key"])["ServerSideEncryption"] == "AES256"
    assert all(body.endswith(b"\r\n") and body.count(b"\r\n") == body.count(b"\n") for body in bodies.values())
    assert bodies["succeeded"].count(b"\r\n") == 2 and not bodies["succeeded"].startswith(b"Bucket")
    assert sorted(loaded["key"]) == ["fail.txt", "good.txt", "sub dir/good+plus.txt"]
    assert b"sub%20dir/good%2Bplus.txt" in bodies["succeeded"]


@pytest.mark.parametrize(
    ("scope", "prefix", "keys", "statuses"),
    [
        ("FailedTasksOnly", "only-failed", ["ok.txt", "fail.txt"], ["failed"]),
        ("FailedTasksOnly", "only-failed", ["ok.txt"], []),
        ("AllTasks", None, ["ok.txt"], ["succeeded"]),
        ("AllTasks", "trailing/", ["ok.txt", "fail.txt"], ["succeeded", "failed"]),
    ],
    ids=["failed-only", "failed-only-none-failed", "no-prefix", "prefix-ending-in-slash"],
)
def test_report_scope_and_prefix_decide_what_is_written_where(
    world: World, s3control: Any, scope: str, prefix: str | None, keys: list[str], statuses: list[str]
) -> None:
    bucket = world.source(keys)
    report: dict[str, Any] = {"Bucket": f"arn:aws:s3:::{world.report}", "Format": "Report_CSV_20180820",
                              "Enabled": True, "ReportScope": scope}
    if prefix:
        report["Prefix"] = f"{prefix}{bucket}" if not prefix.endswith("/") else f"{bucket}-{prefix}"

    job = _run(s3control, _request(world, bucket, report=report))
    folder = f"{report['Prefix']}/job-{job['JobId']}" if prefix else f"job-{job['JobId']}"
    index = json.loads(world.read(f"{folder}/manifest.json"))

    assert [r["TaskExecutionStatus"] for r in index["Results"]] == statuses
    assert all(r["Key"].startswith(f"{folder}/results/") for r in index["Results"])
    if prefix and prefix.endswith("/"):
        assert "//job-" in folder


def test_a_manifest_saved_with_sse_kms_is_encrypted_with_that_key(world: World, s3control: Any) -> None:
    bucket = world.source(["a.txt"])
    key_arn = f"arn:aws:kms:{REGION}:{VAULT_ACCOUNT}:key/{uuid.uuid4()}"
    request = _request(world, bucket, EnableManifestOutput=True, ManifestOutputLocation={
        "Bucket": f"arn:aws:s3:::{world.report}", "ManifestPrefix": f"kms-{bucket}",
        "ManifestEncryption": {"SSEKMS": {"KeyId": key_arn}}, "ManifestFormat": "S3InventoryReport_CSV_20211130"})

    job = _run(s3control, request)
    listed = world.s3.list_objects_v2(Bucket=world.report, Prefix=f"kms-{bucket}/")["Contents"]
    heads = [world.s3.head_object(Bucket=world.report, Key=item["Key"]) for item in listed]

    assert job["Status"] == "Complete"
    assert len(heads) == 2
    assert {(h["ServerSideEncryption"], h["SSEKMSKeyId"]) for h in heads} == {("aws:kms", key_arn)}


def test_a_generator_without_permission_to_save_its_manifest_fails_the_job(
    world: World, s3control: Any, aws_env: Drill,
) -> None:
    iam = aws_env.client("iam")
    name = f"gen-deny-{uuid.uuid4().hex[:8]}"
    role = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(BATCH_TRUST))["Role"]["Arn"]
    denied = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:*", "Resource": "*"},
        {"Effect": "Deny", "Action": "s3:PutObject", "Resource": f"arn:aws:s3:::{world.report}/denied/*"}]}
    iam.put_role_policy(RoleName=name, PolicyName="p", PolicyDocument=json.dumps(denied))
    bucket = world.source(["a.txt"])
    request = _request(world, bucket, EnableManifestOutput=True, ManifestOutputLocation={
        "Bucket": f"arn:aws:s3:::{world.report}", "ManifestPrefix": "denied",
        "ManifestFormat": "S3InventoryReport_CSV_20211130"})
    request["RoleArn"] = role

    job = _run(s3control, request)

    assert job["Status"] == "Failed"
    assert job["FailureReasons"][0]["FailureCode"] == "AccessDenied"
    assert job["FailureReasons"][0]["FailureReason"].startswith("Writing the manifest is forbidden: AccessDenied")


# --- supplied manifests ----------------------------------------------------------------------


def test_a_saved_manifest_can_be_the_manifest_of_a_later_job(world: World, s3control: Any) -> None:
    bucket = world.source(["one.txt", "two words.txt", "three+3.txt"])
    first = _run(s3control, _request(world, bucket, EnableManifestOutput=True, ManifestOutputLocation={
        "Bucket": f"arn:aws:s3:::{world.report}", "ManifestPrefix": f"reuse-{bucket}",
        "ManifestFormat": "S3InventoryReport_CSV_20211130"}))
    request = _request(world, bucket)
    del request["ManifestGenerator"]
    request["Manifest"] = {"Spec": {"Format": "S3InventoryReport_CSV_20161130"},
                           "Location": first["GeneratedManifestDescriptor"]["Location"]}

    second = _run(s3control, request)
    loaded = load_completion_report(world.s3, world.report, f"reports/{bucket}/job-{second['JobId']}/manifest.json")

    assert second["Status"] == "Complete"
    assert second["ProgressSummary"]["TotalNumberOfTasks"] == 3
    assert {(k, v) for k, v in zip(loaded["key"], loaded["version_id"], strict=True)} == _versions(world, bucket)


def test_a_csv_manifest_with_encoded_keys_replicates_those_versions(world: World, s3control: Any) -> None:
    keys = list(AWKWARD_KEYS)
    bucket = world.source(keys)
    versions = sorted(_versions(world, bucket))
    frame = pd.DataFrame({"bucket": bucket, "key": [k for k, _ in versions], "version_id": [v for _, v in versions]})
    body = retry_manifest_csv(frame)
    # S3 Inventory writes a space as '+': such a row must name the same object.
    spaced = next(k for k in keys if " " in k and "+" not in k)
    body += f"{bucket},{spaced.replace(' ', '+')},{dict(versions)[spaced]}\n".encode()
    etag = world.s3.put_object(Bucket=world.report, Key=f"csv/{bucket}.csv", Body=body)["ETag"]
    request = _request(world, bucket)
    del request["ManifestGenerator"]
    request["Manifest"] = {
        "Spec": {"Format": "S3BatchOperations_CSV_20180820", "Fields": ["Bucket", "Key", "VersionId"]},
        "Location": {"ObjectArn": f"arn:aws:s3:::{world.report}/csv/{bucket}.csv", "ETag": etag},
    }

    job = _run(s3control, request)
    index = json.loads(world.read(f"reports/{bucket}/job-{job['JobId']}/manifest.json"))
    rows = pd.concat([pd.read_csv(io.BytesIO(world.read(r["Key"])), header=None, names=REPORT_COLUMNS, dtype=str,
                                  keep_default_na=False) for r in index["Results"]])

    assert job["ProgressSummary"]["TotalNumberOfTasks"] == len(keys) + 1
    assert sorted(rows["key"]) == sorted(line.split(",")[1] for line in body.decode().splitlines())
    assert {(unquote_plus(k), v) for k, v in zip(rows["key"], rows["version_id"], strict=True)} == set(versions)
