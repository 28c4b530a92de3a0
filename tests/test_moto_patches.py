"""Our changes to moto: each still patches the moto code it was written for, and each behaves like AWS."""

from __future__ import annotations

import hashlib
import json
import math
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import boto3
import moto
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from moto.s3.models import FakeDeleteMarker, FakeKey, s3_backends

from runbook_lib.embedded import patches
from runbook_lib.embedded.server import OPERATOR_ACCOUNT, EmbeddedBackend, start_backend

REGION = "us-east-1"


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBackend]:
    """One patched backend for the module; every test uses buckets of its own."""
    with start_backend(config_file=tmp_path_factory.mktemp("patches") / "aws-config") as running:
        yield running


def client(backend: EmbeddedBackend, service: str) -> Any:
    """Return a client in the operator's account, with no retries to hide a failure."""
    return boto3.client(
        service, endpoint_url=backend.endpoint, region_name=REGION,
        aws_access_key_id="patch-tests", aws_secret_access_key="patch-tests",
        config=Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 1}),
    )


@pytest.fixture(scope="module")
def s3(backend: EmbeddedBackend) -> Any:
    return client(backend, "s3")


def unique(stem: str) -> str:
    """Return a bucket or resource name no other test uses (bucket names are global)."""
    return f"{stem}-{uuid.uuid4().hex[:12]}"


def stored_key(bucket: str, key: str) -> Any:
    """Return moto's newest stored version of `key` (the backend runs in this process)."""
    return s3_backends[OPERATOR_ACCOUNT]["aws"].get_bucket(bucket).keys.getlist(key)[-1]


# --------------------------------------------------------------------- moto upgrade guard


@pytest.mark.parametrize("dotted", sorted(patches.PATCHED_SOURCES))
def test_patched_moto_source_is_the_one_reviewed(dotted: str, backend: EmbeddedBackend) -> None:
    assert patches.moto_source_fingerprint(dotted) == patches.PATCHED_SOURCES[dotted], (
        f"moto {moto.__version__} changed {dotted}. Review the patch for it in "
        "runbook_lib/embedded/patches.py against the new moto source, adapt it, then record the "
        "new fingerprint in PATCHED_SOURCES."
    )


# ----------------------------------------------------------------- list_object_versions

# Keys whose order exercises byte-wise sorting, the delimiter, and prefixes that are also keys.
PAGINATION_KEYS = (
    "A", "a", "a b", "a-b", "a/b", "a/c/d", "ab", "profit+loss.xlsx", "100% done.txt",
    "docs/", "docs/a.txt", "docs/b/c.txt", "docs/b/d.txt", "docs/z", "docsx",
    "z", "é", "日本/語", "trailing/",
)


@pytest.fixture(scope="module")
def versioned_bucket(s3: Any) -> tuple[str, dict[str, list[tuple[str, bool]]]]:
    """A bucket of keys with several versions and delete markers; returns it with its write history."""
    bucket = unique("pagination")
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    history: dict[str, list[tuple[str, bool]]] = {key: [] for key in PAGINATION_KEYS}

    def put(key: str) -> None:
        history[key].append((s3.put_object(Bucket=bucket, Key=key, Body=key.encode())["VersionId"], False))

    def delete(key: str) -> None:
        answer = s3.delete_object(Bucket=bucket, Key=key)
        assert answer["DeleteMarker"] is True
        history[key].append((answer["VersionId"], True))

    # Rounds interleave keys, so versions of one key are not written back to back.
    for round_number in range(3):
        for index, key in enumerate(PAGINATION_KEYS):
            if index % 3 >= round_number:
                put(key)
    for index, key in enumerate(PAGINATION_KEYS):
        if index % 4 == 0:
            delete(key)  # the newest entry is a delete marker
        if index % 5 == 1:
            delete(key)
            put(key)  # a delete marker between two versions
    return bucket, history


def expected_entries(
    history: dict[str, list[tuple[str, bool]]], prefix: str, delimiter: str | None
) -> list[tuple[Any, ...]]:
    """Return what AWS lists, in order: keys by UTF-8 bytes, each key's entries newest first."""
    entries: list[tuple[Any, ...]] = []
    # Code point order is UTF-8 byte order, which is the order S3 lists keys in.
    for key in sorted(history):
        if not key.startswith(prefix):
            continue
        rest = key[len(prefix):]
        if delimiter and delimiter in rest:
            common = prefix + rest[: rest.index(delimiter) + len(delimiter)]
            if ("prefix", common) not in entries:
                entries.append(("prefix", common))
            continue
        for position, (version_id, is_marker) in enumerate(reversed(history[key])):
            entries.append(("marker" if is_marker else "version", key, version_id, position == 0))
    return entries


