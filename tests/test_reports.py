"""Completion reports and generated manifests read back into typed DataFrames."""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import random
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus, unquote_plus

import pandas as pd
import pytest
from botocore.exceptions import ClientError

from runbook_lib.errors import ReportError
from runbook_lib.reports import (
    COMPLETION_REPORT_COLUMNS,
    TASK_STATUS_DTYPE,
    LocalObjectStore,
    completion_report_manifest_key,
    failed_tasks,
    load_completion_report,
    load_generated_manifest,
    read_completion_report_csv,
    read_manifest_csv,
    retry_manifest_csv,
)

REPORT_BUCKET = "report-bucket"
JOB_ID = "8f1c6a0e-3d52-4c8b-9a61-5c2f7d0e4b11"
LONG_KEY = "deep/" + "k" * (1024 - len("deep/") - len(".bin")) + ".bin"
AWKWARD_KEYS = [
    "reports/quarterly summary 2026.pdf",
    "reports/profit+loss.xlsx",
    "reports/100% done.txt",
    "notes/#1 priority.md",
    "queries/what?.sql",
    "i18n/résumé-é.txt",
    "i18n/日本語/ファイル.txt",
    "i18n/emoji-🚀.json",
    "spaces  and\ttabs/odd name .txt",
    "trailing-slash-object/",
    "quote'and\"double.txt",
    "comma,and;semicolon.csv",
    "%41 looks encoded",
    LONG_KEY,
]


