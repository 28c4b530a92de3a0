"""An external table's files as a DuckDB view: which S3 objects Athena would read, copied out of moto.

How Athena finds a table's files, and how this emulator follows it:

- Unpartitioned: every object under LOCATION (sub-folders included), except names starting with
  `_` or `.`.
- Partitioned: with partition projection (`projection.enabled`), the partitions are the values the
  projection allows (types `date`, `integer`, `enum`; default template `<LOCATION><column>=<value>/`)
  whose folder holds objects. Without projection, a partition exists only once it is added to the
  catalog (MSCK REPAIR, ALTER TABLE ADD PARTITION), which this emulator does not support: such a
  table reads no rows, as Athena's does before its partitions are loaded.
- A query's `<partition column> = '<literal>'` (or IN) predicates prune partitions, so a query of
  one `dt` reads and counts only that partition's files.
- SymlinkTextInputFormat: every object of a partition folder is a list of s3:// URLs, one per
  line; the files those name are read, with the table's SerDe (Parquet, ORC or CSV).
- Columns are matched by name (Parquet, ORC; case-insensitive, a missing one reads NULL) or by
  position (CSV, delimited text). OpenCSVSerde keeps empty fields as '' in string columns and
  reads them as NULL in others; LazySimpleSerDe reads `\\N` as NULL.

Bytes scanned are the sizes of the files read (Athena counts only the columns it reads of a
columnar file, so it reports less for Parquet and ORC).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from runbook_lib.embedded import moto_state
from runbook_lib.embedded.athena.catalog import ExternalTable, QueryError

__all__ = ["TableFiles", "create_view", "split_s3_url"]

_counter = itertools.count(1)


@dataclass(frozen=True)
class TableFiles:
    """The local copies of a table's files per partition (partition values by column)."""

    partitions: list[tuple[dict[str, str], list[Path]]]
    bytes_scanned: int


def split_s3_url(url: str) -> tuple[str, str]:
    """Return bucket and key (or prefix) of an s3:// URL."""
    if not url.startswith("s3://"):
        raise QueryError("INVALID_TABLE_PROPERTY", f"not an s3:// URL: {url!r}")
    bucket, _, key = url[5:].partition("/")
    return bucket, key


def _objects(bucket: str, prefix: str) -> list[tuple[str, Any]]:
    """Return (key, current version) of every object under the prefix, by key."""
    stored = moto_state.find_bucket(bucket)
    if stored is None:
        raise QueryError("HIVE_FILESYSTEM_ERROR", f"The specified bucket does not exist: {bucket}")
    found = []
    for name in sorted(k for k in list(stored.keys.keys()) if k.startswith(prefix)):
        current = stored.keys.get(name)
        if current is None or moto_state.is_delete_marker(current):
            continue
        leaf = name.rsplit("/", 1)[-1]
        if not leaf or leaf.startswith(("_", ".")):
            continue
        found.append((name, current))
    return found


# --------------------------------------------------------------------------- projection


_JAVA_DATE = (("yyyy", "%Y"), ("MM", "%m"), ("dd", "%d"), ("HH", "%H"), ("mm", "%M"), ("ss", "%S"))
_NOW = re.compile(r"^NOW(?:\s*([+-])\s*(\d+)\s*(YEARS?|MONTHS?|WEEKS?|DAYS?|HOURS?|MINUTES?|SECONDS?))?$", re.I)


def _python_format(java: str) -> str:
    for java_token, python_token in _JAVA_DATE:
        java = java.replace(java_token, python_token)
    return java


def _moment(text: str, python_format: str) -> datetime:
    matched = _NOW.match(text.strip())
    if matched is None:
        return datetime.strptime(text.strip(), python_format).replace(tzinfo=timezone.utc)
    now = datetime.now(timezone.utc)
    if matched.group(1):
        amount = int(matched.group(2)) * (1 if matched.group(1) == "+" else -1)
        unit = matched.group(3).lower().rstrip("s")
        days = {"year": 365, "month": 30, "week": 7, "day": 1}.get(unit)
        delta = timedelta(days=amount * days) if days else timedelta(**{unit + "s": amount})
        now += delta
    return now