def split_page(entries: list[tuple[Any, ...]]) -> tuple[list[tuple[Any, ...]], ...]:
    """Return a page's entries as boto3 shows them: versions, delete markers, common prefixes."""
    return tuple([e for e in entries if e[0] == kind] for kind in ("version", "marker", "prefix"))


def listed_page(page: dict[str, Any]) -> tuple[list[tuple[Any, ...]], ...]:
    return (
        [("version", v["Key"], v["VersionId"], v["IsLatest"]) for v in page.get("Versions", [])],
        [("marker", m["Key"], m["VersionId"], m["IsLatest"]) for m in page.get("DeleteMarkers", [])],
        [("prefix", c["Prefix"]) for c in page.get("CommonPrefixes", [])],
    )


@pytest.mark.parametrize("page_size", [1, 2, 7, 1000])
@pytest.mark.parametrize(("prefix", "delimiter"), [("", None), ("", "/"), ("docs/", None), ("docs/", "/"), ("a", "/")])
def test_listing_pages_like_aws(
    page_size: int, prefix: str, delimiter: str | None, s3: Any,
    versioned_bucket: tuple[str, dict[str, list[tuple[str, bool]]]],
) -> None:
    bucket, history = versioned_bucket
    expected = expected_entries(history, prefix, delimiter)
    arguments: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
    if delimiter:
        arguments["Delimiter"] = delimiter
    pages = list(s3.get_paginator("list_object_versions").paginate(
        **arguments, PaginationConfig={"PageSize": page_size}
    ))
    chunks = [expected[start : start + page_size] for start in range(0, len(expected), page_size)]
    assert [listed_page(page) for page in pages] == [split_page(chunk) for chunk in chunks]
    assert len(pages) == math.ceil(len(expected) / page_size)
    assert [page["IsTruncated"] for page in pages] == [True] * (len(pages) - 1) + [False]


def test_every_key_has_exactly_one_latest_entry(
    s3: Any, versioned_bucket: tuple[str, dict[str, list[tuple[str, bool]]]]
) -> None:
    bucket, history = versioned_bucket
    page = s3.list_object_versions(Bucket=bucket)
    entries = page["Versions"] + page["DeleteMarkers"]
    latest = {e["Key"]: e["VersionId"] for e in entries if e["IsLatest"]}
    assert latest == {key: writes[-1][0] for key, writes in history.items()}
    assert sum(e["IsLatest"] for e in entries) == len(history)


@pytest.mark.parametrize("key_marker", ["a", "a0", "docs/", "docs/b/c.txt", "z", "", "\U0010ffff"])
def test_a_key_marker_alone_resumes_after_every_version_of_that_key(
    key_marker: str, s3: Any, versioned_bucket: tuple[str, dict[str, list[tuple[str, bool]]]]
) -> None:
    bucket, history = versioned_bucket
    page = s3.list_object_versions(Bucket=bucket, KeyMarker=key_marker)
    expected = [e for e in expected_entries(history, "", None) if e[1] > key_marker]
    assert listed_page(page) == split_page(expected)


@pytest.mark.parametrize("key", ["a", "docs/b/c.txt", "日本/語"])
@pytest.mark.parametrize("position", [0, 1, -1])
def test_a_version_marker_resumes_after_that_version(
    key: str, position: int, s3: Any, versioned_bucket: tuple[str, dict[str, list[tuple[str, bool]]]]
) -> None:
    bucket, history = versioned_bucket
    everything = expected_entries(history, "", None)
    own = [e for e in everything if e[1] == key]
    marker = own[position]
    page = s3.list_object_versions(Bucket=bucket, KeyMarker=key, VersionIdMarker=marker[2])
    assert listed_page(page) == split_page(everything[everything.index(marker) + 1 :])


@pytest.fixture(scope="module")
def awkward_bucket(s3: Any) -> str:
    """A versioned bucket of keys XML must escape, with delete markers and an archived version."""
    bucket = unique("rendering")
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    for key in ("docs/odd <&> 'name\".txt", "docs/tab\tand space .txt", "日本/語", "a", "a/b"):
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
        s3.put_object(Bucket=bucket, Key=key, Body=b"again", StorageClass="GLACIER")
    s3.delete_object(Bucket=bucket, Key="a")
    return bucket


