"""S3 Inventory on the embedded backend: configured with boto3 or the AWS CLI, delivered, read back as AWS writes it."""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import pyarrow.orc as orc
import pyarrow.parquet as pq
import pytest
from botocore.exceptions import ClientError
from runbook_fixtures import Drill

from runbook_lib.embedded import inventory
from runbook_lib.embedded.server import VAULT_ACCOUNT

pytestmark = pytest.mark.xdist_group("inventory-delivery")

AWS = Path(sys.executable).parent / "aws"
FIELDS = ["Size", "LastModifiedDate", "ETag", "StorageClass", "IsMultipartUploaded", "ReplicationStatus",
          "EncryptionStatus", "BucketKeyStatus", "ObjectLockMode", "ObjectLockRetainUntilDate",
          "ObjectLockLegalHoldStatus", "ChecksumAlgorithm"]


def _inventory_bucket(drill: Drill, name: str, allow: bool = True) -> None:
    """Create a destination bucket; with `allow`, its policy lets S3 write reports of the vault account."""
    s3 = drill.client("s3")
    s3.create_bucket(Bucket=name)
    if allow:
        s3.put_bucket_policy(Bucket=name, Policy=json.dumps({"Version": "2012-10-17", "Statement": [{
            "Sid": "InventoryReports", "Effect": "Allow", "Principal": {"Service": "s3.amazonaws.com"},
            "Action": "s3:PutObject", "Resource": f"arn:aws:s3:::{name}/*",
            "Condition": {"StringEquals": {"aws:SourceAccount": VAULT_ACCOUNT}},
        }]}))


def _configure(drill: Drill, destination: str, config_id: str, file_format: str, versions: str = "All",
               prefix: str = "inv") -> None:
    drill.client("s3").put_bucket_inventory_configuration(
        Bucket=drill.truth.vault_bucket, Id=config_id, InventoryConfiguration={
            "Id": config_id, "IsEnabled": True, "IncludedObjectVersions": versions,
            "Destination": {"S3BucketDestination": {"Bucket": f"arn:aws:s3:::{destination}", "Format": file_format,
                                                    "Prefix": prefix, "AccountId": VAULT_ACCOUNT}},
            "Schedule": {"Frequency": "Daily"}, "OptionalFields": FIELDS,
        })


def _object(drill: Drill, bucket: str, key: str) -> bytes:
    return bytes(drill.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())


