"""The per-version comparison from S3 Inventory reports, in SQL, on DuckDB (one machine) or Athena (AWS).

Both engines run the same text (`inventory_sql`): DuckDB after sqlglot translates it, Athena as
written. Their inputs are the same too: the vault's and the recovery bucket's inventory reports
(checked by `inventory_reports`), and the manifest and completion report rows phase 07 has already
loaded and checked against the jobs' pins.

- DuckDB copies each inventory data file out of S3 (its MD5 checked) into a work folder and reads
  them with `read_parquet` (ORC through pyarrow); manifest and report rows are registered from
  their DataFrames. `duckdb_compare` runs the comparison in bounded memory (slice by slice of the
  key's hash when the inputs are large) and writes the detail rows as Parquet, read back here.
- Athena reads the inventory files in place, through tables over each report's `hive/` folder
  (SymlinkTextInputFormat, the `dt` partition projected, so no crawler and no MSCK REPAIR), as
  aws-samples' Replication Validation Tool does. Manifest and report rows are written as Parquet
  next to the job's report (`<report_prefix>/verification/<run id>/`) with a table over each. The
  queries run in the work group given, their results land in its output location, and the
  detail rows are read back from the result CSV (one GET, not thousands of GetQueryResults pages).

The result is a `verify.Comparison` with the same categories, checks, counts and verdict rule as
the HEAD method's, so evidence, retries and the summary do not know which method ran.
"""

from __future__ import annotations

import io
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from runbook_lib import duckdb_compare, inventory_reports, inventory_sql, verify
from runbook_lib.errors import ReportError
from runbook_lib.inventory_reports import InventoryReport
from runbook_lib.scope import JobScope

__all__ = ["ENGINES", "AthenaSettings", "compare_inventories"]

ENGINES = ("duckdb", "athena")
_CHECKS = (
    "in_vault", "in_recovery", "in_manifest", "in_report", "expected", "identical", verify.TASK_FAILED,
    verify.MISSING_IN_RECOVERY, verify.EXTRA_IN_RECOVERY, verify.CONTENT_DIFFERS, verify.LOCK_MODE_DIFFERS,
    verify.RETAIN_UNTIL_DIFFERS, verify.LEGAL_HOLD_DIFFERS, verify.UNKNOWN_UNREADABLE,
    verify.ELIGIBLE_NOT_IN_MANIFEST, verify.IN_MANIFEST_NOT_ELIGIBLE, verify.NOT_IN_REPORT,
    *verify.CONTENT_CHECKS,
)
_SHOWN = ("is_delete_marker", "size", "etag", "storage_class", "replication_status", "object_lock_mode",
          "object_lock_retain_until_date", "object_lock_legal_hold_status", "checksum_algorithm", "checksum")
_OUTCOMES = ("task_status", "http_status", "error_code", "result_message")
_COUNTS = (*[k for k in verify.COUNT_KEYS if k != "findings"], "duplicates")
# Inventory columns as Athena tables declare them (AWS's DDL for Parquet and ORC inventories).
_INVENTORY_TYPES = {
    "key": "string", "version_id": "string", "is_delete_marker": "boolean", "size": "bigint",
    "last_modified_date": "timestamp", "e_tag": "string", "storage_class": "string", "replication_status": "string",
    "object_lock_mode": "string", "object_lock_retain_until_date": "timestamp",
    "object_lock_legal_hold_status": "string", "checksum_algorithm": "string",
}
# Inventory columns a report may lack: the comparison reads them as NULL.
_OPTIONAL_COLUMNS = ("checksum_algorithm",)


@dataclass(frozen=True)
class AthenaSettings:
    """Where the Athena engine works: its client, the S3 client of the report bucket, and names."""

    athena: Any
    s3: Any
    workgroup: str
    output_location: str
    database: str
    staging_bucket: str
    staging_prefix: str
    table_prefix: str
    poll_seconds: float = 0.5