@pytest.mark.parametrize("arguments", [
    {}, {"MaxKeys": 3}, {"Delimiter": "/"}, {"Prefix": "docs/", "Delimiter": "/", "MaxKeys": 1},
    {"KeyMarker": "a"}, {"KeyMarker": "a/b", "MaxKeys": 2},
])
def test_listing_answers_what_motos_serializer_answers(arguments: dict[str, Any], s3: Any, awkward_bucket: str) -> None:
    """The listing is rendered directly, for speed; it must read exactly as moto's own rendering does."""
    from moto.s3.responses import S3Response

    ours = s3.list_object_versions(Bucket=awkward_bucket, **arguments)
    rendered = S3Response.list_object_versions
    S3Response.list_object_versions = patches._originals["moto.s3.responses.S3Response.list_object_versions"]
    try:
        motos = s3.list_object_versions(Bucket=awkward_bucket, **arguments)
    finally:
        S3Response.list_object_versions = rendered
    ours.pop("ResponseMetadata")
    motos.pop("ResponseMetadata")
    assert ours == motos
    assert ours.get("Versions") or ours.get("CommonPrefixes")


def test_listing_keeps_no_copies_of_versions(
    s3: Any, versioned_bucket: tuple[str, dict[str, list[tuple[str, bool]]]]
) -> None:
    bucket, _ = versioned_bucket
    before = (len(FakeKey.instances_tracked), len(FakeDeleteMarker.instances_tracked))  # type: ignore[attr-defined]
    for _ in range(3):
        for _page in s3.get_paginator("list_object_versions").paginate(
            Bucket=bucket, PaginationConfig={"PageSize": 7}
        ):
            pass
    after = (len(FakeKey.instances_tracked), len(FakeDeleteMarker.instances_tracked))  # type: ignore[attr-defined]
    assert after == before


def test_a_listing_sees_names_removed_and_added_between_two_listings(s3: Any) -> None:
    """One name gone and another come leave as many names as before: the listing must still see both changes."""
    bucket = unique("names")
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    written = {f"k-{index:02d}": s3.put_object(Bucket=bucket, Key=f"k-{index:02d}", Body=b"x")["VersionId"]
               for index in range(10)}

    def names() -> list[str]:
        pages = s3.get_paginator("list_object_versions").paginate(Bucket=bucket, PaginationConfig={"PageSize": 3})
        return [version["Key"] for page in pages for version in page.get("Versions", [])]

    assert names() == sorted(written)
    # The only version of k-03 deleted (its name goes), then a new name that sorts before it.
    s3.delete_object(Bucket=bucket, Key="k-03", VersionId=written.pop("k-03"))
    written["k-00a"] = s3.put_object(Bucket=bucket, Key="k-00a", Body=b"y")["VersionId"]
    assert names() == sorted(written)
    # A name added alone: the count of names grows.
    s3.put_object(Bucket=bucket, Key="k-99", Body=b"z")
    assert names() == sorted([*written, "k-99"])


# ---------------------------------------------------------- retention, replication status


@pytest.fixture(scope="module")
def lock_bucket(s3: Any) -> str:
    bucket = unique("object-lock")
    s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    return bucket


@pytest.mark.parametrize("mode", ["GOVERNANCE", "COMPLIANCE"])
def test_get_object_retention_returns_mode_and_date(mode: str, s3: Any, lock_bucket: str) -> None:
    until = datetime(2031, 5, 6, 7, 8, 9, tzinfo=timezone.utc)
    key = f"retained-{mode}"
    locked = s3.put_object(
        Bucket=lock_bucket, Key=key, Body=b"golden", ObjectLockMode=mode, ObjectLockRetainUntilDate=until
    )["VersionId"]
    s3.put_object(Bucket=lock_bucket, Key=key, Body=b"newer")  # the locked version is not the latest
    retention = s3.get_object_retention(Bucket=lock_bucket, Key=key, VersionId=locked)
    assert retention["Retention"] == {"Mode": mode, "RetainUntilDate": until}