def _allowed(column: str, value: str, properties: Mapping[str, str]) -> bool:
    """Return whether partition projection allows this value of the column."""
    kind = properties.get(f"projection.{column}.type", "").lower()
    if kind == "enum":
        return value in [v.strip() for v in properties.get(f"projection.{column}.values", "").split(",")]
    if kind == "integer":
        low, _, high = properties.get(f"projection.{column}.range", "").partition(",")
        try:
            return int(low) <= int(value) <= int(high)
        except ValueError:
            return False
    if kind == "date":
        python_format = _python_format(properties.get(f"projection.{column}.format", "yyyy-MM-dd"))
        start, _, end = properties.get(f"projection.{column}.range", "").partition(",")
        try:
            moment = datetime.strptime(value, python_format).replace(tzinfo=timezone.utc)
            return _moment(start, python_format) <= moment <= _moment(end or "NOW", python_format)
        except ValueError:
            return False
    if kind == "injected":
        return True
    raise QueryError("INVALID_TABLE_PROPERTY",
                     f"projection.{column}.type is {kind or 'missing'}; this emulator projects date, integer, enum")


def _partition_folders(table: ExternalTable, wanted: Mapping[str, set[str]]) -> list[tuple[dict[str, str], str]]:
    """Return (values, folder prefix) of each partition Athena would read."""
    if str(table.properties.get("projection.enabled", "")).lower() != "true":
        return []  # partitions come only from the catalog, which this emulator never loads
    bucket, prefix = split_s3_url(table.location)
    base = prefix if prefix.endswith("/") or not prefix else prefix + "/"
    names = [c.name for c in table.partitions]
    pattern = re.compile("^" + "".join(f"{re.escape(n)}=([^/]+)/" for n in names))
    folders: dict[str, dict[str, str]] = {}
    for key, _ in _objects(bucket, base):
        matched = pattern.match(key[len(base):])
        if matched is None:
            continue
        values = dict(zip(names, matched.groups(), strict=True))
        folder = base + "".join(f"{n}={values[n]}/" for n in names)
        folders[folder] = values
    chosen = []
    for folder, values in sorted(folders.items()):
        if any(n in wanted and values[n] not in wanted[n] for n in names):
            continue
        if all(_allowed(n, values[n], table.properties) for n in names):
            chosen.append((values, folder))
    return chosen


# --------------------------------------------------------------------------- files


def _fetch(bucket: str, key: str, workdir: Path) -> tuple[Path, int]:
    """Copy one object's bytes into the work folder and return the copy and its size."""
    stored = moto_state.find_bucket(bucket)
    version = stored.keys.get(key) if stored is not None else None
    if version is None or moto_state.is_delete_marker(version):
        raise QueryError("HIVE_CANNOT_OPEN_SPLIT", f"Error opening Hive split s3://{bucket}/{key}: NoSuchKey")
    body = bytes(version.value)
    suffix = "".join(Path(key).suffixes[-2:]) or ".data"
    target = workdir / f"f{next(_counter)}{suffix}"
    target.write_bytes(body)
    return target, len(body)


def table_files(table: ExternalTable, workdir: Path, wanted: Mapping[str, set[str]]) -> TableFiles:
    """Copy the files a query of the table reads into `workdir`, grouped by partition."""
    bucket, prefix = split_s3_url(table.location)
    if table.partitions:
        folders = [(values, bucket, folder) for values, folder in _partition_folders(table, wanted)]
    else:
        folders = [({}, bucket, prefix)]
    partitions: list[tuple[dict[str, str], list[Path]]] = []
    scanned = 0
    for values, folder_bucket, folder in folders:
        listed = _objects(folder_bucket, folder)
        targets: list[tuple[str, str]] = []
        if table.symlink:
            for _, version in listed:
                scanned += len(version.value)
                for line in bytes(version.value).decode().splitlines():
                    if line.strip():
                        targets.append(split_s3_url(line.strip()))
        else:
            targets = [(folder_bucket, key) for key, _ in listed]
        paths = []
        for target_bucket, key in targets:
            path, size = _fetch(target_bucket, key, workdir)
            paths.append(path)
            scanned += size
        partitions.append((values, paths))
    return TableFiles(partitions, scanned)


