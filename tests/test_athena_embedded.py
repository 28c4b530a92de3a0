"""Athena on the embedded backend: queries over delivered S3 Inventory reports really run, through boto3."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError
from runbook_fixtures import Drill

from runbook_lib.embedded.server import VAULT_ACCOUNT

pytestmark = pytest.mark.xdist_group("athena-embedded")

DESTINATION = "athena-inventory-dest"
RESULTS = "athena-query-results"
FIELDS = ["Size", "LastModifiedDate", "ETag", "StorageClass", "ReplicationStatus", "ObjectLockMode",
          "ObjectLockRetainUntilDate", "ObjectLockLegalHoldStatus"]


def _run(athena: Any, query: str, database: str = "inventory", wait: bool = True) -> dict[str, Any]:
    """Start a query and return its final QueryExecution."""
    execution_id = athena.start_query_execution(
        QueryString=query, QueryExecutionContext={"Database": database},
        ResultConfiguration={"OutputLocation": f"s3://{RESULTS}/queries/"})["QueryExecutionId"]
    deadline = time.monotonic() + 60
    while True:
        execution = athena.get_query_execution(QueryExecutionId=execution_id)["QueryExecution"]
        if not wait or execution["Status"]["State"] not in ("QUEUED", "RUNNING") or time.monotonic() > deadline:
            return dict(execution)
        time.sleep(0.05)


def _rows(athena: Any, execution_id: str, page: int = 1000) -> list[list[str | None]]:
    """Return every result row (the header first), paging as a client does."""
    rows: list[list[str | None]] = []
    token: dict[str, str] = {}
    while True:
        answer = athena.get_query_results(QueryExecutionId=execution_id, MaxResults=page, **token)
        rows += [[cell.get("VarCharValue") for cell in row["Data"]] for row in answer["ResultSet"]["Rows"]]
        if "NextToken" not in answer:
            return rows
        token = {"NextToken": answer["NextToken"]}


@pytest.fixture(scope="module")
def reports(drill: Drill) -> Iterator[dict[str, Any]]:
    """Deliver a Parquet and a CSV inventory of the vault, and declare both as Athena tables."""
    s3 = drill.client("s3")
    for bucket in (DESTINATION, RESULTS):
        s3.create_bucket(Bucket=bucket)
    s3.put_bucket_policy(Bucket=DESTINATION, Policy=json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": "s3.amazonaws.com"}, "Action": "s3:PutObject",
        "Resource": f"arn:aws:s3:::{DESTINATION}/*",
        "Condition": {"StringEquals": {"aws:SourceAccount": VAULT_ACCOUNT}},
    }]}))
    delivered = {}
    for config_id, file_format in (("pq", "Parquet"), ("csv", "CSV")):
        s3.put_bucket_inventory_configuration(Bucket=drill.truth.vault_bucket, Id=config_id, InventoryConfiguration={
            "Id": config_id, "IsEnabled": True, "IncludedObjectVersions": "All", "Schedule": {"Frequency": "Daily"},
            "Destination": {"S3BucketDestination": {"Bucket": f"arn:aws:s3:::{DESTINATION}", "Format": file_format,
                                                    "Prefix": "inv"}},
            "OptionalFields": FIELDS})
        delivered[config_id] = drill.backend.deliver_inventory(drill.truth.vault_bucket, config_id)
    athena = drill.client("athena")
    assert _run(athena, "CREATE DATABASE IF NOT EXISTS inventory", "default")["Status"]["State"] == "SUCCEEDED"
    location = f"s3://{DESTINATION}/inv/{drill.truth.vault_bucket}"
    parquet = f"""CREATE EXTERNAL TABLE vault_parquet(
        bucket string, key string, version_id string, is_latest boolean, is_delete_marker boolean, size bigint,
        last_modified_date timestamp, e_tag string, storage_class string, replication_status string,
        object_lock_retain_until_date timestamp, object_lock_mode string, object_lock_legal_hold_status string)
      PARTITIONED BY (dt string)
      ROW FORMAT SERDE 'org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe'
      STORED AS INPUTFORMAT 'org.apache.hadoop.hive.ql.io.SymlinkTextInputFormat'
      OUTPUTFORMAT 'org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat'
      LOCATION '{location}/pq/hive/'
      TBLPROPERTIES ('projection.enabled'='true', 'projection.dt.type'='date',
        'projection.dt.format'='yyyy-MM-dd-HH-mm', 'projection.dt.range'='2022-01-01-00-00,NOW',
        'projection.dt.interval'='1', 'projection.dt.interval.unit'='MINUTES')"""
    csv_table = f"""CREATE EXTERNAL TABLE vault_csv(
        bucket string, key string, version_id string, is_latest string, is_delete_marker string, size string,
        last_modified_date string, e_tag string, storage_class string, replication_status string,
        object_lock_retain_until_date string, object_lock_mode string, object_lock_legal_hold_status string)
      PARTITIONED BY (dt string)
      ROW FORMAT SERDE 'org.apache.hadoop.hive.serde2.OpenCSVSerde'
      STORED AS INPUTFORMAT 'org.apache.hadoop.hive.ql.io.SymlinkTextInputFormat'
      OUTPUTFORMAT 'org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat'
      LOCATION '{location}/csv/hive/'
      TBLPROPERTIES ('projection.enabled'='true', 'projection.dt.type'='date',
        'projection.dt.format'='yyyy-MM-dd-HH-mm', 'projection.dt.range'='2022-01-01-00-00,NOW',
        'projection.dt.interval'='1', 'projection.dt.interval.unit'='MINUTES')"""
    for ddl in (parquet, csv_table):
        created = _run(athena, ddl)
        assert created["Status"]["State"] == "SUCCEEDED", created["Status"]
        assert created["StatementType"] == "DDL"
    yield {"athena": athena, "s3": s3, "delivered": delivered}


def _versions(drill: Drill) -> dict[tuple[str, str], dict[str, Any]]:
    found = {}
    for page in drill.client("s3").get_paginator("list_object_versions").paginate(Bucket=drill.truth.vault_bucket):
        for item in page.get("Versions", []) + page.get("DeleteMarkers", []):
            found[(item["Key"], item["VersionId"])] = item
    return found


def test_query_over_parquet_inventory_counts_what_s3_lists(aws_env: Drill, reports: dict[str, Any]) -> None:
    athena = reports["athena"]
    dt = reports["delivered"]["pq"].created.strftime("%Y-%m-%d-%H-%M")
    execution = _run(athena, f"SELECT count(*) AS versions, count_if(is_delete_marker) AS markers "
                             f"FROM vault_parquet WHERE dt = '{dt}'")
    assert execution["Status"]["State"] == "SUCCEEDED", execution["Status"]
    assert execution["Statistics"]["DataScannedInBytes"] > 0
    assert execution["StatementType"] == "DML"
    rows = _rows(athena, execution["QueryExecutionId"])
    listed = _versions(aws_env)
    markers = sum(1 for v in listed.values() if "ETag" not in v)
    assert rows == [["versions", "markers"], [str(len(listed)), str(markers)]]
    # The result is in the output location, as Athena writes it.
    output = execution["ResultConfiguration"]["OutputLocation"]
    assert output == f"s3://{RESULTS}/queries/{execution['QueryExecutionId']}.csv"
    body = reports["s3"].get_object(Bucket=RESULTS, Key=output.split("/", 3)[3])["Body"].read().decode()
    assert body.splitlines()[0] == '"versions","markers"'
    assert body.splitlines()[1] == f'"{len(listed)}","{markers}"'
    reports["s3"].head_object(Bucket=RESULTS, Key=output.split("/", 3)[3] + ".metadata")


def test_trino_functions_and_joins_across_formats(aws_env: Drill, reports: dict[str, Any]) -> None:
    athena = reports["athena"]
    query = """
        WITH p AS (SELECT key, version_id, size, object_lock_mode FROM vault_parquet WHERE NOT is_delete_marker),
             c AS (SELECT url_decode(key) AS key, nullif(version_id, '') AS version_id,
                          CAST(nullif(size, '') AS bigint) AS size, upper(nullif(object_lock_mode, '')) AS mode
                   FROM vault_csv WHERE is_delete_marker = 'false')
        SELECT count(*) AS matched, count_if(p.size <> c.size) AS size_differs,
               count_if(upper(p.object_lock_mode) IS DISTINCT FROM c.mode) AS mode_differs
        FROM p JOIN c ON p.key = c.key AND p.version_id = c.version_id"""
    execution = _run(athena, query)
    assert execution["Status"]["State"] == "SUCCEEDED", execution["Status"]
    objects = sum(1 for v in _versions(aws_env).values() if "ETag" in v)
    assert _rows(athena, execution["QueryExecutionId"])[1] == [str(objects), "0", "0"]


def test_results_page_with_header_first_and_nulls_as_absent(aws_env: Drill, reports: dict[str, Any]) -> None:
    athena = reports["athena"]
    execution = _run(athena, "SELECT key, version_id, object_lock_mode FROM vault_parquet ORDER BY key, version_id")
    paged = _rows(athena, execution["QueryExecutionId"], page=7)
    whole = _rows(athena, execution["QueryExecutionId"])
    assert paged == whole and paged[0] == ["key", "version_id", "object_lock_mode"]
    assert len(paged) == len(_versions(aws_env)) + 1
    assert any(row[2] is None for row in paged[1:]), "versions without a lock read NULL, not ''"
    columns = athena.get_query_results(QueryExecutionId=execution["QueryExecutionId"], MaxResults=1)
    assert [c["Type"] for c in columns["ResultSet"]["ResultSetMetadata"]["ColumnInfo"]] == ["varchar"] * 3


def test_errors_as_athena_reports_them(aws_env: Drill, reports: dict[str, Any]) -> None:
    athena = reports["athena"]
    syntax = _run(athena, "SELEC key FROM vault_parquet")
    assert syntax["Status"]["State"] == "FAILED"
    assert syntax["Status"]["StateChangeReason"].startswith("SYNTAX_ERROR: line ")
    assert syntax["Status"]["AthenaError"]["ErrorCategory"] == 2
    missing = _run(athena, "SELECT * FROM no_such_table")
    assert missing["Status"]["StateChangeReason"] == (
        "TABLE_NOT_FOUND: line 1:1: Table 'awsdatacatalog.inventory.no_such_table' does not exist")
    with pytest.raises(ClientError) as failed:
        athena.get_query_results(QueryExecutionId=missing["QueryExecutionId"])
    assert failed.value.response["Error"]["Code"] == "InvalidRequestException"
    assert "FAILED" in failed.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as no_output:
        athena.start_query_execution(QueryString="SELECT 1")
    assert "output location" in no_output.value.response["Error"]["Message"]


def test_partition_projection_reads_only_the_partition_asked_for(aws_env: Drill, reports: dict[str, Any]) -> None:
    athena = reports["athena"]
    dt = reports["delivered"]["pq"].created.strftime("%Y-%m-%d-%H-%M")
    one = _run(athena, f"SELECT count(*) FROM vault_parquet WHERE dt = '{dt}'")
    none = _run(athena, "SELECT count(*) FROM vault_parquet WHERE dt = '2023-01-01-00-00'")
    assert _rows(athena, none["QueryExecutionId"])[1] == ["0"]
    assert none["Statistics"]["DataScannedInBytes"] == 0 < one["Statistics"]["DataScannedInBytes"]
    listed = athena.list_query_executions(WorkGroup="primary")["QueryExecutionIds"]
    assert none["QueryExecutionId"] in listed


def test_views_and_drops_change_the_catalog(aws_env: Drill, reports: dict[str, Any]) -> None:
    athena = reports["athena"]
    created = _run(athena, "CREATE OR REPLACE VIEW locked AS SELECT key, version_id FROM vault_parquet "
                           "WHERE object_lock_mode IS NOT NULL")
    assert created["Status"]["State"] == "SUCCEEDED", created["Status"]
    counted = _run(athena, "SELECT count(*) FROM inventory.locked")
    locked = sum(1 for row in _rows(athena, _run(athena, "SELECT object_lock_mode FROM vault_parquet")
                                    ["QueryExecutionId"])[1:] if row[0] is not None)
    assert _rows(athena, counted["QueryExecutionId"])[1] == [str(locked)]
    assert _run(athena, "DROP VIEW locked")["Status"]["State"] == "SUCCEEDED"
    assert _run(athena, "DROP TABLE IF EXISTS `inventory`.`never_made`")["Status"]["State"] == "SUCCEEDED"
    copy = _run(athena, "CREATE EXTERNAL TABLE doomed (key string) STORED AS PARQUET "
                        f"LOCATION 's3://{DESTINATION}/nothing/'")
    assert copy["Status"]["State"] == "SUCCEEDED"
    assert _rows(athena, _run(athena, "SELECT count(*) FROM doomed")["QueryExecutionId"])[1] == ["0"]
    assert _run(athena, "DROP TABLE `inventory`.`doomed`")["Status"]["State"] == "SUCCEEDED"
    gone = _run(athena, "SELECT * FROM doomed")
    assert gone["Status"]["StateChangeReason"].startswith("TABLE_NOT_FOUND")