def compare_inventories(
    s3: Any,
    vault: InventoryReport,
    recovery: InventoryReport,
    *,
    scope: JobScope,
    manifest: pd.DataFrame,
    report: pd.DataFrame,
    findings: list[str],
    engine: str = "duckdb",
    athena: AthenaSettings | None = None,
    sample: pd.DataFrame | None = None,
) -> verify.Comparison:
    """Return the comparison of the two inventory reports, the manifest and the (latest per version) report rows.

    `sample` (key, version_id) is a sample drill's draw: then only those versions are expected.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    # Several jobs' manifests (a retry's, say) can list a version again: the SQL wants it once.
    manifest_rows = pd.DataFrame({"key": manifest["key"].astype("string"),
                                  "version_id": manifest["version_id"].astype("string")}).drop_duplicates()
    report_rows = pd.DataFrame({
        "key": report["key"].astype("string"), "version_id": report["version_id"].astype("string"),
        "task_status": report["task_status"].astype("string"),
        "http_status": pd.array(report["http_status"], dtype="Int32"),
        "error_code": report["error_code"].astype("string"),
        "result_message": report["result_message"].astype("string"),
    })
    drawn = sample if sample is not None else pd.DataFrame({"key": [], "version_id": []})
    sample_rows = pd.DataFrame({"key": drawn["key"].astype("string"),
                                "version_id": drawn["version_id"].astype("string")})
    inputs = Inputs(manifest_rows, report_rows, sample_rows, sample is not None)
    if engine == "athena":
        if athena is None:
            raise ValueError("the athena engine needs AthenaSettings")
        details, counts = _run_athena(athena, vault, recovery, scope, inputs)
    else:
        details, counts = _run_duckdb(s3, vault, recovery, scope, inputs)
    return _comparison(details, counts, findings, inputs.has_sample)


@dataclass(frozen=True)
class Inputs:
    """The rows the comparison reads besides the inventories: manifest, latest task per version, sample."""

    manifest: pd.DataFrame
    report: pd.DataFrame
    sample: pd.DataFrame
    has_sample: bool


# --------------------------------------------------------------------------- DuckDB


def _run_duckdb(
    s3: Any, vault: InventoryReport, recovery: InventoryReport, scope: JobScope, inputs: Inputs,
) -> tuple[pd.DataFrame, dict[str, int]]:
    workdir = Path(tempfile.mkdtemp(prefix="verify-inventory-"))
    try:
        con = duckdb_compare.connect(workdir / "spill")
        try:
            for name, source in (("vault_inventory", vault), ("recovery_inventory", recovery)):
                files = inventory_reports.download_files(s3, source, workdir / name)
                _inventory_view(con, name, source, files)
            con.register("manifest_rows", inputs.manifest)
            con.register("report_rows", inputs.report)
            con.register("sample_rows", inputs.sample)
            tables = {"vault_inventory": "vault_inventory", "recovery_inventory": "recovery_inventory",
                      "manifest": "manifest_rows", "report": "report_rows", "sample": "sample_rows"}
            counts, _ = duckdb_compare.compare_to_parquet(con, tables, scope, workdir / "details",
                                                          has_sample=inputs.has_sample)
        finally:
            con.close()
        details = pq.read_table(str(workdir / "details"))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return _as_table(details).to_pandas(types_mapper=_pandas_type), counts


def _inventory_view(con: Any, name: str, report: InventoryReport, files: list[Path]) -> None:
    """Create a view of the inventory columns the comparison reads, times as UTC timestamps."""
    columns = ", ".join(
        [f'CAST("{c}" AS TIMESTAMP) AS "{c}"' if _INVENTORY_TYPES[c] == "timestamp" else f'"{c}"'
         for c in inventory_reports.REQUIRED_COLUMNS]
        + [f'"{c}"' if c in report.columns else f'CAST(NULL AS VARCHAR) AS "{c}"' for c in _OPTIONAL_COLUMNS])
    if report.file_format == "Parquet":
        listed = ", ".join("'" + str(path).replace("'", "''") + "'" for path in files)
        source = f"read_parquet([{listed}], union_by_name=true)"
    else:
        import pyarrow.orc as orc

        con.register(f"{name}_orc", pa.concat_tables([orc.read_table(str(p)) for p in files],
                                                     promote_options="default"))
        source = f'"{name}_orc"'
    con.execute(f'CREATE VIEW "{name}" AS SELECT {columns} FROM {source}')


# --------------------------------------------------------------------------- Athena


def _athena_inventory_table(settings: AthenaSettings, table: str, report: InventoryReport) -> str:
    serde = ("org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe" if report.file_format == "Parquet"
             else "org.apache.hadoop.hive.ql.io.orc.OrcSerde")
    columns = ", ".join(f"`{name}` {kind}" for name, kind in _INVENTORY_TYPES.items())
    return (
        f"CREATE EXTERNAL TABLE `{settings.database}`.`{table}` ({columns}) PARTITIONED BY (dt string) "
        f"ROW FORMAT SERDE '{serde}' "
        "STORED AS INPUTFORMAT 'org.apache.hadoop.hive.ql.io.SymlinkTextInputFormat' "
        "OUTPUTFORMAT 'org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat' "
        f"LOCATION '{report.hive_location}' "
        "TBLPROPERTIES ('projection.enabled'='true', 'projection.dt.type'='date', "
        "'projection.dt.format'='yyyy-MM-dd-HH-mm', 'projection.dt.range'='2022-01-01-00-00,NOW', "
        "'projection.dt.interval'='1', 'projection.dt.interval.unit'='MINUTES')"
    )


def _athena_inventory_rows(database: str, table: str, report: InventoryReport) -> str:
    """Return the rows of one report's partition, NULL for an optional column the report lacks."""
    columns = ", ".join([f'"{c}"' for c in inventory_reports.REQUIRED_COLUMNS]
                        + [f'"{c}"' if c in report.columns else f'CAST(NULL AS varchar) AS "{c}"'
                           for c in _OPTIONAL_COLUMNS])
    return f'(SELECT {columns} FROM "{database}"."{table}" WHERE dt = \'{report.dt}\')'