def test_get_object_retention_of_an_unlocked_version_is_an_error(s3: Any, lock_bucket: str) -> None:
    version = s3.put_object(Bucket=lock_bucket, Key="unlocked", Body=b"plain")["VersionId"]
    with pytest.raises(ClientError) as raised:
        s3.get_object_retention(Bucket=lock_bucket, Key="unlocked", VersionId=version)
    assert raised.value.response["Error"]["Code"] == "NoSuchObjectLockConfiguration"
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_retain_until_header_is_utc(s3: Any, lock_bucket: str) -> None:
    until = datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    version = s3.put_object(
        Bucket=lock_bucket, Key="utc", Body=b"x", ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=until
    )["VersionId"]
    head = s3.head_object(Bucket=lock_bucket, Key="utc", VersionId=version)
    # Without a zone designator botocore would read the date in the client's local time zone.
    assert head["ResponseMetadata"]["HTTPHeaders"]["x-amz-object-lock-retain-until-date"] == "2030-01-02T03:04:05.000Z"
    assert head["ObjectLockRetainUntilDate"] == until


@pytest.mark.parametrize("stored", ["2030-01-02T05:04:05+02:00", "2030-01-02T03:04:05", "2030-01-02T03:04:05Z"])
def test_retain_until_stored_in_any_form_is_sent_as_utc(stored: str, s3: Any, lock_bucket: str) -> None:
    key = f"stored-{stored}"
    s3.put_object(Bucket=lock_bucket, Key=key, Body=b"x")
    version = stored_key(lock_bucket, key)
    version.lock_mode, version.lock_until = "COMPLIANCE", stored
    head = s3.head_object(Bucket=lock_bucket, Key=key)
    assert head["ResponseMetadata"]["HTTPHeaders"]["x-amz-object-lock-retain-until-date"] == "2030-01-02T03:04:05.000Z"
    assert head["ObjectLockRetainUntilDate"] == datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2030-01-02T03:04:05Z", "2030-01-02T03:04:05.000Z"),
        ("2030-01-02T03:04:05.250Z", "2030-01-02T03:04:05.250Z"),
        ("2030-01-02T04:04:05+01:00", "2030-01-02T03:04:05.000Z"),
        ("2030-01-02T03:04:05", "2030-01-02T03:04:05.000Z"),
        (datetime(2030, 1, 2, 3, 4, 5), "2030-01-02T03:04:05.000Z"),
        (datetime(2030, 1, 1, 22, 4, 5, tzinfo=timezone(timedelta(hours=-5))), "2030-01-02T03:04:05.000Z"),
        (None, None),
        ("", None),
    ],
)
def test_normalise_retain_until(value: Any, expected: str | None) -> None:
    assert patches.normalise_retain_until(value) == expected


@pytest.mark.parametrize("status", ["REPLICA", "COMPLETED", "PENDING", "FAILED"])
def test_replication_status_is_sent_on_head_and_get(status: str, s3: Any) -> None:
    bucket = unique("replication-status")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="replicated", Body=b"x")
    s3.put_object(Bucket=bucket, Key="never-replicated", Body=b"x")
    stored_key(bucket, "replicated").replication_status = status
    assert s3.head_object(Bucket=bucket, Key="replicated")["ReplicationStatus"] == status
    assert s3.get_object(Bucket=bucket, Key="replicated")["ReplicationStatus"] == status
    assert "ReplicationStatus" not in s3.head_object(Bucket=bucket, Key="never-replicated")


# ------------------------------------------------------------------- bucket configuration


def test_bucket_replication_reads_back_as_it_was_put(s3: Any) -> None:
    source, destination = unique("replication-source"), unique("replication-destination")
    for bucket in (source, destination):
        s3.create_bucket(Bucket=bucket)
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    configuration = {
        "Role": f"arn:aws:iam::{OPERATOR_ACCOUNT}:role/s3-batch-replication-role",
        "Rules": [
            {
                "ID": "golden-copies",
                "Priority": 1,
                "Status": "Enabled",
                "Filter": {"And": {"Prefix": "golden/", "Tags": [
                    {"Key": "class", "Value": "vault"}, {"Key": "keep", "Value": "forever"},
                ]}},
                "SourceSelectionCriteria": {
                    "SseKmsEncryptedObjects": {"Status": "Enabled"},
                    "ReplicaModifications": {"Status": "Enabled"},
                },
                "ExistingObjectReplication": {"Status": "Enabled"},
                "DeleteMarkerReplication": {"Status": "Disabled"},
                "Destination": {
                    "Bucket": f"arn:aws:s3:::{destination}",
                    "Account": "222222222222",
                    "StorageClass": "INTELLIGENT_TIERING",
                    "AccessControlTranslation": {"Owner": "Destination"},
                    "EncryptionConfiguration": {
                        "ReplicaKmsKeyID":
                            "arn:aws:kms:us-east-1:222222222222:key/0f0e0d0c-1111-2222-3333-444455556666",
                    },
                    "ReplicationTime": {"Status": "Enabled", "Time": {"Minutes": 15}},
                    "Metrics": {"Status": "Enabled", "EventThreshold": {"Minutes": 15}},
                },
            },
            {
                "ID": "logs",
                "Priority": 2,
                "Status": "Disabled",
                "Filter": {"Prefix": "logs/"},
                "DeleteMarkerReplication": {"Status": "Enabled"},
                "Destination": {"Bucket": f"arn:aws:s3:::{destination}"},
            },
        ],
    }
    s3.put_bucket_replication(Bucket=source, ReplicationConfiguration=configuration, Token="drill-token")
    assert s3.get_bucket_replication(Bucket=source)["ReplicationConfiguration"] == configuration


