"""Inventory verification at scale: the SQL comparison on DuckDB against the pandas comparison, same data.

Run from the repository root: `python -m benchmarks.bench_inventory_compare [--versions N] [--engines ...]`.
Synthetic Parquet inventories of N vault versions (95 % replicas under Object Lock, some markers,
archived and non-replica versions) and of the recovered versions, a manifest and a completion
report (as Parquet too) are written to a temporary folder first. Then each engine runs in a fresh
child process, so its peak resident memory (ru_maxrss) is its own:

- duckdb: `inventory_sql`'s count and detail queries over the Parquet files (DuckDB reads them
  itself, spilling to disk past its memory limit); the detail rows are written to a Parquet file,
  as evidence, not held in memory;
- pandas: the files read into the snapshot frames the HEAD method builds, then `verify.compare`
  (the detail frame stays in memory, as phase 07 holds it).

Both must give the same counts. Goals at 10^7 versions: DuckDB at most 0.2x pandas' time, and at
most 2 GB peak memory. `--engines duckdb` runs DuckDB alone (for 10^8, where pandas cannot run).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["main", "write_inventories"]

GOAL_RATIO = 0.2
GOAL_DUCKDB_BYTES = 2e9
DUCKDB_MEMORY_LIMIT = "1500MB"
_CHUNK = 2_000_000


def _chunk(start: int, stop: int, seed: int) -> dict[str, pa.Table]:
    """Return rows [start, stop) of the vault inventory, and of the recovery inventory, manifest, report."""
    rng = np.random.default_rng(seed + start)
    n = stop - start
    index = np.arange(start, stop)
    kind = rng.choice(4, size=n, p=[0.95, 0.02, 0.02, 0.01])  # replica, not replica, delete marker, archived
    marker = kind == 2
    keys = pa.array([f"data/{i % 1000:03d}/object-{i // 2:09d}.bin" for i in index.tolist()])
    versions = pa.array([f"{v:032x}" for v in rng.integers(0, 2**63, size=n).tolist()])
    etags = pa.array([f"{e:032x}" for e in rng.integers(0, 2**63, size=n).tolist()])
    sizes = np.where(marker, 0, rng.integers(1, 10**9, n))
    modified = np.datetime64("2026-01-01T00:00:00", "ms") + (index * 1000).astype("timedelta64[ms]")
    retain = np.datetime64("2027-01-01T00:00:00", "ms") + rng.integers(0, 10**10, n).astype("timedelta64[ms]")
    mode = np.where(index % 3 == 0, "GOVERNANCE", "COMPLIANCE")
    hold = np.where(index % 7 == 0, "On", "Off")
    status = np.where(kind == 1, "COMPLETED", "REPLICA")
    storage = np.where(kind == 3, "GLACIER", "STANDARD")
    vault = pa.table({
        "bucket": pa.array(["vault"] * n), "key": keys, "version_id": versions,
        "is_latest": pa.array(index % 2 == 1), "is_delete_marker": pa.array(marker),
        "size": pa.array(np.where(marker, None, sizes).tolist(), pa.int64()),
        "last_modified_date": pa.array(modified, pa.timestamp("ms", tz="UTC")),
        "e_tag": pa.array(np.where(marker, None, np.asarray(etags.to_pylist(), dtype=object)).tolist(), pa.string()),
        "storage_class": pa.array(np.where(marker, None, storage).tolist(), pa.string()),
        "replication_status": pa.array(np.where(marker, None, status).tolist(), pa.string()),
        "object_lock_mode": pa.array(np.where(marker, None, mode).tolist(), pa.string()),
        "object_lock_retain_until_date": pa.array(np.where(marker, None, retain).tolist(),
                                                  pa.timestamp("ms", tz="UTC")),
        "object_lock_legal_hold_status": pa.array(np.where(marker, None, hold).tolist(), pa.string()),
    })
    expected = pa.array(kind == 0)
    recovered = vault.filter(expected)
    manifest = recovered.select(["bucket", "key", "version_id"])
    report = pa.table({
        "key": recovered["key"], "version_id": recovered["version_id"],
        "task_status": pa.array(["succeeded"] * recovered.num_rows),
        "http_status": pa.array([200] * recovered.num_rows, pa.int32()),
        "error_code": pa.nulls(recovered.num_rows, pa.string()),
        "result_message": pa.array(["success"] * recovered.num_rows),
    })
    return {"vault": vault, "recovery": recovered, "manifest": manifest, "report": report}


def write_inventories(folder: Path, versions: int, seed: int = 1) -> dict[str, Path]:
    """Write the synthetic vault and recovery inventories, manifest and report as Parquet; return their paths."""
    paths = {name: folder / f"{name}.parquet" for name in ("vault", "recovery", "manifest", "report")}
    writers: dict[str, pq.ParquetWriter] = {}
    try:
        for start in range(0, versions, _CHUNK):
            for name, table in _chunk(start, min(versions, start + _CHUNK), seed).items():
                if name not in writers:
                    writers[name] = pq.ParquetWriter(paths[name], table.schema, compression="snappy")
                writers[name].write_table(table)
    finally:
        for writer in writers.values():
            writer.close()
    return paths


def _scope() -> Any:
    from runbook_lib.scope import JobScope

    return JobScope(replication_statuses=("REPLICA",))


def _run_duckdb(paths: dict[str, Path], workdir: Path) -> dict[str, Any]:
    import duckdb

    from runbook_lib import inventory_sql

    started = time.perf_counter()
    con = duckdb.connect(config={"threads": 2, "memory_limit": DUCKDB_MEMORY_LIMIT,
                                 "temp_directory": str(workdir / "spill"), "preserve_insertion_order": False})
    con.execute("SET TimeZone='UTC'")
    for name in ("vault", "recovery"):
        con.execute(f"CREATE VIEW {name}_inventory AS SELECT * REPLACE (CAST(last_modified_date AS TIMESTAMP) "
                    "AS last_modified_date, CAST(object_lock_retain_until_date AS TIMESTAMP) AS "
                    f"object_lock_retain_until_date) FROM read_parquet('{paths[name]}')")
    tables = {"vault_inventory": "vault_inventory", "recovery_inventory": "recovery_inventory",
              "manifest": f"read_parquet('{paths['manifest']}')", "report": f"read_parquet('{paths['report']}')"}
    scope = _scope()
    details = workdir / "all_versions.parquet"
    con.execute("CREATE TEMP TABLE compared AS " + inventory_sql.to_duckdb(inventory_sql.compare_sql(scope, tables)))
    con.execute(f"COPY compared TO '{details}' (FORMAT parquet)")
    row = con.execute(inventory_sql.to_duckdb(inventory_sql.count_sql(scope, tables, "compared"))).fetchone()
    names = [d[0] for d in con.description]
    con.close()
    assert row is not None
    counts = {name: int(value) for name, value in zip(names, row, strict=True) if not name.endswith("_duplicates")}
    return {"seconds": time.perf_counter() - started, "counts": counts}


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


def _child(engine: str, folder: Path) -> int:
    paths = {name: folder / f"{name}.parquet" for name in ("vault", "recovery", "manifest", "report")}
    work = Path(tempfile.mkdtemp(prefix=f"bench-{engine}-", dir=folder))
    result = _run_duckdb(paths, work) if engine == "duckdb" else _run_pandas(paths)
    result["peak_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps(result))
    return 0


def _measure(engine: str, folder: Path) -> dict[str, Any] | None:
    done = subprocess.run([sys.executable, "-m", "benchmarks.bench_inventory_compare", "--child", engine,
                           "--folder", str(folder)], capture_output=True, text=True)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        print(f"{engine}: did not finish (exit {done.returncode}): {' | '.join(tail)}")
        return None
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> int:
    """Write the inventories, run each engine in its own process, print times, memory and their ratio."""
    parser = argparse.ArgumentParser(prog="bench_inventory_compare")
    parser.add_argument("--versions", type=int, default=1_000_000)
    parser.add_argument("--engines", nargs="+", default=["duckdb", "pandas"], choices=["duckdb", "pandas"])
    parser.add_argument("--child", choices=["duckdb", "pandas"], help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv if argv is not None else sys.argv[1:])
    if args.child:
        return _child(args.child, args.folder)
    with tempfile.TemporaryDirectory(prefix="bench-inventory-") as name:
        folder = Path(name)
        started = time.perf_counter()
        write_inventories(folder, args.versions)
        size = sum(p.stat().st_size for p in folder.glob("*.parquet"))
        print(f"{args.versions:,} vault versions: Parquet written in {time.perf_counter() - started:,.1f} s "
              f"({size / 1e6:,.0f} MB)")
        results = {engine: _measure(engine, folder) for engine in args.engines}
    for engine, result in results.items():
        if result is not None:
            print(f"{engine:>7}: {result['seconds']:8.1f} s, peak {result['peak_bytes'] / 1e9:5.2f} GB")
    duck, pandas = results.get("duckdb"), results.get("pandas")
    if duck is not None and pandas is not None:
        if duck["counts"] != pandas["counts"]:
            print(f"counts differ: duckdb {duck['counts']} pandas {pandas['counts']}")
            return 1
        ratio = duck["seconds"] / pandas["seconds"]
        print(f"same counts ({duck['counts']['expected']:,} expected, {duck['counts']['recovered']:,} recovered); "
              f"duckdb/pandas time {ratio:.2f}x (goal <= {GOAL_RATIO}x at 10^7)")
    if duck is not None:
        met = duck["peak_bytes"] <= GOAL_DUCKDB_BYTES
        print(f"duckdb peak {duck['peak_bytes'] / 1e9:.2f} GB ({'within' if met else 'over'} the 2 GB goal)")
    return 0 if duck is not None else 1


if __name__ == "__main__":
    sys.exit(main())
