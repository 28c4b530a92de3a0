"""The comparison SQL on DuckDB in bounded memory: every version's row written to Parquet, slice by slice.

The comparison (`inventory_sql`) joins the vault's and the recovery bucket's inventories with the
manifest and the completion report on (key, version id). DuckDB's hash joins hold their build side
in memory and, past the memory limit, spill partitions of both sides to disk; at 10^8 versions
that is tens of gigabytes written and read again, join after join. So when the inputs hold more
rows than `rows_per_slice`, each input is first written once into slices by a hash of the key
(every row of a key lands in the same slice, whichever input it comes from), and the comparison
then runs slice by slice, each slice's joins within memory.

Each slice's detail rows are written straight to one Parquet file of the details folder (never
gathered in memory) and its counts (`inventory_sql.count_sql`) read back from that file; the
run's counts are their sums. The rows go to the file batch by batch through pyarrow's Parquet
writer, uncompressed, with dictionaries only for the columns of few values: on a slice of a million
versions DuckDB's own writer took about 1 s of CPU more for the same rows and the same file size
(keys, version ids and ETags are random text that no codec shrinks); over a whole run at 10^7
versions that is a few per cent, the slicing and the joins cost the rest. A version listed twice
has two rows within its slice, so the duplicates count is exact too.
"""

from __future__ import annotations

import math
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from runbook_lib import inventory_sql
from runbook_lib.scope import JobScope

__all__ = ["MEMORY_LIMIT", "ROWS_PER_SLICE", "THREADS", "compare_to_parquet", "connect", "rows_per_slice"]

# DuckDB's own memory limit; the process (Python, pyarrow) needs some hundreds of MB besides.
MEMORY_LIMIT = "1500MB"
THREADS = 2
# Input rows (all five inputs together) per slice for each byte of DuckDB's memory limit: 4 million
# rows compare within 1.5 GB (benchmarks.bench_inventory_compare measures it).
_ROWS_PER_BYTE = 4_000_000 / 1.5e9
ROWS_PER_SLICE = 4_000_000
_SLICE_COLUMN = "runbook_slice"
# Detail rows per batch handed from DuckDB to the Parquet writer (one row group each).
_BATCH_ROWS = 122_880
# Text columns of distinct values per version: a dictionary would only be built to be dropped.
_PLAIN_TEXT = ("key", "version_id", "vault_etag", "recovery_etag")


def connect(spill: Path, memory_limit: str = MEMORY_LIMIT, threads: int = THREADS) -> Any:
    """Return a DuckDB connection for the comparison: times in UTC, bounded memory, spilling to `spill`."""
    import duckdb

    con = duckdb.connect(config={"threads": threads, "memory_limit": memory_limit, "temp_directory": str(spill),
                                 "preserve_insertion_order": False})
    con.execute("SET TimeZone='UTC'")
    con.execute("SET enable_progress_bar = false")  # nothing printed into a notebook's output
    return con


def rows_per_slice(memory_limit: str) -> int:
    """Return how many input rows one slice may hold under a DuckDB memory limit such as "1500MB" or "6GB"."""
    units = {"KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}
    text = memory_limit.strip().upper().replace(" ", "")
    unit = next((u for u in sorted(units, key=len, reverse=True) if text.endswith(u)), None)
    if unit is None or not text[:-len(unit)].replace(".", "", 1).isdigit():
        raise ValueError(f"memory_limit must be a number and a unit such as 1500MB or 6GB, not {memory_limit!r}")
    return max(1, int(float(text[:-len(unit)]) * units[unit] * _ROWS_PER_BYTE))


def _path(path: Path) -> str:
    return inventory_sql.literal(str(path))


def _rows(con: Any, table: str) -> int:
    rows = con.execute(f"SELECT count(*) FROM {table}").fetchall()
    return int(rows[0][0]) if rows else 0


def _slices(con: Any, tables: dict[str, str], slices: int, work: Path) -> list[tuple[dict[str, str], list[Path]]]:
    """Write each input once into `slices` folders by a hash of the key; return each slice's tables and folders."""
    work.mkdir(parents=True, exist_ok=True)
    # Flush each thread's rows to their slice files often: buffering more spills to disk instead.
    con.execute("SET partitioned_write_flush_threshold = 65536")
    for name, table in tables.items():
        con.execute(f"COPY (SELECT *, hash(key) % {slices} AS {_SLICE_COLUMN} FROM {table}) TO {_path(work / name)} "
                    f"(FORMAT parquet, PARTITION_BY ({_SLICE_COLUMN}))")
    bound = []
    for number in range(slices):
        exprs, parts = {}, []
        for name, table in tables.items():
            part = work / name / f"{_SLICE_COLUMN}={number}"
            if part.is_dir():  # a slice without rows of this input has no folder
                exprs[name] = f"read_parquet({_path(part / '*.parquet')}, hive_partitioning = false)"
                parts.append(part)
            else:
                exprs[name] = f"(SELECT * FROM {table} WHERE false)"
        bound.append((exprs, parts))
    return bound


def compare_to_parquet(
    con: Any, tables: dict[str, str], scope: JobScope, folder: Path, *, has_sample: bool = False,
    rows_per_slice: int = ROWS_PER_SLICE, work: Path | None = None,
) -> tuple[dict[str, int], int]:
    """Write compare_sql's rows for `tables` as Parquet files into `folder`; return the summed counts and the slices.

    `tables` binds inventory_sql.TABLES to DuckDB table expressions; `work` (default: `folder`'s
    name with `-slices`) holds the sliced inputs while the comparison runs, and is removed after.
    """
    folder.mkdir(parents=True, exist_ok=True)
    rows = sum(_rows(con, tables[name]) for name in inventory_sql.TABLES)
    slices = max(1, math.ceil(rows / max(1, rows_per_slice)))
    work = work or folder.with_name(folder.name + "-slices")
    try:
        bound = [(tables, [])] if slices == 1 else _slices(con, tables, slices, work)
        return _compare_slices(con, bound, scope, folder, has_sample), slices
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _compare_slices(con: Any, bound: list[tuple[dict[str, str], list[Path]]], scope: JobScope, folder: Path,
                    has_sample: bool) -> dict[str, int]:
    """Compare slice after slice, removing each slice's inputs once compared (the disk holds one copy at most)."""
    totals: Counter[str] = Counter()
    for number, (exprs, parts) in enumerate(bound):
        target = folder / f"part-{number:05d}.parquet"
        compare = inventory_sql.to_duckdb(inventory_sql.compare_sql(scope, exprs, has_sample))
        _write_parquet(con, compare, target)
        counted = con.execute(inventory_sql.to_duckdb(
            inventory_sql.count_sql(f"SELECT * FROM read_parquet({_path(target)})")))
        names = [column[0] for column in counted.description]
        rows = counted.fetchall()
        totals.update({name: int(value or 0) for name, value in zip(names, rows[0] if rows else (), strict=True)})
        for part in parts:
            shutil.rmtree(part, ignore_errors=True)
    return dict(totals)


def _write_parquet(con: Any, query: str, target: Path) -> None:
    """Write a query's rows to one Parquet file as DuckDB hands them over, batch by batch, in its column types."""
    reader = con.sql(query).to_arrow_reader(_BATCH_ROWS)
    schema = reader.schema
    dictionary = [field.name for field in schema
                  if pa.types.is_string(field.type) and field.name not in _PLAIN_TEXT]
    with pq.ParquetWriter(str(target), schema, compression="none", use_dictionary=dictionary) as writer:
        for batch in reader:
            writer.write_batch(batch)