def test_bucket_without_replication_is_an_error(s3: Any) -> None:
    bucket = unique("no-replication")
    s3.create_bucket(Bucket=bucket)
    with pytest.raises(ClientError) as raised:
        s3.get_bucket_replication(Bucket=bucket)
    assert raised.value.response["Error"]["Code"] == "ReplicationConfigurationNotFoundError"


def test_eventbridge_notification_configuration_round_trips(s3: Any, backend: EmbeddedBackend) -> None:
    bucket = unique("notifications")
    s3.create_bucket(Bucket=bucket)
    assert "EventBridgeConfiguration" not in s3.get_bucket_notification_configuration(Bucket=bucket)
    s3.put_bucket_notification_configuration(
        Bucket=bucket, NotificationConfiguration={"EventBridgeConfiguration": {}}
    )
    assert s3.get_bucket_notification_configuration(Bucket=bucket)["EventBridgeConfiguration"] == {}


def test_eventbridge_configuration_is_kept_beside_queue_configurations(s3: Any, backend: EmbeddedBackend) -> None:
    sqs = client(backend, "sqs")
    queue_url = sqs.create_queue(QueueName=unique("bucket-events"))["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    bucket = unique("notifications")
    s3.create_bucket(Bucket=bucket)
    queues = [{"Id": "created", "QueueArn": queue_arn, "Events": ["s3:ObjectCreated:*"]}]
    s3.put_bucket_notification_configuration(
        Bucket=bucket, NotificationConfiguration={"QueueConfigurations": queues, "EventBridgeConfiguration": {}}
    )
    read_back = s3.get_bucket_notification_configuration(Bucket=bucket)
    assert read_back["QueueConfigurations"] == queues
    assert read_back["EventBridgeConfiguration"] == {}


# ----------------------------------------------------------------- EventBridge -> SNS target


def queue_with_arn(sqs: Any, stem: str) -> tuple[str, str]:
    url = sqs.create_queue(QueueName=unique(stem))["QueueUrl"]
    return url, sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def received_bodies(sqs: Any, queue_url: str) -> list[dict[str, Any]]:
    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
    return [json.loads(m["Body"]) for m in messages.get("Messages", [])]


def test_eventbridge_rule_with_sns_target_delivers_and_other_rules_still_fire(backend: EmbeddedBackend) -> None:
    events, sns, sqs = (client(backend, service) for service in ("events", "sns", "sqs"))
    topic_arn = sns.create_topic(Name=unique("job-status"))["TopicArn"]
    subscriber_url, subscriber_arn = queue_with_arn(sqs, "email-stand-in")
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=subscriber_arn)
    watcher_url, watcher_arn = queue_with_arn(sqs, "job-watcher")

    source = unique("runbook.tests")
    pattern = json.dumps({"source": [source], "detail-type": ["Batch Operations Job State Change"]})
    for rule, target in ((unique("to-sns"), topic_arn), (unique("to-sqs"), watcher_arn)):
        events.put_rule(Name=rule, EventPattern=pattern)
        events.put_targets(Rule=rule, Targets=[{"Id": "target", "Arn": target}])

    detail = {"jobId": "job-1", "status": "Complete"}
    answer = events.put_events(Entries=[
        {"Source": source, "DetailType": "Batch Operations Job State Change", "Detail": json.dumps(detail)},
        {"Source": source, "DetailType": "Something Else", "Detail": json.dumps({"ignored": True})},
    ])
    assert answer["FailedEntryCount"] == 0

    notifications = received_bodies(sqs, subscriber_url)
    assert [n["TopicArn"] for n in notifications] == [topic_arn]
    event = json.loads(notifications[0]["Message"])
    assert (event["source"], event["detail-type"], event["detail"]) == (
        source, "Batch Operations Job State Change", detail
    )
    assert event["time"].endswith("Z")
    watched = received_bodies(sqs, watcher_url)
    assert [e["detail"] for e in watched] == [detail]