# --------------------------------------------------------------------------- views


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _file_list(paths: Iterable[Path]) -> str:
    return "[" + ", ".join(_literal(str(p)) for p in paths) + "]"


def _empty(table: ExternalTable) -> str:
    columns = [*table.columns, *table.partitions]
    return "SELECT " + ", ".join(f"CAST(NULL AS {c.duckdb_type}) AS {_quote(c.name)}" for c in columns) + " WHERE false"


def _by_name(con: Any, source: str, table: ExternalTable, values: Mapping[str, str]) -> str:
    present = {str(row[0]).lower(): str(row[0]) for row in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}
    parts = []
    for column in table.columns:
        if column.name in present:
            parts.append(f"CAST({_quote(present[column.name])} AS {column.duckdb_type}) AS {_quote(column.name)}")
        else:
            parts.append(f"CAST(NULL AS {column.duckdb_type}) AS {_quote(column.name)}")
    parts += [f"CAST({_literal(values[c.name])} AS {c.duckdb_type}) AS {_quote(c.name)}" for c in table.partitions]
    return f"SELECT {', '.join(parts)} FROM {source}"


def _by_position(table: ExternalTable, paths: list[Path], values: Mapping[str, str]) -> str:
    serde = table.serde_properties
    fields = {f"c{i}": "VARCHAR" for i in range(len(table.columns))}
    columns = "{" + ", ".join(f"{_literal(n)}: 'VARCHAR'" for n in fields) + "}"
    if table.storage == "csv":
        options = (f"delim={_literal(serde.get('separatorChar', ','))}, "
                   f"quote={_literal(serde.get('quoteChar', chr(34)))}, "
                   f"escape={_literal(serde.get('escapeChar', chr(92)))}")
    else:
        delimiter = serde.get("field.delim") or serde.get("serialization.format") or "\x01"
        options = f"delim={_literal(delimiter)}, quote='', escape='', nullstr='\\N'"
    source = (f"read_csv({_file_list(paths)}, header=false, columns={columns}, {options}, null_padding=true, "
              "strict_mode=false, auto_detect=false)")
    parts = []
    for index, column in enumerate(table.columns):
        raw = _quote(f"c{index}")
        if column.duckdb_type.upper() in ("VARCHAR", "TEXT"):
            value = f"coalesce({raw}, '')" if table.storage == "csv" else raw
        else:
            value = f"CAST(NULLIF({raw}, '') AS {column.duckdb_type})"
        parts.append(f"{value} AS {_quote(column.name)}")
    parts += [f"CAST({_literal(values[c.name])} AS {c.duckdb_type}) AS {_quote(c.name)}" for c in table.partitions]
    return f"SELECT {', '.join(parts)} FROM {source}"


def create_view(con: Any, table: ExternalTable, view: str, workdir: Path, wanted: Mapping[str, set[str]]) -> int:
    """Create a DuckDB view named `view` over the table's files and return the bytes it scans."""
    files = table_files(table, workdir, wanted)
    selects = []
    for number, (values, paths) in enumerate(files.partitions):
        if not paths:
            continue
        if table.storage == "parquet":
            selects.append(_by_name(con, f"read_parquet({_file_list(paths)}, union_by_name=true)", table, values))
        elif table.storage == "orc":
            import pyarrow as pa
            import pyarrow.orc as orc

            arrow = pa.concat_tables([orc.read_table(str(p)) for p in paths], promote_options="default")
            name = f"{view}__orc{number}"
            con.register(name, arrow)
            selects.append(_by_name(con, _quote(name), table, values))
        else:
            selects.append(_by_position(table, paths, values))
    body = " UNION ALL ".join(selects) if selects else _empty(table)
    con.execute(f"CREATE OR REPLACE TEMP VIEW {_quote(view)} AS {body}")
    return files.bytes_scanned
