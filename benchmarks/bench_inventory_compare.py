"""Inventory verification at scale: the SQL comparison on DuckDB against the pandas comparison, same data.

Run from the repository root: `python -m benchmarks.bench_inventory_compare [--versions N] [--engines ...]`.
Synthetic Parquet inventories of N vault versions (95 % replicas under Object Lock, some markers,
archived and non-replica versions) and of the recovered versions, a manifest and a completion
report (as Parquet too) are written to a temporary folder first (or to `--data`, kept and reused).
Then each engine runs in a fresh child process, so its peak resident memory (ru_maxrss) and CPU
time are its own:

- duckdb: `duckdb_compare.compare_to_parquet`, as phase 07's DuckDB engine runs it (same memory
  limit, same rows per slice, the same inventory columns and the manifest's key and version id
  only, as phase 07 registers them): DuckDB reads the Parquet files itself, slices the inputs by a hash
  of the key when they are large, writes every version's detail row to Parquet and sums the counts;
- pandas: the files read into the snapshot frames the HEAD method builds, then `verify.compare`
  (the detail frame stays in memory, as phase 07 holds it);
- duckdb-joins (only when named): DuckDB's comparison, sliced alike, counted without writing any
  detail row: how much of DuckDB's time the joins alone take.

Both must give the same counts. Goals at 10^7 versions: DuckDB at most 0.2x pandas' time, and at
most 2 GB peak memory; at 10^8, DuckDB alone (`--engines duckdb`, pandas cannot hold it) under 15
minutes and 8 GB. Wall and CPU times are both printed: on a shared machine the CPU ratio is the
steadier figure.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from runbook_lib import duckdb_compare, inventory_reports

__all__ = ["main", "write_inventories"]

GOAL_RATIO = 0.2
ENGINES = ("duckdb", "pandas", "duckdb-joins")
GOAL_DUCKDB_BYTES = 2e9


_VAULT_SQL = """
SELECT
    'vault' AS bucket,
    'data/' || lpad(CAST(i % 1000 AS VARCHAR), 3, '0') || '/object-' || lpad(CAST(i // 2 AS VARCHAR), 10, '0')
        || '.bin' AS key,
    md5(CAST(i AS VARCHAR) || '-version') AS version_id,
    i % 2 = 1 AS is_latest,
    kind = 2 AS is_delete_marker,
    CASE WHEN kind = 2 THEN NULL ELSE 1 + CAST(hash(i, 'size') % 1000000000 AS BIGINT) END AS size,
    CAST(make_timestamp(1767225600000000 + i * 1000000) AS TIMESTAMPTZ) AS last_modified_date,
    CASE WHEN kind = 2 THEN NULL ELSE md5(CAST(i AS VARCHAR) || '-etag') END AS e_tag,
    CASE WHEN kind = 2 THEN NULL WHEN kind = 3 THEN 'GLACIER' ELSE 'STANDARD' END AS storage_class,
    CASE WHEN kind = 2 THEN NULL WHEN kind = 1 THEN 'COMPLETED' ELSE 'REPLICA' END AS replication_status,
    CASE WHEN kind = 2 THEN NULL WHEN i % 3 = 0 THEN 'GOVERNANCE' ELSE 'COMPLIANCE' END AS object_lock_mode,
    CASE WHEN kind = 2 THEN NULL
         ELSE CAST(make_timestamp(1798761600000000 + CAST(hash(i, 'retain') % 10000000000 AS BIGINT) * 1000)
              AS TIMESTAMPTZ) END
        AS object_lock_retain_until_date,
    CASE WHEN kind = 2 THEN NULL WHEN i % 7 = 0 THEN 'On' ELSE 'Off' END AS object_lock_legal_hold_status
FROM (
    SELECT range AS i,
           CASE WHEN hash(range, 'kind') % 100 < 95 THEN 0 WHEN hash(range, 'kind') % 100 < 97 THEN 1
                WHEN hash(range, 'kind') % 100 < 99 THEN 2 ELSE 3 END AS kind
    FROM range({versions})
)
"""


def write_inventories(folder: Path, versions: int, threads: int = 2) -> dict[str, Path]:
    """Write synthetic vault and recovery inventories, manifest and report as Parquet; return their paths.

    95 % of the vault's versions are replicas under Object Lock (recovered, listed, succeeded), the
    rest non-replicas, delete markers and archived versions; values are derived from the row number
    by hashing, so the same N always gives the same files. DuckDB writes them, in bounded memory.
    """
    import duckdb

    paths = {name: folder / f"{name}.parquet" for name in ("vault", "recovery", "manifest", "report")}
    con = duckdb.connect(config={"threads": threads, "memory_limit": "2GB", "temp_directory": str(folder / "gen")})
    try:
        con.execute("SET TimeZone='UTC'")
        con.execute(f"COPY ({_VAULT_SQL.format(versions=int(versions))}) TO '{paths['vault']}' (FORMAT parquet)")
        recovered = (f"FROM read_parquet('{paths['vault']}') WHERE replication_status = 'REPLICA' "
                     "AND storage_class = 'STANDARD'")
        con.execute(f"COPY (SELECT * {recovered}) TO '{paths['recovery']}' (FORMAT parquet)")
        con.execute(f"COPY (SELECT bucket, key, version_id {recovered}) TO '{paths['manifest']}' (FORMAT parquet)")
        con.execute(f"COPY (SELECT key, version_id, 'succeeded' AS task_status, 200::INTEGER AS http_status, "
                    f"NULL::VARCHAR AS error_code, 'success' AS result_message {recovered}) "
                    f"TO '{paths['report']}' (FORMAT parquet)")
    finally:
        con.close()
    return paths


def _scope() -> Any:
    from runbook_lib.scope import JobScope

    return JobScope(replication_statuses=("REPLICA",))


def _count_only(con: Any, tables: dict[str, str], work: Path, rows_per_slice: int) -> tuple[dict[str, int], int]:
    """Return the counts of the same comparison, sliced the same way, without writing any detail row."""
    from runbook_lib import inventory_sql

    rows = sum(duckdb_compare._rows(con, tables[name]) for name in inventory_sql.TABLES)
    slices = max(1, -(-rows // max(1, rows_per_slice)))
    bound = [(tables, [])] if slices == 1 else duckdb_compare._slices(con, tables, slices, work)
    totals: dict[str, int] = {}
    for exprs, _ in bound:
        query = inventory_sql.to_duckdb(inventory_sql.count_sql(
            f"({inventory_sql.compare_sql(_scope(), exprs)})"))
        counted = con.execute(query)
        names = [column[0] for column in counted.description]
        for name, value in zip(names, counted.fetchall()[0], strict=True):
            totals[name] = totals.get(name, 0) + int(value or 0)
    return totals, slices


def _run_duckdb(paths: dict[str, Path], workdir: Path, memory_limit: str, rows_per_slice: int,
                joins_only: bool = False) -> dict[str, Any]:
    started = time.perf_counter()
    con = duckdb_compare.connect(workdir / "spill", memory_limit)
    # The columns phase 07's views read (inventory_compare._inventory_view), times as TIMESTAMP.
    columns = ", ".join([f"CAST({c} AS TIMESTAMP) AS {c}" if c.endswith("_date") else c
                         for c in inventory_reports.REQUIRED_COLUMNS] + ["CAST(NULL AS VARCHAR) AS checksum_algorithm"])
    for name in ("vault", "recovery"):
        con.execute(f"CREATE VIEW {name}_inventory AS SELECT {columns} FROM read_parquet('{paths[name]}')")
    tables = {"vault_inventory": "vault_inventory", "recovery_inventory": "recovery_inventory",
              "manifest": f"(SELECT key, version_id FROM read_parquet('{paths['manifest']}'))",
              "report": f"read_parquet('{paths['report']}')",
              "sample": "(SELECT CAST(NULL AS VARCHAR) AS key, CAST(NULL AS VARCHAR) AS version_id WHERE false)"}
    if joins_only:
        counts, slices = _count_only(con, tables, workdir / "slices", rows_per_slice)
    else:
        counts, slices = duckdb_compare.compare_to_parquet(con, tables, _scope(), workdir / "details",
                                                           rows_per_slice=rows_per_slice)
    con.close()
    counts.pop("duplicates")
    return {"seconds": time.perf_counter() - started, "counts": counts, "slices": slices}


def _snapshot(table: pa.Table) -> Any:
    """Return an inventory table as the snapshot frame the HEAD method builds."""
    import pandas as pd

    rows = table.to_pandas(types_mapper=lambda kind: pd.StringDtype("pyarrow") if kind == pa.string() else None)
    markers = rows["is_delete_marker"].to_numpy(dtype=bool)
    return pd.DataFrame({
        "key": rows["key"], "version_id": rows["version_id"], "is_delete_marker": markers,
        "last_modified": rows["last_modified_date"],
        "size": pd.array(np.where(markers, 0, rows["size"].fillna(0)), dtype="Int64"),
        "etag": rows["e_tag"], "storage_class": rows["storage_class"],
        "replication_status": rows["replication_status"], "object_lock_mode": rows["object_lock_mode"],
        "object_lock_retain_until_date": rows["object_lock_retain_until_date"],
        "object_lock_legal_hold_status": rows["object_lock_legal_hold_status"],
    })


def _run_pandas(paths: dict[str, Path]) -> dict[str, Any]:
    import pandas as pd

    from runbook_lib.verify import compare

    started = time.perf_counter()
    vault = _snapshot(pq.read_table(paths["vault"]))
    recovery = _snapshot(pq.read_table(paths["recovery"]))
    text = lambda kind: pd.StringDtype("pyarrow") if kind == pa.string() else None  # noqa: E731
    manifest = pq.read_table(paths["manifest"]).to_pandas(types_mapper=text)
    report = pq.read_table(paths["report"]).to_pandas(types_mapper=text)
    comparison = compare(vault, recovery, scope=_scope(), manifest=manifest, report=report)
    counts = {k: v for k, v in comparison.counts.items() if k != "findings"}
    return {"seconds": time.perf_counter() - started, "counts": counts}


def _child(engine: str, folder: Path, memory_limit: str, rows_per_slice: int) -> int:
    joins_only = engine == "duckdb-joins"
    paths = {name: folder / f"{name}.parquet" for name in ("vault", "recovery", "manifest", "report")}
    work = Path(tempfile.mkdtemp(prefix=f"bench-{engine}-", dir=folder))
    try:
        result = (_run_duckdb(paths, work, memory_limit, rows_per_slice, joins_only) if engine.startswith("duckdb")
                  else _run_pandas(paths))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    used = resource.getrusage(resource.RUSAGE_SELF)
    result["peak_bytes"] = used.ru_maxrss * 1024
    result["cpu_seconds"] = used.ru_utime + used.ru_stime
    print(json.dumps(result))
    return 0


def _measure(engine: str, folder: Path, memory_limit: str, rows_per_slice: int) -> dict[str, Any] | None:
    done = subprocess.run([sys.executable, "-m", "benchmarks.bench_inventory_compare", "--child", engine,
                           "--folder", str(folder), "--memory-limit", memory_limit,
                           "--rows-per-slice", str(rows_per_slice)], capture_output=True, text=True)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        print(f"{engine}: did not finish (exit {done.returncode}): {' | '.join(tail)}")
        return None
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def _report(results: dict[str, dict[str, Any] | None]) -> int:
    for engine, result in results.items():
        if result is not None:
            sliced = f", {result['slices']} slice(s)" if "slices" in result else ""
            print(f"{engine:>12}: {result['seconds']:8.1f} s wall, {result['cpu_seconds']:8.1f} s CPU, "
                  f"peak {result['peak_bytes'] / 1e9:5.2f} GB{sliced}")
    duck, pandas = results.get("duckdb"), results.get("pandas")
    if duck is not None and pandas is not None:
        if duck["counts"] != pandas["counts"]:
            print(f"counts differ: duckdb {duck['counts']} pandas {pandas['counts']}")
            return 1
        ratio = duck["seconds"] / pandas["seconds"]
        print(f"same counts ({duck['counts']['expected']:,} expected, {duck['counts']['recovered']:,} recovered); "
              f"duckdb/pandas wall time {ratio:.2f}x, CPU time {duck['cpu_seconds'] / pandas['cpu_seconds']:.2f}x "
              f"(goal <= {GOAL_RATIO}x at 10^7)")
    joins = results.get("duckdb-joins")
    if joins is not None and pandas is not None:
        if joins["counts"] != pandas["counts"]:
            print(f"counts differ: duckdb-joins {joins['counts']} pandas {pandas['counts']}")
            return 1
        print(f"the joins alone (no detail row written): {joins['seconds'] / pandas['seconds']:.2f}x pandas' "
              f"wall time, {joins['cpu_seconds'] / pandas['cpu_seconds']:.2f}x its CPU time")
    if duck is not None:
        met = duck["peak_bytes"] <= GOAL_DUCKDB_BYTES
        print(f"duckdb peak {duck['peak_bytes'] / 1e9:.2f} GB ({'within' if met else 'over'} the 2 GB goal at 10^7; "
              "8 GB and 15 minutes at 10^8)")
    return 0 if duck is not None or joins is not None else 1


def main(argv: list[str] | None = None) -> int:
    """Write the inventories, run each engine in its own process, print times, memory and their ratio."""
    parser = argparse.ArgumentParser(prog="bench_inventory_compare")
    parser.add_argument("--versions", type=int, default=1_000_000)
    parser.add_argument("--engines", nargs="+", default=["duckdb", "pandas"], choices=list(ENGINES),
                        help="duckdb-joins: the same comparison counted without writing any detail row (how much "
                             "of DuckDB's time the joins take)")
    parser.add_argument("--memory-limit", default=duckdb_compare.MEMORY_LIMIT,
                        help=f"DuckDB's memory limit (default {duckdb_compare.MEMORY_LIMIT}, as verification uses)")
    parser.add_argument("--rows-per-slice", type=int,
                        help="input rows per slice (default: as many as the memory limit holds, "
                             f"{duckdb_compare.ROWS_PER_SLICE:,} at {duckdb_compare.MEMORY_LIMIT}, as phase 07 uses)")
    parser.add_argument("--data", type=Path,
                        help="keep the generated inventories in this folder and reuse them when it holds them")
    parser.add_argument("--child", choices=list(ENGINES), help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv if argv is not None else sys.argv[1:])
    if args.rows_per_slice is None:
        args.rows_per_slice = duckdb_compare.rows_per_slice(args.memory_limit)
    if args.child:
        return _child(args.child, args.folder, args.memory_limit, args.rows_per_slice)
    with tempfile.TemporaryDirectory(prefix="bench-inventory-") as name:
        folder = args.data or Path(name)
        folder.mkdir(parents=True, exist_ok=True)
        marker = folder / "versions.txt"
        started = time.perf_counter()
        if not (marker.exists() and marker.read_text().strip() == str(args.versions)):
            write_inventories(folder, args.versions)
            marker.write_text(f"{args.versions}\n")
            print(f"{args.versions:,} vault versions: Parquet written in {time.perf_counter() - started:,.1f} s")
        size = sum(p.stat().st_size for p in folder.glob("*.parquet"))
        print(f"{args.versions:,} vault versions in {size / 1e6:,.0f} MB of Parquet")
        results = {engine: _measure(engine, folder, args.memory_limit, args.rows_per_slice) for engine in args.engines}
    return _report(results)


if __name__ == "__main__":
    sys.exit(main())