# ------------------------------------------------------ lock fields a caller may not read


def test_legal_hold_of_a_version_never_held_is_no_such_configuration(s3: Any, lock_bucket: str) -> None:
    version = s3.put_object(Bucket=lock_bucket, Key="never-held", Body=b"plain")["VersionId"]
    with pytest.raises(ClientError) as raised:
        s3.get_object_legal_hold(Bucket=lock_bucket, Key="never-held", VersionId=version)
    assert raised.value.response["Error"]["Code"] == "NoSuchObjectLockConfiguration"
    held = s3.put_object(Bucket=lock_bucket, Key="held", Body=b"x", ObjectLockLegalHoldStatus="ON")["VersionId"]
    assert s3.get_object_legal_hold(Bucket=lock_bucket, Key="held", VersionId=held)["LegalHold"] == {"Status": "ON"}


def test_lock_fields_of_an_archived_version_can_be_read(s3: Any, lock_bucket: str) -> None:
    until = datetime(2032, 1, 1, tzinfo=timezone.utc)
    version = s3.put_object(Bucket=lock_bucket, Key="archived", Body=b"cold", StorageClass="GLACIER",
                            ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=until,
                            ObjectLockLegalHoldStatus="ON")["VersionId"]
    retention = s3.get_object_retention(Bucket=lock_bucket, Key="archived", VersionId=version)["Retention"]
    assert retention == {"Mode": "COMPLIANCE", "RetainUntilDate": until}
    assert s3.get_object_legal_hold(Bucket=lock_bucket, Key="archived", VersionId=version)["LegalHold"] == {
        "Status": "ON"}


def _deny(action: str, resource: str) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": [
        {"Sid": "NoLockReads", "Effect": "Deny", "Principal": "*", "Action": action, "Resource": resource}]}


def _locked_pair(s3: Any, bucket: str) -> dict[str, str]:
    """Put a retained, held version under secret/ and under open/; return their version ids by key."""
    until = datetime(2031, 1, 1, tzinfo=timezone.utc)
    return {key: s3.put_object(Bucket=bucket, Key=key, Body=b"golden", ObjectLockMode="GOVERNANCE",
                               ObjectLockRetainUntilDate=until, ObjectLockLegalHoldStatus="ON")["VersionId"]
            for key in ("secret/a.txt", "open/a.txt")}


@pytest.mark.parametrize(("action", "call", "hidden", "kept"), [
    ("s3:GetObjectRetention", "get_object_retention", ("ObjectLockMode", "ObjectLockRetainUntilDate"),
     ("ObjectLockLegalHoldStatus",)),
    ("s3:GetObjectLegalHold", "get_object_legal_hold", ("ObjectLockLegalHoldStatus",),
     ("ObjectLockMode", "ObjectLockRetainUntilDate")),
], ids=["retention", "legal-hold"])
def test_a_bucket_policy_deny_on_a_prefix_hides_that_lock_field_there_only(
    s3: Any, action: str, call: str, hidden: tuple[str, ...], kept: tuple[str, ...]
) -> None:
    bucket = unique("lock-deny")
    s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    versions = _locked_pair(s3, bucket)
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(_deny(action, f"arn:aws:s3:::{bucket}/secret/*")))

    for key, version in versions.items():
        head = s3.head_object(Bucket=bucket, Key=key, VersionId=version)
        got = s3.get_object(Bucket=bucket, Key=key, VersionId=version)
        denied = key.startswith("secret/")
        for answer in (head, got):
            assert all((name in answer) != denied for name in hidden), (key, answer)
            assert all(name in answer for name in kept), (key, answer)
        if denied:
            with pytest.raises(ClientError) as refused:
                getattr(s3, call)(Bucket=bucket, Key=key, VersionId=version)
            assert refused.value.response["Error"]["Code"] == "AccessDenied"
            assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        else:
            getattr(s3, call)(Bucket=bucket, Key=key, VersionId=version)