def _read_report(drill: Drill, bucket: str, manifest_key: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Read a delivered report as a consumer would: checksum, manifest, every file with its MD5."""
    body = _object(drill, bucket, manifest_key)
    checksum = _object(drill, bucket, manifest_key.replace("manifest.json", "manifest.checksum")).decode().strip()
    assert checksum == hashlib.md5(body).hexdigest()
    manifest = json.loads(body)
    rows: list[dict[str, Any]] = []
    for listed in manifest["files"]:
        data = _object(drill, bucket, listed["key"])
        assert hashlib.md5(data).hexdigest() == listed["MD5checksum"] and len(data) == listed["size"]
        if manifest["fileFormat"] == "CSV":
            names = [n.strip() for n in manifest["fileSchema"].split(",")]
            for values in csv.reader(io.StringIO(gzip.decompress(data).decode())):
                row = dict(zip(names, values, strict=True))
                row["Key"] = unquote_plus(row["Key"])
                rows.append(row)
        else:
            reader = pq.read_table if manifest["fileFormat"] == "Parquet" else orc.read_table
            rows.extend(reader(io.BytesIO(data)).to_pylist())
    return manifest, rows


def _listed_versions(drill: Drill) -> dict[tuple[str, str], dict[str, Any]]:
    """Return every version of the vault as ListObjectVersions and HeadObject tell it."""
    s3 = drill.client("s3")
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=drill.truth.vault_bucket):
        for version in page.get("Versions", []):
            head = s3.head_object(Bucket=drill.truth.vault_bucket, Key=version["Key"], VersionId=version["VersionId"])
            found[(version["Key"], version["VersionId"])] = {**version, **head, "marker": False}
        for marker in page.get("DeleteMarkers", []):
            found[(marker["Key"], marker["VersionId"])] = {**marker, "marker": True}
    return found


def test_csv_report_lists_every_version_as_head_tells_it(aws_env: Drill) -> None:
    _inventory_bucket(aws_env, "inventory-csv-dest")
    _configure(aws_env, "inventory-csv-dest", "all-csv", "CSV")
    delivery = aws_env.backend.deliver_inventory(aws_env.truth.vault_bucket, "all-csv")
    assert delivery.manifest_key.startswith(f"inv/{aws_env.truth.vault_bucket}/all-csv/")
    manifest, rows = _read_report(aws_env, "inventory-csv-dest", delivery.manifest_key)
    assert manifest["sourceBucket"] == aws_env.truth.vault_bucket
    assert manifest["destinationBucket"] == "arn:aws:s3:::inventory-csv-dest"
    assert manifest["version"] == "2016-11-30" and manifest["fileFormat"] == "CSV"
    assert manifest["fileSchema"].startswith("Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size, LastModifiedDate")
    assert abs(int(manifest["creationTimestamp"]) / 1000 - time.time()) < 120
    assert all(f["key"].startswith(f"inv/{aws_env.truth.vault_bucket}/all-csv/data/") for f in manifest["files"])
    listed = _listed_versions(aws_env)
    by_version = {(r["Key"], r["VersionId"] or "null"): r for r in rows}
    assert set(by_version) == set(listed)
    for identity, truth in listed.items():
        row = by_version[identity]
        assert row["IsDeleteMarker"] == ("true" if truth["marker"] else "false")
        assert row["IsLatest"] == ("true" if truth["IsLatest"] else "false")
        if truth["marker"]:
            assert row["Size"] == "" and row["ObjectLockMode"] == ""
            continue
        assert int(row["Size"]) == truth["ContentLength"] and row["ETag"] == truth["ETag"].strip('"')
        assert row["ReplicationStatus"] == truth.get("ReplicationStatus", "")
        assert row["ObjectLockMode"].upper() == truth.get("ObjectLockMode", "")
        assert row["ObjectLockLegalHoldStatus"].upper() == truth.get("ObjectLockLegalHoldStatus", "OFF")
        if truth.get("ObjectLockRetainUntilDate"):
            assert row["ObjectLockRetainUntilDate"].endswith("Z")
        encryption = {"aws:kms": "SSE-KMS", "AES256": "SSE-S3"}.get(truth.get("ServerSideEncryption", ""), "NOT-SSE")
        assert row["EncryptionStatus"] == encryption
    symlink_key = f"inv/{aws_env.truth.vault_bucket}/all-csv/hive/dt={delivery.created:%Y-%m-%d-%H-%M}/symlink.txt"
    paths = _object(aws_env, "inventory-csv-dest", symlink_key).decode().split()
    assert paths == [f"s3://inventory-csv-dest/{f['key']}" for f in manifest["files"]]


@pytest.mark.parametrize("file_format", ["Parquet", "ORC"])
def test_columnar_report_has_aws_columns_and_current_versions_only(aws_env: Drill, file_format: str) -> None:
    destination = f"inventory-{file_format.lower()}-dest"
    _inventory_bucket(aws_env, destination)
    _configure(aws_env, destination, "current", file_format, versions="Current", prefix="")
    delivery = aws_env.backend.deliver_inventory(aws_env.truth.vault_bucket, "current")
    assert delivery.manifest_key.startswith(f"{aws_env.truth.vault_bucket}/current/")
    manifest, rows = _read_report(aws_env, destination, delivery.manifest_key)
    assert manifest["fileFormat"] == file_format
    if file_format == "Parquet":
        assert manifest["fileSchema"].startswith(
            "message s3.inventory { required binary bucket (UTF8); required binary key (UTF8); optional int64 size;")
        assert "optional int64 object_lock_retain_until_date (TIMESTAMP_MILLIS);" in manifest["fileSchema"]
    else:
        assert manifest["fileSchema"].startswith("struct<bucket:string,key:string,size:bigint,last_modified_date:")
    assert "version_id" not in rows[0] and "e_tag" in rows[0] and "object_lock_legal_hold_status" in rows[0]
    listed = _listed_versions(aws_env)
    current = {key for (key, _), v in listed.items() if v["IsLatest"] and not v["marker"]}
    assert {row["key"] for row in rows} == current


def test_configuration_round_trips_and_delete_removes_only_it(aws_env: Drill) -> None:
    s3 = aws_env.client("s3")
    _inventory_bucket(aws_env, "inventory-roundtrip-dest")
    _configure(aws_env, "inventory-roundtrip-dest", "roundtrip", "CSV", versions="Current")
    stored = s3.get_bucket_inventory_configuration(Bucket=aws_env.truth.vault_bucket, Id="roundtrip")
    assert stored["InventoryConfiguration"]["IncludedObjectVersions"] == "Current"
    assert stored["InventoryConfiguration"]["OptionalFields"] == FIELDS
    listed = s3.list_bucket_inventory_configurations(Bucket=aws_env.truth.vault_bucket)
    assert "roundtrip" in [c["Id"] for c in listed["InventoryConfigurationList"]]
    s3.delete_bucket_inventory_configuration(Bucket=aws_env.truth.vault_bucket, Id="roundtrip")
    with pytest.raises(ClientError):
        s3.get_bucket_inventory_configuration(Bucket=aws_env.truth.vault_bucket, Id="roundtrip")
    s3.create_bucket(Bucket="inventory-empty-bucket")
    # moto would delete this empty bucket for a DeleteBucketInventoryConfiguration.
    with pytest.raises(ClientError) as missing:
        s3.delete_bucket_inventory_configuration(Bucket="inventory-empty-bucket", Id="none")
    assert missing.value.response["Error"]["Code"] == "NoSuchConfiguration"
    s3.head_bucket(Bucket="inventory-empty-bucket")


def test_destination_that_refuses_s3_gets_no_report(aws_env: Drill) -> None:
    _inventory_bucket(aws_env, "inventory-closed-dest", allow=False)
    _configure(aws_env, "inventory-closed-dest", "closed", "CSV")
    delivery = inventory.deliver(aws_env.truth.vault_bucket, "closed")
    assert delivery.skipped and "s3:PutObject" in delivery.skipped and not delivery.manifest_key
    assert "Contents" not in aws_env.client("s3").list_objects_v2(Bucket="inventory-closed-dest")


def test_scheduler_delivers_a_new_configuration_once(aws_env: Drill) -> None:
    _inventory_bucket(aws_env, "inventory-scheduled-dest")
    scheduler = inventory.InventoryScheduler()
    scheduler.tick(0.0)  # what exists already
    _configure(aws_env, "inventory-scheduled-dest", "scheduled", "Parquet")
    delivered = scheduler.tick(1.0)
    assert [(d.source_bucket, d.config_id) for d in delivered] == [(aws_env.truth.vault_bucket, "scheduled")]
    assert scheduler.tick(2.0) == []


def test_scheduler_does_not_repeat_a_callers_delivery_but_retries_a_refused_destination(aws_env: Drill) -> None:
    s3 = aws_env.client("s3")
    _inventory_bucket(aws_env, "inventory-retried-dest")
    scheduler = inventory.InventoryScheduler(every=100.0)
    scheduler.tick(0.0)
    _configure(aws_env, "inventory-retried-dest", "retried", "CSV")
    inventory.deliver(aws_env.truth.vault_bucket, "retried")
    ours = lambda deliveries: [(d.config_id, bool(d.skipped)) for d in deliveries if d.config_id == "retried"]  # noqa: E731
    assert ours(scheduler.tick(1.0)) == []  # a second report in the same minute would overwrite the caller's
    policy = s3.get_bucket_policy(Bucket="inventory-retried-dest")["Policy"]
    s3.delete_bucket_policy(Bucket="inventory-retried-dest")
    assert ours(scheduler.tick(101.0)) == []  # due, and refused: the destination lets S3 write nothing
    s3.put_bucket_policy(Bucket="inventory-retried-dest", Policy=policy)
    # A refused destination is tried again seconds later, not a day.
    assert ours(scheduler.tick(107.0)) == [("retried", False)]


@pytest.mark.cli
def test_aws_cli_configures_and_reads_a_report(aws_env: Drill) -> None:
    if not AWS.exists():
        pytest.fail(f"the AWS CLI is not installed at {AWS}; install the test extras (pip install -e .[test])")
    environment = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    environment.update(aws_env.environ())

    def aws(*arguments: str) -> Any:
        done = subprocess.run([str(AWS), *arguments, "--profile", "drill-vault", "--output", "json"],
                              env=environment, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout) if done.stdout.strip() else None

    _inventory_bucket(aws_env, "inventory-cli-dest")
    configuration = {
        "Id": "cli", "IsEnabled": True, "IncludedObjectVersions": "All",
        "Destination": {"S3BucketDestination": {"Bucket": "arn:aws:s3:::inventory-cli-dest", "Format": "Parquet"}},
        "Schedule": {"Frequency": "Daily"}, "OptionalFields": FIELDS,
    }
    aws("s3api", "put-bucket-inventory-configuration", "--bucket", aws_env.truth.vault_bucket, "--id", "cli",
        "--inventory-configuration", json.dumps(configuration))
    got = aws("s3api", "get-bucket-inventory-configuration", "--bucket", aws_env.truth.vault_bucket, "--id", "cli")
    assert got["InventoryConfiguration"]["Destination"]["S3BucketDestination"]["Format"] == "Parquet"
    # The backend's scheduler delivers a new configuration's first report by itself.
    deadline = time.monotonic() + 60
    keys: list[str] = []
    while time.monotonic() < deadline and not any(k.endswith("manifest.json") for k in keys):
        listing = aws("s3api", "list-objects-v2", "--bucket", "inventory-cli-dest")
        keys = [item["Key"] for item in (listing or {}).get("Contents", [])]
        time.sleep(0.5)
    manifest_key = next(k for k in keys if k.endswith("manifest.json"))
    manifest, rows = _read_report(aws_env, "inventory-cli-dest", manifest_key)
    assert manifest["fileFormat"] == "Parquet"
    assert len(rows) == len(_listed_versions(aws_env))