def _stage(settings: AthenaSettings, name: str, frame: pd.DataFrame, columns: dict[str, str]) -> str:
    """Write rows as one Parquet object for Athena and return the DDL of a table over its folder."""
    folder = f"{settings.staging_prefix}/{name}"
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), sink)
    settings.s3.put_object(Bucket=settings.staging_bucket, Key=f"{folder}/rows.parquet", Body=sink.getvalue(),
                           ServerSideEncryption="AES256")
    declared = ", ".join(f"`{column}` {kind}" for column, kind in columns.items())
    return (f"CREATE EXTERNAL TABLE `{settings.database}`.`{settings.table_prefix}_{name}` ({declared}) "
            f"STORED AS PARQUET LOCATION 's3://{settings.staging_bucket}/{folder}/'")


def _query(settings: AthenaSettings, text: str) -> dict[str, Any]:
    """Run one statement to its end and return its QueryExecution; ReportError when it fails."""
    started = settings.athena.start_query_execution(
        QueryString=text, WorkGroup=settings.workgroup, QueryExecutionContext={"Database": settings.database},
        ResultConfiguration={"OutputLocation": settings.output_location})
    pause = settings.poll_seconds
    while True:
        execution = settings.athena.get_query_execution(QueryExecutionId=started["QueryExecutionId"])
        state = execution["QueryExecution"]["Status"]["State"]
        if state not in ("QUEUED", "RUNNING"):
            break
        time.sleep(pause)
        pause = min(pause * 1.5, 10.0)
    if state != "SUCCEEDED":
        reason = execution["QueryExecution"]["Status"].get("StateChangeReason", "no reason given")
        raise ReportError(f"the Athena query {started['QueryExecutionId']} ended {state}: {reason}")
    return dict(execution["QueryExecution"])


def _result_table(settings: AthenaSettings, execution: dict[str, Any], types: dict[str, pa.DataType]) -> pa.Table:
    """Read a query's result CSV from its output location, typed as the comparison's columns."""
    location = execution["ResultConfiguration"]["OutputLocation"]
    bucket, _, key = location[len("s3://"):].partition("/")
    body = settings.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    convert = pacsv.ConvertOptions(column_types=types, null_values=[""], quoted_strings_can_be_null=False,
                                   strings_can_be_null=True, true_values=["true"], false_values=["false"])
    return pacsv.read_csv(io.BytesIO(body), convert_options=convert)


def _run_athena(
    settings: AthenaSettings, vault: InventoryReport, recovery: InventoryReport, scope: JobScope, inputs: Inputs,
) -> tuple[pd.DataFrame, dict[str, int]]:
    for source in (vault, recovery):
        inventory_reports.verify_files(settings.s3, source)
    prefix = settings.table_prefix
    _query(settings, f"CREATE DATABASE IF NOT EXISTS `{settings.database}`")
    statements = [
        _athena_inventory_table(settings, f"{prefix}_vault_inventory", vault),
        _athena_inventory_table(settings, f"{prefix}_recovery_inventory", recovery),
        _stage(settings, "manifest", inputs.manifest, {"key": "string", "version_id": "string"}),
        _stage(settings, "report", inputs.report, {"key": "string", "version_id": "string", "task_status": "string",
                                                   "http_status": "int", "error_code": "string",
                                                   "result_message": "string"}),
        _stage(settings, "sample", inputs.sample, {"key": "string", "version_id": "string"}),
    ]
    for name in ("vault_inventory", "recovery_inventory", "manifest", "report", "sample"):
        _query(settings, f"DROP TABLE IF EXISTS `{settings.database}`.`{prefix}_{name}`")
    for statement in statements:
        _query(settings, statement)
    database = settings.database
    tables = {
        "vault_inventory": _athena_inventory_rows(database, f"{prefix}_vault_inventory", vault),
        "recovery_inventory": _athena_inventory_rows(database, f"{prefix}_recovery_inventory", recovery),
        "manifest": f'"{database}"."{prefix}_manifest"',
        "report": f'"{database}"."{prefix}_report"',
        "sample": f'"{database}"."{prefix}_sample"',
    }
    compare = inventory_sql.compare_sql(scope, tables, inputs.has_sample)
    details = _result_table(settings, _query(settings, compare), _DETAIL_TYPES)
    counted = _result_table(settings, _query(settings, inventory_sql.count_sql(compare)),
                            dict.fromkeys(_COUNTS, pa.int64()))
    counts = {name: int(counted.column(name)[0].as_py()) for name in _COUNTS}
    return _as_table(details).to_pandas(types_mapper=_pandas_type), counts