def test_a_deny_in_the_callers_identity_policy_hides_the_field_for_that_caller_only(
    s3: Any, backend: EmbeddedBackend
) -> None:
    bucket = unique("lock-deny-identity")
    s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    versions = _locked_pair(s3, bucket)
    iam = client(backend, "iam")
    role = unique("auditor")
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                     "Principal": {"AWS": f"arn:aws:iam::{OPERATOR_ACCOUNT}:root"}}]}
    role_arn = iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    policy = _deny("s3:GetObjectRetention", f"arn:aws:s3:::{bucket}/secret/*")
    del policy["Statement"][0]["Principal"]
    iam.put_role_policy(RoleName=role, PolicyName="no-retention", PolicyDocument=json.dumps(policy))
    credentials = client(backend, "sts").assume_role(RoleArn=role_arn, RoleSessionName="auditor")["Credentials"]
    auditor = boto3.client(
        "s3", endpoint_url=backend.endpoint, region_name=REGION, aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"], aws_session_token=credentials["SessionToken"],
        config=Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 1}),
    )
    secret = versions["secret/a.txt"]
    assert "ObjectLockMode" not in auditor.head_object(Bucket=bucket, Key="secret/a.txt", VersionId=secret)
    assert "ObjectLockMode" in s3.head_object(Bucket=bucket, Key="secret/a.txt", VersionId=secret)
    assert "ObjectLockMode" in auditor.head_object(Bucket=bucket, Key="open/a.txt", VersionId=versions["open/a.txt"])


# ------------------------------------------------------------ Object Lock of multipart uploads

PART = 5 * 1024 * 1024  # S3's minimum size of every part but the last


def _upload_in_parts(s3: Any, bucket: str, key: str, parts: list[bytes], **lock: Any) -> dict[str, Any]:
    """Upload `parts` as one multipart object, with the lock arguments given to CreateMultipartUpload."""
    upload = s3.create_multipart_upload(Bucket=bucket, Key=key, **lock)["UploadId"]
    done = [{"PartNumber": number, "ETag": s3.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=number,
                                                          Body=body)["ETag"]}
            for number, body in enumerate(parts, start=1)]
    return dict(s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload,
                                             MultipartUpload={"Parts": done}))


def test_a_multipart_upload_keeps_the_lock_it_was_created_with(s3: Any, lock_bucket: str) -> None:
    until = datetime(2032, 4, 5, 6, 7, 8, tzinfo=timezone.utc)
    parts = [b"a" * PART, b"b" * PART, b"tail"]

    completed = _upload_in_parts(s3, lock_bucket, "large/locked.bin", parts, ObjectLockMode="COMPLIANCE",
                                 ObjectLockRetainUntilDate=until, ObjectLockLegalHoldStatus="ON")

    version = completed["VersionId"]
    head = s3.head_object(Bucket=lock_bucket, Key="large/locked.bin", VersionId=version)
    assert (head["ObjectLockMode"], head["ObjectLockRetainUntilDate"], head["ObjectLockLegalHoldStatus"]) == (
        "COMPLIANCE", until, "ON")
    assert s3.get_object_retention(Bucket=lock_bucket, Key="large/locked.bin", VersionId=version)["Retention"] == {
        "Mode": "COMPLIANCE", "RetainUntilDate": until}
    digests = b"".join(hashlib.md5(part).digest() for part in parts)
    assert head["ETag"] == f'"{hashlib.md5(digests).hexdigest()}-3"'
    assert s3.head_object(Bucket=lock_bucket, Key="large/locked.bin", VersionId=version, PartNumber=1)[
        "PartsCount"] == 3
    with pytest.raises(ClientError):
        s3.delete_object(Bucket=lock_bucket, Key="large/locked.bin", VersionId=version)


def test_a_multipart_upload_without_a_lock_takes_the_buckets_default_retention(s3: Any) -> None:
    bucket = unique("default-retention")
    s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    s3.put_object_lock_configuration(Bucket=bucket, ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 3}}})
    before = datetime.now(timezone.utc)

    completed = _upload_in_parts(s3, bucket, "defaulted.bin", [b"c" * PART, b"d"])

    head = s3.head_object(Bucket=bucket, Key="defaulted.bin", VersionId=completed["VersionId"])
    assert head["ObjectLockMode"] == "GOVERNANCE"
    assert before + timedelta(days=3) - timedelta(seconds=5) <= head["ObjectLockRetainUntilDate"]
    assert head["ObjectLockRetainUntilDate"] <= datetime.now(timezone.utc) + timedelta(days=3)
    assert "ObjectLockLegalHoldStatus" not in head


