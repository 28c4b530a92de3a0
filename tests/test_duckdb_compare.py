"""The DuckDB comparison by slices: the rows and counts of one pass, the damage found, duplicates caught."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from runbook_lib import duckdb_compare, inventory_compare, inventory_sql
from runbook_lib.errors import ReportError
from runbook_lib.scope import JobScope

VERSIONS = 1200
DROPPED, SHIFTED = range(0, VERSIONS, 97), range(5, VERSIONS, 89)


def _inventory(rows: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=[
        "key", "version_id", "is_delete_marker", "size", "last_modified_date", "e_tag", "storage_class",
        "replication_status", "object_lock_mode", "object_lock_retain_until_date", "object_lock_legal_hold_status",
        "checksum_algorithm"]).astype({"size": "Int64", "checksum_algorithm": "string"})


def _drill_tables(con: Any, twice: str | None = None) -> dict[str, str]:
    """Register a vault of replicas (every 10th not a replica), its recovery with damage, manifest and report."""
    start = datetime(2025, 1, 1, tzinfo=timezone.utc).replace(tzinfo=None)
    vault = [{"key": f"data/{i % 400:04d}.bin", "version_id": f"v{i:06d}", "is_delete_marker": False,
              "size": 100 + i, "last_modified_date": start + timedelta(minutes=i), "e_tag": f"etag{i}",
              "storage_class": "STANDARD", "replication_status": "COMPLETED" if i % 10 == 3 else "REPLICA",
              "object_lock_mode": "COMPLIANCE", "object_lock_retain_until_date": start + timedelta(days=400 + i),
              "object_lock_legal_hold_status": "OFF", "checksum_algorithm": None} for i in range(VERSIONS)]
    replicas = [dict(row) for row in vault if row["replication_status"] == "REPLICA"]
    recovered = []
    for row in replicas:
        number = int(row["version_id"][1:])
        if number in DROPPED:
            continue
        if number in SHIFTED:
            row["object_lock_retain_until_date"] += timedelta(days=1)
        recovered.append(row)
    recovered.append({**vault[1], "version_id": "extra-version"})
    if twice == "vault":
        vault.append(dict(vault[7]))
    if twice == "recovery":
        recovered.append(dict(recovered[7]))
    listed = pd.DataFrame({"key": [r["key"] for r in replicas], "version_id": [r["version_id"] for r in replicas]})
    report = listed.assign(task_status="succeeded", http_status=200, error_code=None, result_message="ok")
    if twice == "report":
        report = pd.concat([report, report.iloc[[7]]], ignore_index=True)
    frames = {"vault_inventory": _inventory(vault), "recovery_inventory": _inventory(recovered), "manifest": listed,
              "report": report, "sample": pd.DataFrame({"key": pd.Series([], dtype="string"),
                                                        "version_id": pd.Series([], dtype="string")})}
    for name, frame in frames.items():
        con.register(f"{name}_rows", frame)
    return {name: f"{name}_rows" for name in frames}


def _compare(tmp_path: Path, name: str, rows_per_slice: int, twice: str | None = None) -> tuple[Any, ...]:
    con = duckdb_compare.connect(tmp_path / f"{name}-spill")
    try:
        tables = _drill_tables(con, twice)
        counts, slices = duckdb_compare.compare_to_parquet(
            con, tables, JobScope(replication_statuses=("REPLICA",)), tmp_path / name, rows_per_slice=rows_per_slice)
    finally:
        con.close()
    details = pq.read_table(str(tmp_path / name)).to_pandas()
    return counts, slices, details.sort_values(["key", "version_id"]).reset_index(drop=True)


def test_slices_give_the_rows_and_counts_of_one_pass_and_find_the_damage(tmp_path: Path) -> None:
    whole_counts, whole_slices, whole = _compare(tmp_path, "whole", rows_per_slice=10**9)
    sliced_counts, sliced_slices, sliced = _compare(tmp_path, "sliced", rows_per_slice=500)
    assert (whole_slices, sliced_slices) == (1, 9)
    assert len(list((tmp_path / "sliced").glob("*.parquet"))) == 9
    pd.testing.assert_frame_equal(sliced, whole)
    assert sliced_counts == whole_counts
    replicas = VERSIONS - len(range(3, VERSIONS, 10))
    dropped = sum(1 for i in DROPPED if i % 10 != 3)
    shifted = sum(1 for i in SHIFTED if i % 10 != 3 and i not in DROPPED)
    assert whole_counts["source_versions"] == VERSIONS
    assert whole_counts["expected"] == replicas
    assert whole_counts["missing"] == dropped
    assert whole_counts["retention_mismatches"] == shifted
    assert whole_counts["extra"] == 1
    assert whole_counts["recovered"] == replicas - dropped - shifted
    assert whole_counts["duplicates"] == 0


def test_the_detail_files_hold_what_duckdb_computes_and_what_its_own_writer_wrote(tmp_path: Path) -> None:
    scope = JobScope(replication_statuses=("REPLICA",))
    con = duckdb_compare.connect(tmp_path / "spill")
    try:
        tables = _drill_tables(con)
        duckdb_compare.compare_to_parquet(con, tables, scope, tmp_path / "details", rows_per_slice=10**9)
        query = inventory_sql.to_duckdb(inventory_sql.compare_sql(scope, tables))
        computed = con.sql(query).to_arrow_table()
        con.execute(f"COPY ({query}) TO '{tmp_path / 'duckdb.parquet'}' (FORMAT parquet)")
    finally:
        con.close()
    order = [("key", "ascending"), ("version_id", "ascending")]
    written = pq.read_table(str(tmp_path / "details")).sort_by(order)
    by_duckdb = pq.read_table(str(tmp_path / "duckdb.parquet")).sort_by(order)
    assert written.num_rows == VERSIONS + 1  # every vault version and the extra one
    for other in (computed.sort_by(order), by_duckdb):  # DuckDB's writer marks some columns NOT NULL: no matter
        assert [(f.name, f.type) for f in written.schema] == [(f.name, f.type) for f in other.schema]
        assert all(written.column(name).equals(other.column(name)) for name in written.column_names)
    assert written.column("vault_checksum").null_count == written.num_rows  # NULLs stay NULL
    assert pa.types.is_timestamp(written.schema.field("vault_object_lock_retain_until_date").type)


@pytest.mark.parametrize("twice", ["vault", "recovery", "report"])
@pytest.mark.parametrize("rows_per_slice", [10**9, 500], ids=["one pass", "sliced"])
def test_a_version_listed_twice_is_counted_and_stops_the_comparison(
    tmp_path: Path, rows_per_slice: int, twice: str,
) -> None:
    counts, _, _ = _compare(tmp_path, "twice", rows_per_slice, twice=twice)
    assert counts["duplicates"] == 1
    with pytest.raises(ReportError, match="lists a key and version id twice"):
        inventory_compare._comparison(pd.DataFrame(), dict(counts), [])


def test_a_slice_holds_what_the_memory_limit_holds() -> None:
    assert duckdb_compare.rows_per_slice(duckdb_compare.MEMORY_LIMIT) == duckdb_compare.ROWS_PER_SLICE
    assert duckdb_compare.rows_per_slice("6GB") == 4 * duckdb_compare.ROWS_PER_SLICE
    with pytest.raises(ValueError, match="memory_limit must be a number and a unit"):
        duckdb_compare.rows_per_slice("lots")