class FakeS3:
    """A tiny object store with boto3's get_object shape and its NoSuchKey error."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], bytes] = {}

    def put(self, bucket: str, key: str, body: bytes) -> None:
        self.objects[(bucket, key)] = body

    def get_object(self, *, Bucket: str, Key: str) -> dict[str, Any]:  # boto3's argument names
        if (Bucket, Key) not in self.objects:
            error = {"Error": {"Code": "NoSuchKey", "Message": "The specified key does not exist."}}
            raise ClientError(error, "GetObject")
        return {"Body": io.BytesIO(self.objects[(Bucket, Key)])}


def result_csv(rows: list[list[object]]) -> bytes:
    """Return result rows as S3 writes them: no header, CRLF, standard quoting."""
    text = io.StringIO()
    csv.writer(text, lineterminator="\r\n").writerows(rows)
    return text.getvalue().encode()


def task(
    key: str, version: str = "v1", status: str = "succeeded", code: str = "", message: str = "success"
) -> list[object]:
    """Return one result row in the order real reports use (HTTP status before error code)."""
    http = 200 if status == "succeeded" else 500
    return ["vault", quote(key, safe="/"), version, status, http, code, message]


def put_report(s3: FakeS3, prefix: str | None, shards: list[bytes], *, statuses: list[str] | None = None) -> str:
    """Store a completion report (index and result shards) and return the index key."""
    manifest_key = completion_report_manifest_key(prefix, JOB_ID)
    folder = manifest_key.rsplit("/", 1)[0]
    results = []
    for i, data in enumerate(shards):
        key = f"{folder}/results/{hashlib.sha1(data + bytes([i]), usedforsecurity=False).hexdigest()}.csv"
        s3.put(REPORT_BUCKET, key, data)
        results.append({
            "TaskExecutionStatus": (statuses or ["succeeded"] * len(shards))[i],
            "Bucket": REPORT_BUCKET,
            "MD5Checksum": hashlib.md5(data, usedforsecurity=False).hexdigest(),
            "Key": key,
        })
    index = {
        "Format": "Report_CSV_20180820",
        "ReportCreationDate": "2026-08-27T09:49:46.474712072Z",
        "Results": results,
        "ReportSchema": "Bucket, Key, VersionId, TaskStatus, ErrorCode, HTTPStatusCode, ResultMessage",
    }
    s3.put(REPORT_BUCKET, manifest_key, json.dumps(index).encode())
    return manifest_key


def put_manifest(s3: FakeS3, schema: list[str], shards: list[bytes], names: list[str]) -> str:
    """Store a generated manifest (index and data files) and return the index key."""
    folder = f"generated/job-{JOB_ID}"
    files = []
    for name, data in zip(names, shards, strict=True):
        key = f"{folder}/data/{name}"
        s3.put(REPORT_BUCKET, key, data)
        md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
        files.append({"key": key, "size": len(data), "MD5checksum": md5})
    index = {
        "sourceBucket": "vault",
        "destinationBucket": f"arn:aws:s3:::{REPORT_BUCKET}",
        "version": "2021-11-30",
        "creationTimestamp": "1798364986000",
        "fileFormat": "CSV",
        "fileSchema": ", ".join(schema),
        "files": files,
    }
    s3.put(REPORT_BUCKET, f"{folder}/manifest.json", json.dumps(index).encode())
    return f"{folder}/manifest.json"


# --------------------------------------------------------------------------- locations


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        (None, f"job-{JOB_ID}/manifest.json"),
        ("", f"job-{JOB_ID}/manifest.json"),
        ("reports", f"reports/job-{JOB_ID}/manifest.json"),
        ("reports/", f"reports//job-{JOB_ID}/manifest.json"),
        ("a/b", f"a/b/job-{JOB_ID}/manifest.json"),
    ],
)
def test_report_index_key_joins_prefix_with_a_literal_slash(prefix: str | None, expected: str) -> None:
    assert completion_report_manifest_key(prefix, JOB_ID) == expected


# --------------------------------------------------------------------------- completion report


@pytest.mark.parametrize("prefix", [None, "reports", "reports/"])
def test_completion_report_reads_every_shard_with_typed_columns(prefix: str | None) -> None:
    s3 = FakeS3()
    succeeded = result_csv([task("a.txt", "v1"), task("b.txt", "v2")])
    failed = result_csv([task("c.txt", "v3", "failed", "DstPutObjectNotPermitted", "Access denied")])
    key = put_report(s3, prefix, [succeeded, failed], statuses=["succeeded", "failed"])

    report = load_completion_report(s3, REPORT_BUCKET, key)

    assert list(report.columns) == list(COMPLETION_REPORT_COLUMNS)
    assert report["key"].tolist() == ["a.txt", "b.txt", "c.txt"]
    assert report["task_status"].dtype == TASK_STATUS_DTYPE
    assert report["task_status"].tolist() == ["succeeded", "succeeded", "failed"]
    assert str(report["http_status"].dtype) == "Int16"
    assert report["http_status"].tolist() == [200, 200, 500]
    assert report["error_code"].isna().tolist() == [True, True, False]
    assert report["error_code"].iloc[2] == "DstPutObjectNotPermitted"
    for name in ("bucket", "key", "version_id", "error_code", "result_message"):
        assert report[name].dtype == pd.StringDtype("pyarrow"), name


def test_rows_are_read_in_their_real_order_not_the_report_schema_order() -> None:
    # ReportSchema says ErrorCode, HTTPStatusCode; rows hold the status first.
    data = (
        b"src-bkt,cold/archived.bin,3HL4kqtJvjVBH40Nrjfkd,failed,500,SrcObjectNotEligible,"
        b"Object is not eligible for replication\r\n"
    )

    row = read_completion_report_csv([data]).iloc[0]

    assert row["http_status"] == 500
    assert row["error_code"] == "SrcObjectNotEligible"
    assert row["result_message"] == "Object is not eligible for replication"


@pytest.mark.parametrize(
    "message",
    ["plain", "with, a comma", 'with "quotes"', 'both, "of", them', " padded ", ""],
)
@pytest.mark.parametrize("line_end", ["\r\n", "\n"])
def test_messages_with_commas_and_quotes_survive(message: str, line_end: str) -> None:
    text = io.StringIO()
    rows = [task("k1", status="failed", code="X", message=message), task("k2")]
    csv.writer(text, lineterminator=line_end).writerows(rows)

    report = read_completion_report_csv([text.getvalue().encode()])

    assert report["result_message"].tolist() == [message, "success"]
    assert report["key"].tolist() == ["k1", "k2"]


@pytest.mark.parametrize("key", AWKWARD_KEYS)
@pytest.mark.parametrize(
    "encode",
    [lambda k: quote(k, safe="/"), lambda k: quote_plus(k, safe="/"), lambda k: quote(k, safe="")],
    ids=["quote", "quote_plus", "quote_slash"],
)
def test_encoded_keys_are_decoded(key: str, encode: Any) -> None:
    data = result_csv([["vault", encode(key), "v1", "succeeded", 200, "", "success"]])

    assert read_completion_report_csv([data])["key"].tolist() == [key]


def test_long_key_of_1024_bytes_round_trips() -> None:
    data = result_csv([task(LONG_KEY)])

    decoded = read_completion_report_csv([data])["key"].iloc[0]

    assert len(decoded.encode()) == 1024 and decoded == LONG_KEY


@pytest.mark.parametrize(
    ("written", "expected"),
    [("null", "null"), ("\\N", None), ("", None), ("3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY",) * 2],
)
def test_version_ids_keep_null_and_drop_absent_markers(written: str, expected: str | None) -> None:
    report = read_completion_report_csv([result_csv([task("k", written)])])

    value = report["version_id"].iloc[0]
    assert (value is pd.NA) if expected is None else (value == expected)


def test_decoding_matches_unquote_plus_for_any_text() -> None:
    # Stray '%', escapes cut short at the end of a key, '+' and multibyte text mixed at random.
    rng = random.Random(5)
    alphabet = "ab%+2Bf0Fé日 /#?,\""
    keys = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12))) for _ in range(5000)]
    data = result_csv([["vault", key, "v1", "succeeded", 200, "", "success"] for key in keys])

    assert read_completion_report_csv([data])["key"].tolist() == [unquote_plus(key) for key in keys]


@pytest.mark.parametrize("escaped", ["%ff", "%C3", "%e6%97"])
def test_escapes_that_are_not_utf8_become_replacement_characters(escaped: str) -> None:
    row = ["vault", f"bad{escaped}.txt", "v1", "succeeded", 200, "", "success"]
    report = read_completion_report_csv([result_csv([row])])

    assert report["key"].iloc[0] == unquote_plus(f"bad{escaped}.txt")
    assert "\ufffd" in report["key"].iloc[0]


def test_shards_are_concatenated_in_index_order() -> None:
    s3 = FakeS3()
    shards = [result_csv([task(f"shard{s}/obj{i}") for i in range(3)]) for s in range(4)]
    key = put_report(s3, "reports", shards)

    report = load_completion_report(s3, REPORT_BUCKET, key)

    assert report["key"].tolist() == [f"shard{s}/obj{i}" for s in range(4) for i in range(3)]


def test_empty_shard_gives_an_empty_typed_frame() -> None:
    report = read_completion_report_csv([b""])

    assert report.empty
    assert list(report.columns) == list(COMPLETION_REPORT_COLUMNS)
    assert report["task_status"].dtype == TASK_STATUS_DTYPE


def test_md5_mismatch_names_the_changed_file() -> None:
    s3 = FakeS3()
    key = put_report(s3, "reports", [result_csv([task("a.txt")])])
    shard_key = next(k for (_, k) in s3.objects if "/results/" in k)
    s3.put(REPORT_BUCKET, shard_key, result_csv([task("tampered.txt")]))

    with pytest.raises(ReportError, match="MD5") as caught:
        load_completion_report(s3, REPORT_BUCKET, key)
    assert shard_key in str(caught.value)


def test_missing_report_says_which_key_was_looked_for_and_what_to_check() -> None:
    key = completion_report_manifest_key("reports/", JOB_ID)

    with pytest.raises(ReportError) as caught:
        load_completion_report(FakeS3(), REPORT_BUCKET, key)

    message = str(caught.value)
    assert f"s3://{REPORT_BUCKET}/{key}" in message
    assert "prefix" in message and "Complete" in message


def test_missing_result_file_is_named() -> None:
    s3 = FakeS3()
    key = put_report(s3, "reports", [result_csv([task("a.txt")])])
    shard_key = next(k for (_, k) in s3.objects if "/results/" in k)
    del s3.objects[(REPORT_BUCKET, shard_key)]

    with pytest.raises(ReportError, match="does not exist") as caught:
        load_completion_report(s3, REPORT_BUCKET, key)
    assert shard_key in str(caught.value)


def test_unreadable_report_is_a_report_error_with_advice() -> None:
    class Denied(FakeS3):
        def get_object(self, *, Bucket: str, Key: str) -> dict[str, Any]:  # boto3's argument names
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "Access Denied"}}, "GetObject")

    with pytest.raises(ReportError, match="s3:GetObject"):
        load_completion_report(Denied(), REPORT_BUCKET, "reports/job-x/manifest.json")


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"vault,k,v1,succeeded,200,\r\n", "columns"),
        (b"vault,k,v1,succeeded,200,,success,extra\r\n", "columns"),
        (b"vault,k,v1,SUCCEEDED,200,,success\r\n", "task statuses"),
    ],
)
def test_malformed_rows_are_report_errors(data: bytes, problem: str) -> None:
    with pytest.raises(ReportError, match=problem):
        read_completion_report_csv([data])


def test_wrong_index_format_is_rejected() -> None:
    s3 = FakeS3()
    s3.put(REPORT_BUCKET, "x/manifest.json", json.dumps({"Format": "Something_Else", "Results": []}).encode())

    with pytest.raises(ReportError, match="Report_CSV_20180820"):
        load_completion_report(s3, REPORT_BUCKET, "x/manifest.json")


def test_local_copies_are_read_from_files(tmp_path: Path) -> None:
    s3 = FakeS3()
    shards = [result_csv([task("a b.txt")]), result_csv([task("c+d.txt", status="failed", code="X")])]
    key = put_report(s3, "reports/", shards)
    for (bucket, object_key), body in s3.objects.items():
        target = tmp_path.joinpath(bucket, *[p for p in object_key.split("/") if p])
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(body)

    from_store = load_completion_report(LocalObjectStore(tmp_path), REPORT_BUCKET, key)
    from_paths = read_completion_report_csv(sorted((tmp_path / REPORT_BUCKET).rglob("*.csv")))

    assert from_store["key"].tolist() == ["a b.txt", "c+d.txt"]
    assert sorted(from_paths["key"].tolist()) == ["a b.txt", "c+d.txt"]


def test_local_store_refuses_keys_that_climb_out(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="climb"):
        LocalObjectStore(tmp_path).get_object(Bucket="b", Key="../../etc/passwd")


def test_failed_tasks_keeps_only_failures() -> None:
    report = read_completion_report_csv([result_csv([task("a"), task("b", status="failed", code="X"), task("c")])])

    assert failed_tasks(report)["key"].tolist() == ["b"]


# --------------------------------------------------------------------------- generated manifest


@pytest.mark.parametrize(("compressed", "name"), [(False, "part.csv"), (True, "part.csv.gz"), (True, "part.csv")])
def test_generated_manifest_reads_plain_and_gzip_files(compressed: bool, name: str) -> None:
    s3 = FakeS3()
    rows = result_csv([["vault", quote(k, safe="/"), f"v{i}"] for i, k in enumerate(AWKWARD_KEYS)])
    data = gzip.compress(rows) if compressed else rows
    key = put_manifest(s3, ["Bucket", "Key", "VersionId"], [data], [name])

    manifest = load_generated_manifest(s3, REPORT_BUCKET, key)

    assert list(manifest.columns) == ["bucket", "key", "version_id"]
    assert manifest["key"].tolist() == AWKWARD_KEYS
    assert manifest["version_id"].tolist() == [f"v{i}" for i in range(len(AWKWARD_KEYS))]


def test_generated_manifest_with_more_columns_and_null_versions() -> None:
    s3 = FakeS3()
    schema = ["Bucket", "Key", "VersionId", "IsLatest", "IsDeleteMarker", "Size", "ETag", "ObjectLockRetainUntilDate"]
    rows = [
        ["vault", "a%20b", "", "true", "false", "5", "abc", "2027-01-01T00:00:00.000Z"],
        ["vault", "c", "v2", "false", "false", "7", "def", ""],
    ]
    shards = [result_csv(rows[:1]), gzip.compress(result_csv(rows[1:]))]
    key = put_manifest(s3, schema, shards, ["one.csv", "two.csv.gz"])

    manifest = load_generated_manifest(s3, REPORT_BUCKET, key)

    assert list(manifest.columns) == [
        "bucket", "key", "version_id", "is_latest", "is_delete_marker", "size", "etag", "object_lock_retain_until_date",
    ]
    # Inventory writes the null version as an empty field; S3 calls it "null".
    assert manifest["version_id"].tolist() == ["null", "v2"]
    assert manifest["key"].tolist() == ["a b", "c"]
    assert manifest["size"].tolist() == ["5", "7"]


def test_generated_manifest_md5_mismatch_is_reported() -> None:
    s3 = FakeS3()
    key = put_manifest(s3, ["Bucket", "Key", "VersionId"], [b"vault,a,v1\n"], ["x.csv"])
    s3.put(REPORT_BUCKET, f"generated/job-{JOB_ID}/data/x.csv", b"vault,b,v1\n")

    with pytest.raises(ReportError, match=r"x\.csv"):
        load_generated_manifest(s3, REPORT_BUCKET, key)


def test_missing_generated_manifest_points_at_the_job_settings() -> None:
    with pytest.raises(ReportError, match="EnableManifestOutput") as caught:
        load_generated_manifest(FakeS3(), REPORT_BUCKET, "generated/job-x/manifest.json")
    assert "generated/job-x/manifest.json" in str(caught.value)


def test_manifest_without_a_key_column_is_rejected() -> None:
    s3 = FakeS3()
    key = put_manifest(s3, ["Bucket", "VersionId"], [b"vault,v1\n"], ["x.csv"])

    with pytest.raises(ReportError, match="Key column"):
        load_generated_manifest(s3, REPORT_BUCKET, key)


# --------------------------------------------------------------------------- retry manifest


def test_retry_manifest_round_trips_awkward_keys() -> None:
    report = read_completion_report_csv(
        [result_csv([task(k, f"v{i}", "failed", "X", "m") for i, k in enumerate(AWKWARD_KEYS)] + [task("ok.txt")])]
    )

    body = retry_manifest_csv(failed_tasks(report))
    again = read_manifest_csv([body], ["Bucket", "Key", "VersionId"])

    assert again["key"].tolist() == AWKWARD_KEYS
    assert again["version_id"].tolist() == [f"v{i}" for i in range(len(AWKWARD_KEYS))]
    assert again["bucket"].unique().tolist() == ["vault"]


def test_retry_manifest_encodes_plus_and_space_unambiguously() -> None:
    frame = pd.DataFrame({"key": ["a b+c/d.txt"], "version_id": ["null"]})

    assert retry_manifest_csv(frame, bucket="vault") == b"vault,a%20b%2Bc/d.txt,null\n"


def test_retry_manifest_without_versions_has_two_columns() -> None:
    report = read_completion_report_csv([result_csv([task("a", "", "failed", "InvalidRequest", "missing VersionId")])])

    assert retry_manifest_csv(failed_tasks(report)) == b"vault,a\n"


def test_retry_manifest_refuses_mixed_versioned_and_unversioned_rows() -> None:
    versions = pd.array(["v1", None], dtype="string")
    frame = pd.DataFrame({"bucket": ["vault", "vault"], "key": ["a", "b"], "version_id": versions})

    with pytest.raises(ReportError, match="two jobs"):
        retry_manifest_csv(frame)


def test_retry_manifest_needs_a_bucket() -> None:
    with pytest.raises(ReportError, match="bucket"):
        retry_manifest_csv(pd.DataFrame({"key": ["a"], "version_id": ["v1"]}))