def test_lock_headers_on_a_multipart_upload_to_a_bucket_without_object_lock_are_refused(s3: Any) -> None:
    bucket = unique("no-lock")
    s3.create_bucket(Bucket=bucket)

    with pytest.raises(ClientError) as refused:
        s3.create_multipart_upload(Bucket=bucket, Key="x", ObjectLockLegalHoldStatus="ON")

    assert refused.value.response["Error"]["Code"] == "InvalidRequest"
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


# --------------------------------------------------------------------- RestoreObject and x-amz-restore


@pytest.fixture
def quick_restores() -> Iterator[float]:
    """Restores take 0.4 s in this backend during the test (the drill default is restored after)."""
    from runbook_lib.embedded import restore

    before = restore.restore_seconds()
    restore.configure(0.4)
    yield 0.4
    restore.configure(before)


def archived_history(s3: Any) -> tuple[str, str, str]:
    """A versioned bucket whose key has an archived older version and a STANDARD newer one."""
    bucket = unique("restore")
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    archived = s3.put_object(Bucket=bucket, Key="cold.bin", Body=b"archived", StorageClass="GLACIER")["VersionId"]
    current = s3.put_object(Bucket=bucket, Key="cold.bin", Body=b"current")["VersionId"]
    return bucket, archived, current


def test_restoring_an_archived_version_shows_ongoing_then_finished_with_a_midnight_expiry(
    s3: Any, quick_restores: float,
) -> None:
    bucket, archived, current = archived_history(s3)
    with pytest.raises(ClientError) as refused:
        s3.get_object(Bucket=bucket, Key="cold.bin", VersionId=archived)
    assert refused.value.response["Error"]["Code"] == "InvalidObjectState"
    assert "Restore" not in s3.head_object(Bucket=bucket, Key="cold.bin", VersionId=archived)

    answer = s3.restore_object(Bucket=bucket, Key="cold.bin", VersionId=archived,
                               RestoreRequest={"Days": 2, "GlacierJobParameters": {"Tier": "Bulk"}})

    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 202
    assert s3.head_object(Bucket=bucket, Key="cold.bin", VersionId=archived)["Restore"] == 'ongoing-request="true"'
    with pytest.raises(ClientError) as still_archived:
        s3.get_object(Bucket=bucket, Key="cold.bin", VersionId=archived)
    assert still_archived.value.response["Error"]["Code"] == "InvalidObjectState"
    with pytest.raises(ClientError) as again:
        s3.restore_object(Bucket=bucket, Key="cold.bin", VersionId=archived, RestoreRequest={"Days": 2})
    assert again.value.response["Error"]["Code"] == "RestoreAlreadyInProgress"
    # moto restores the key's latest version whatever versionId says; the current version is untouched.
    assert "Restore" not in s3.head_object(Bucket=bucket, Key="cold.bin", VersionId=current)

    time_after_restore = datetime.now(timezone.utc)
    time.sleep(quick_restores + 0.2)
    head = s3.head_object(Bucket=bucket, Key="cold.bin", VersionId=archived)
    ongoing, expiry = head["Restore"].split(", ", 1)
    assert ongoing == 'ongoing-request="false"'
    expiry_date = datetime.strptime(expiry, 'expiry-date="%a, %d %b %Y %H:%M:%S GMT"').replace(tzinfo=timezone.utc)
    # Completion plus the days, rounded up to the next midnight UTC.
    assert (expiry_date.hour, expiry_date.minute, expiry_date.second) == (0, 0, 0)
    assert timedelta(days=2) < expiry_date - time_after_restore <= timedelta(days=3, seconds=5)
    assert head["StorageClass"] == "GLACIER"  # a restore makes a temporary copy; the version stays archived
    assert s3.get_object(Bucket=bucket, Key="cold.bin", VersionId=archived)["Body"].read() == b"archived"


def test_a_version_that_is_not_archived_cannot_be_restored(s3: Any) -> None:
    bucket, _, current = archived_history(s3)

    with pytest.raises(ClientError) as refused:
        s3.restore_object(Bucket=bucket, Key="cold.bin", VersionId=current, RestoreRequest={"Days": 1})

    assert refused.value.response["Error"]["Code"] == "InvalidObjectState"
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