# --------------------------------------------------------------------------- the comparison

_DETAIL_TYPES: dict[str, pa.DataType] = {
    "key": pa.string(), "version_id": pa.string(), "category": pa.string(), "scope": pa.string(),
    **dict.fromkeys((*_CHECKS, "in_sample", verify.RECOVERED_IDENTICAL, verify.NOT_SAMPLED, verify.AFTER_AS_OF,
                     verify.ARCHIVED_NOT_RECOVERED, verify.NOT_EXPECTED),
                    pa.bool_()),
    **{f"{side}_{name}": kind for side in ("vault", "recovery") for name, kind in (
        ("is_delete_marker", pa.bool_()), ("size", pa.int64()), ("etag", pa.string()),
        ("storage_class", pa.string()), ("replication_status", pa.string()), ("object_lock_mode", pa.string()),
        ("object_lock_retain_until_date", pa.timestamp("ms")), ("object_lock_legal_hold_status", pa.string()),
        ("checksum_algorithm", pa.string()), ("checksum", pa.string()))},
    "task_status": pa.string(), "http_status": pa.int32(), "error_code": pa.string(), "result_message": pa.string(),
}


def _as_table(table: pa.Table) -> pa.Table:
    """Return the detail rows with every column in the type the comparison's frame uses."""
    columns = []
    for name in table.column_names:
        column = table.column(name)
        wanted = _DETAIL_TYPES.get(name)
        if wanted is not None and pa.types.is_timestamp(wanted):
            if column.type.tz is None:
                column = column.cast(pa.timestamp(column.type.unit)).cast(pa.timestamp("ms", tz="UTC"))
            else:
                column = column.cast(pa.timestamp("ms", tz="UTC"))
        elif wanted is not None and column.type != wanted:
            column = column.cast(wanted)
        columns.append(column)
    return pa.table(columns, names=table.column_names)


def _pandas_type(kind: pa.DataType) -> Any:
    if kind == pa.string() or kind == pa.large_string():
        return pd.StringDtype()
    if kind == pa.int64():
        return pd.Int64Dtype()
    if kind == pa.int32():
        return pd.Int32Dtype()
    return None


def _comparison(details: pd.DataFrame, counts: dict[str, int], findings: list[str],
                has_sample: bool = False) -> verify.Comparison:
    """Return the verify.Comparison the SQL computed: details in verify's columns, counts, verdict."""
    if counts.pop("duplicates"):
        raise ReportError("an inventory report (or the completion report) lists a key and version id twice, so "
                          "versions cannot be matched one to one: use another inventory report")
    frame: dict[str, Any] = {
        "key": details["key"].array,
        "version_id": details["version_id"].array,
        "category": pd.Categorical(details["category"].astype(str), categories=list(verify.CATEGORIES)),
        "scope": pd.Categorical(details["scope"]),
    }
    for name in (*_CHECKS, "in_sample") if has_sample else _CHECKS:
        frame[name] = details[name].to_numpy(dtype=bool, na_value=False)
    for side in ("vault", "recovery"):
        for name in _SHOWN:
            column = details[f"{side}_{name}"]
            if name == "object_lock_retain_until_date":
                column = column.astype("datetime64[s, UTC]")
            frame[f"{side}_{name}"] = column.array
    for name in _OUTCOMES:
        frame[name] = details[name].array
    table = pd.DataFrame(frame, copy=False)
    ordered = table.sort_values(["key", "version_id"], kind="stable").reset_index(drop=True)
    counts["findings"] = len(findings)
    counted = {name: int(counts[name]) for name in verify.COUNT_KEYS}
    content_checks = {name: int(ordered[name].sum()) for name in verify.CONTENT_CHECKS}
    return verify.Comparison(verify.verdict_of(counted), counted, ordered, tuple(findings), content_checks)

