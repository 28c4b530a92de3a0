"""Load the Batch Replication job's generated manifest and completion report into DataFrames.

Both live in S3 as a small JSON index pointing at headerless CSV shards:

    <prefix>/job-<JobId>/manifest.json      completion report index (Report_CSV_20180820)
    <prefix>/job-<JobId>/results/<sha>.csv  one shard per task outcome (succeeded / failed)
    .../manifest.json                       generated manifest index (S3InventoryReport_CSV_20211130)
    .../data/<uuid>.csv[.gz]                generated manifest shards

Shards are parsed with pyarrow's CSV reader, every column typed explicitly (a key such as
"0123" must stay text), and handed to pandas without going through Python objects. Object
keys arrive URL-encoded; they are decoded in bulk on the raw bytes (see `_unquote_plus`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO, Any, Protocol
from urllib.parse import quote, unquote_plus

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from runbook_lib import columnar
from runbook_lib.errors import ReportError

__all__ = [
    "COMPLETION_REPORT_COLUMNS",
    "COMPLETION_REPORT_FORMAT",
    "GENERATED_MANIFEST_FORMAT",
    "RETRY_MANIFEST_FORMAT",
    "TASK_STATUS_DTYPE",
    "LocalObjectStore",
    "ObjectReader",
    "Source",
    "completion_report_manifest_key",
    "failed_tasks",
    "load_completion_report",
    "load_csv_manifest",
    "load_generated_manifest",
    "read_completion_report_csv",
    "read_manifest_csv",
    "retry_manifest_csv",
]

COMPLETION_REPORT_FORMAT = "Report_CSV_20180820"
GENERATED_MANIFEST_FORMAT = "S3InventoryReport_CSV_20211130"
RETRY_MANIFEST_FORMAT = "S3BatchOperations_CSV_20180820"

# The order result rows really have. The index's ReportSchema string names ErrorCode before
# HTTPStatusCode, but every report S3 writes (and every example row AWS documents) puts the
# HTTP status first, so the schema string is deliberately not used to name the columns.
COMPLETION_REPORT_COLUMNS: tuple[str, ...] = (
    "bucket",
    "key",
    "version_id",
    "task_status",
    "http_status",
    "error_code",
    "result_message",
)
TASK_STATUS_DTYPE = pd.CategoricalDtype(["succeeded", "failed"])

Source = bytes | bytearray | memoryview | IO[bytes] | str | os.PathLike[str]
# A shard's name for messages, and how to get its content (fetching from S3 happens in the pool).
_Shard = tuple[str, Callable[[], Source]]

_GZIP_MAGIC = b"\x1f\x8b"
_WORKERS = min(8, os.cpu_count() or 1)
_BLOCK_BYTES = 4 << 20
_MISSING_CODES = frozenset({"NoSuchKey", "NoSuchBucket", "404", "NotFound"})
# Inventory field names whose snake_case form a generic rule would spell badly.
_SNAKE_NAMES = {"ETag": "etag", "VersionId": "version_id", "LastModifiedDate": "last_modified_date"}


class ObjectReader(Protocol):
    """Anything that reads an object like boto3's S3 client: `get_object(...)["Body"].read()`."""

    def get_object(self, *, Bucket: str, Key: str) -> Any: ...  # boto3's argument names


@dataclass(frozen=True)
class LocalObjectStore:
    """Reads objects from `<root>/<bucket>/<key>`, such as a report copied with `aws s3 sync`."""

    root: Path

    def get_object(self, *, Bucket: str, Key: str) -> dict[str, Any]:  # boto3's argument names
        """Return `{"Body": file}` for the object, like boto3; a missing file raises FileNotFoundError."""
        parts = [part for part in Key.split("/") if part]
        if ".." in parts:
            raise ReportError(f"refusing to read {Key!r}: a report key must not climb out of {self.root}")
        return {"Body": Path(self.root, Bucket, *parts).open("rb")}


# --------------------------------------------------------------------------- locations


def completion_report_manifest_key(prefix: str | None, job_id: str) -> str:
    """Return the key of a job's completion report index, joined with '/' exactly as S3 does."""
    # S3 does not normalise the join: a prefix ending in "/" yields "prefix//job-...".
    if not prefix:
        return f"job-{job_id}/manifest.json"
    return f"{prefix}/job-{job_id}/manifest.json"


# --------------------------------------------------------------------------- loading from S3


def load_completion_report(s3: ObjectReader, bucket: str, manifest_key: str) -> pd.DataFrame:
    """Return every task of a completion report, after checking each shard against its listed MD5."""
    index = _read_index(s3, bucket, manifest_key, what="completion report", hint=_REPORT_HINT)
    if index.get("Format") != COMPLETION_REPORT_FORMAT:
        raise ReportError(
            f"s3://{bucket}/{manifest_key} has Format {index.get('Format')!r}, expected "
            f"{COMPLETION_REPORT_FORMAT!r}; point the runbook at the job's completion report manifest.json"
        )
    shards = [
        _listed_shard(s3, str(entry.get("Bucket") or bucket), entry.get("Key"), entry.get("MD5Checksum"), manifest_key)
        for entry in _entries(index, "Results", manifest_key)
    ]
    return _completion_frame(shards)


def load_generated_manifest(s3: ObjectReader, bucket: str, manifest_key: str) -> pd.DataFrame:
    """Return the versions a generated manifest lists, after checking each data file's MD5."""
    index = _read_index(s3, bucket, manifest_key, what="generated manifest", hint=_MANIFEST_HINT)
    file_format = index.get("fileFormat")
    if file_format != "CSV":
        raise ReportError(
            f"s3://{bucket}/{manifest_key} has fileFormat {file_format!r}; only CSV manifests "
            f"({GENERATED_MANIFEST_FORMAT}) can be read"
        )
    columns = [name.strip() for name in str(index.get("fileSchema", "")).split(",") if name.strip()]
    if "Key" not in columns:
        raise ReportError(
            f"s3://{bucket}/{manifest_key} has fileSchema {index.get('fileSchema')!r} without a Key column; "
            "the manifest index is damaged"
        )
    # Data files sit in the same bucket as their index, as in an S3 Inventory delivery.
    shards = [
        _listed_shard(s3, bucket, entry.get("key"), entry.get("MD5checksum"), manifest_key)
        for entry in _entries(index, "files", manifest_key)
    ]
    return _manifest_frame(shards, columns)


def load_csv_manifest(s3: ObjectReader, bucket: str, key: str, fields: Sequence[str]) -> pd.DataFrame:
    """Return the versions a job's own CSV manifest (S3BatchOperations_CSV_20180820) lists, its columns `fields`."""
    data = _get_object_bytes(s3, bucket, key)
    if data is None:
        raise ReportError(f"the job's manifest s3://{bucket}/{key} does not exist; DescribeJob's Manifest names it, "
                          "and it must stay where the job read it")
    named = [name if name != "Ignore" else f"ignore_{index}" for index, name in enumerate(fields)]
    frame = _manifest_frame([(f"s3://{bucket}/{key}", partial(_same, data))], named)
    return frame.drop(columns=[name for name in frame.columns if name.startswith("ignore_")])


_REPORT_HINT = (
    "Check that the job has ended (Complete, Failed or Cancelled) and ran at least one task, and that "
    "the bucket and prefix match the job's Report settings (a prefix ending in '/' gives '//' in the key)."
)
_MANIFEST_HINT = (
    "Check that the job was created with EnableManifestOutput and this ManifestOutputLocation, and that "
    "it got past Preparing; DescribeJob's GeneratedManifestDescriptor names the manifest object."
)


def _read_index(s3: ObjectReader, bucket: str, key: str, *, what: str, hint: str) -> dict[str, Any]:
    """Return the parsed manifest.json of a report or generated manifest."""
    data = _get_object_bytes(s3, bucket, key)
    if data is None:
        raise ReportError(f"no {what} found: s3://{bucket}/{key} does not exist. {hint}")
    try:
        index = json.loads(data)
    except ValueError as exc:
        raise ReportError(f"s3://{bucket}/{key} is not valid JSON ({exc}); the {what} index is damaged") from exc
    if not isinstance(index, dict):
        raise ReportError(f"s3://{bucket}/{key} is not a JSON object; the {what} index is damaged")
    return index


def _entries(index: dict[str, Any], name: str, index_key: str) -> list[dict[str, Any]]:
    """Return the list of file entries an index holds under `name`, or raise ReportError."""
    entries = index.get(name)
    if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
        raise ReportError(f"{index_key} has no {name} list of files; the index is damaged")
    return entries


def _listed_shard(s3: ObjectReader, bucket: str, key: object, md5: object, index_key: str) -> _Shard:
    """Return a labelled loader for a CSV shard an index lists; loading checks existence and MD5."""
    if not isinstance(key, str) or not key:
        raise ReportError(f"{index_key} lists a file without a key; the index is damaged")

    def load() -> bytes:
        data = _get_object_bytes(s3, bucket, key)
        if data is None:
            raise ReportError(
                f"{index_key} lists s3://{bucket}/{key}, which does not exist; the report is incomplete "
                "(was it moved or deleted?)"
            )
        _check_md5(data, md5, bucket, key)
        return data

    return f"s3://{bucket}/{key}", load


def _get_object_bytes(s3: ObjectReader, bucket: str, key: str) -> bytes | None:
    """Return an object's bytes, or None when it does not exist."""
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    except Exception as exc:  # any client's errors; missing objects are sorted out below
        if _is_missing(exc):
            return None
        raise ReportError(
            f"could not read s3://{bucket}/{key}: {exc}. Check that the profile may read the report "
            "bucket (s3:GetObject) and decrypt it."
        ) from exc
    try:
        return bytes(body.read())
    finally:
        body.close()


def _is_missing(exc: BaseException) -> bool:
    """Say whether an object store error means the object is absent."""
    if isinstance(exc, (FileNotFoundError, KeyError)):
        return True
    response = getattr(exc, "response", None)
    code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
    return str(code) in _MISSING_CODES


def _check_md5(data: bytes, expected: object, bucket: str, key: str) -> None:
    """Raise ReportError when a shard's MD5 differs from the one its index lists."""
    if not expected:
        return
    actual = hashlib.md5(data, usedforsecurity=False).hexdigest()
    if actual != str(expected).lower():
        raise ReportError(
            f"s3://{bucket}/{key} has MD5 {actual} but its index lists {expected}; the file was changed "
            "or only partly copied. Read it again from the job's report bucket."
        )


# --------------------------------------------------------------------------- parsing


def read_completion_report_csv(sources: Iterable[Source]) -> pd.DataFrame:
    """Return the tasks of completion report CSV shards (bytes, binary files or paths) as one frame."""
    return _completion_frame(_labelled(sources))


def read_manifest_csv(sources: Iterable[Source], columns: Sequence[str]) -> pd.DataFrame:
    """Return the versions listed by manifest CSV shards whose columns are `columns` (a fileSchema)."""
    return _manifest_frame(_labelled(sources), list(columns))


def _labelled(sources: Iterable[Source]) -> list[_Shard]:
    """Return each source with a name to quote in error messages."""
    return [
        (os.fspath(s) if isinstance(s, (str, os.PathLike)) else f"source #{i + 1}", partial(_same, s))
        for i, s in enumerate(sources)
    ]


def _same(source: Source) -> Source:
    """Return the source unchanged (the loader of an already available shard)."""
    return source


def _completion_frame(shards: Sequence[_Shard]) -> pd.DataFrame:
    """Return the typed completion report frame for labelled CSV shards."""
    types = {name: pa.large_string() for name in COMPLETION_REPORT_COLUMNS}
    types["http_status"] = pa.int16()
    return _to_pandas(_read_tables(shards, types, _finish_completion_shard))


def _finish_completion_shard(table: pa.Table) -> pa.Table:
    """Return one parsed report shard with decoded keys, nulls for absent values and a status category."""
    status = table["task_status"]
    failed = pc.equal(status, "failed")
    known = pc.or_(failed, pc.equal(status, "succeeded"))
    if table.num_rows and not pc.all(known).as_py():
        odd = pc.unique(pc.filter(status, pc.invert(known))).to_pylist()
        raise ReportError(
            f"completion report has task statuses {odd[:5]}; only 'succeeded' and 'failed' are known. "
            "Is this really a Batch Operations completion report?"
        )
    codes = pa.array(np.asarray(failed.combine_chunks(), dtype=np.int8)) if table.num_rows else pa.array([], pa.int8())
    version = table["version_id"]
    return pa.table(
        {
            "bucket": table["bucket"],
            "key": _unquote_plus(table["key"]),
            # S3 writes \N when the manifest row had an empty version field.
            "version_id": _nulls_where(version, ["", "\\N"]),
            "task_status": pa.DictionaryArray.from_arrays(codes, pa.array(["succeeded", "failed"])),
            "http_status": table["http_status"],
            "error_code": _nulls_where(table["error_code"], [""]),
            "result_message": table["result_message"],
        }
    )


def _manifest_frame(shards: Sequence[_Shard], columns: list[str]) -> pd.DataFrame:
    """Return the typed manifest frame for labelled CSV shards with the given schema."""
    names = [_snake(name) for name in columns]
    table = _read_tables(shards, {name: pa.large_string() for name in names}, _finish_manifest_shard)
    ordered = [n for n in ("bucket", "key", "version_id") if n in table.column_names]
    ordered += [n for n in table.column_names if n not in ordered]
    return _to_pandas(table.select(ordered))


def _finish_manifest_shard(table: pa.Table) -> pa.Table:
    """Return one parsed manifest shard with decoded keys and S3's spelling of the null version."""
    if "key" in table.column_names:
        table = table.set_column(table.column_names.index("key"), "key", _unquote_plus(table["key"]))
    if "version_id" not in table.column_names:
        return table.append_column("version_id", pa.nulls(table.num_rows, pa.large_string()))
    version = table["version_id"]
    version = _nulls_where(version, ["\\N"])
    # Inventory-style files write the null version as an empty field; S3 calls it "null".
    version = pc.if_else(pc.equal(version, ""), pa.scalar("null", pa.large_string()), version)
    return table.set_column(table.column_names.index("version_id"), "version_id", version)


def _read_tables(
    shards: Sequence[_Shard],
    types: dict[str, pa.DataType],
    finish: Callable[[pa.Table], pa.Table],
) -> pa.Table:
    """Return all shards parsed with the given column names and types, each passed through `finish`."""
    names = list(types)
    # Shards are fetched, checked, parsed and decoded in a thread pool; arrow's own
    # threads only pay off when there are fewer shards than cores.
    read_options = pacsv.ReadOptions(
        column_names=names,
        autogenerate_column_names=False,
        use_threads=len(shards) < _WORKERS,
        block_size=_BLOCK_BYTES,
    )
    convert_options = pacsv.ConvertOptions(
        column_types=types, strings_can_be_null=False, null_values=[""], quoted_strings_can_be_null=False
    )

    def read(label: str, load: Callable[[], Source]) -> pa.Table | None:
        stream = _input_stream(load())
        if stream is None:
            return None
        try:
            table = pacsv.read_csv(stream, read_options=read_options, convert_options=convert_options)
        except pa.ArrowInvalid as exc:
            raise ReportError(
                f"{label} is not a CSV with the columns {', '.join(names)}: {exc}. "
                "Check that it belongs to this report or manifest and was not edited."
            ) from exc
        return finish(table)

    with ThreadPoolExecutor(max_workers=_WORKERS) as pool:
        tables = [t for t in pool.map(lambda shard: read(*shard), shards) if t is not None]
    if not tables:
        return finish(pa.table({name: pa.array([], types[name]) for name in names}))
    return pa.concat_tables(tables)


def _input_stream(source: Source) -> pa.NativeFile | None:
    """Return a pyarrow stream over a source, gunzipping when needed; None for an empty source."""
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if os.path.getsize(path) == 0:
            return None
        buffer = pa.memory_map(path).read_buffer()
    elif isinstance(source, (bytes, bytearray, memoryview)):
        buffer = pa.py_buffer(source)
    else:
        buffer = pa.py_buffer(source.read())
    if buffer.size == 0:
        return None
    # Decide by content, not name: S3 keys and local copies do not always keep the .gz suffix.
    if buffer.slice(0, 2).to_pybytes() == _GZIP_MAGIC:
        return pa.CompressedInputStream(pa.BufferReader(buffer), "gzip")
    return pa.BufferReader(buffer)


def _nulls_where(column: pa.ChunkedArray, markers: list[str]) -> pa.ChunkedArray:
    """Return the column with nulls in place of the marker strings, reusing its buffers where it can."""
    chunks = []
    for values in column.chunks:
        is_null = pc.equal(values, markers[0])
        for marker in markers[1:]:
            is_null = pc.or_(is_null, pc.equal(values, marker))
        if values.offset or values.null_count:
            chunks.append(pc.if_else(is_null, pa.scalar(None, values.type), values))
            continue
        # A boolean array is a bitmap, so its negation is exactly the validity bitmap we need.
        validity = pc.invert(is_null).buffers()[1]
        chunks.append(pa.Array.from_buffers(values.type, len(values), [validity, *values.buffers()[1:]]))
    return pa.chunked_array(chunks, type=column.type)


def _to_pandas(table: pa.Table) -> pd.DataFrame:
    """Return a pandas frame whose text columns are string[pyarrow] and HTTP statuses Int16."""
    mapping: dict[pa.DataType, Any] = {
        pa.string(): columnar.STRING,
        pa.large_string(): columnar.STRING,
        pa.int16(): pd.Int16Dtype(),
    }
    return table.to_pandas(types_mapper=mapping.get)


def _snake(name: str) -> str:
    """Return the snake_case column name for an inventory field name such as IsDeleteMarker."""
    if name in _SNAKE_NAMES:
        return _SNAKE_NAMES[name]
    out: list[str] = []
    for i, char in enumerate(name):
        boundary = char.isupper() and i > 0 and (
            not name[i - 1].isupper() or (i + 1 < len(name) and name[i + 1].islower())
        )
        out.append(("_" if boundary and name[i - 1] != "_" else "") + char.lower())
    return "".join(out)


# --------------------------------------------------------------------------- key decoding

# Keys are decoded as form data (unquote_plus), not with plain unquote: S3 Inventory writes a space
# as "+" and a literal plus as "%2B", and an encoder that writes "%20" also writes "%2B", so
# unquote_plus reads both spellings back to the same key while unquote would keep "+" for spaces.
_HEX_VALUE = np.full(256, -1, dtype=np.int16)
for _digit, _char in enumerate("0123456789abcdef"):
    _HEX_VALUE[ord(_char)] = _digit
    _HEX_VALUE[ord(_char.upper())] = _digit


def _unquote_plus(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Return the column with every value decoded like urllib.parse.unquote_plus."""
    # One contiguous array per shard: the fixed cost of each numpy/arrow call outweighs the copy.
    return pa.chunked_array([_unquote_plus_chunk(column.combine_chunks())], type=column.type)


def _unquote_plus_chunk(chunk: pa.Array) -> pa.Array:
    """Return one string chunk decoded in bulk; only values holding '%' or '+' are rewritten."""
    if chunk.null_count or len(chunk) == 0:
        return _unquote_plus_slow(chunk)
    offsets, data = columnar.string_buffers(chunk)
    rows = np.zeros(len(chunk), dtype=bool)
    for mark in (ord("%"), ord("+")):
        rows[np.searchsorted(offsets, np.flatnonzero(data == mark), side="right") - 1] = True
    encoded = np.flatnonzero(rows)
    if not encoded.size:
        return chunk
    if encoded.size * 2 > len(chunk):
        return _unquote_plus_dense(chunk)
    decoded = _unquote_plus_dense(chunk.take(pa.array(encoded)))
    # Untouched values are taken from the chunk, decoded ones from behind it.
    order = np.arange(len(chunk))
    order[encoded] = len(chunk) + np.arange(encoded.size)
    return pa.concat_arrays([chunk, decoded]).take(pa.array(order))


def _unquote_plus_dense(chunk: pa.Array) -> pa.Array:
    """Return every value of a chunk without nulls decoded like unquote_plus, on the raw bytes."""
    offsets, data = columnar.string_buffers(chunk)
    decoded = data.copy()
    decoded[data == ord("+")] = ord(" ")
    percent = np.flatnonzero(data == ord("%"))
    # An escape is "%" and two hex digits inside the same value; anything else stays literal.
    starts = np.zeros(len(data) + 3, dtype=bool)
    starts[offsets] = True
    percent = percent[~(starts[percent + 1] | starts[percent + 2])]
    high = _HEX_VALUE[data[percent + 1]]
    low = _HEX_VALUE[data[percent + 2]]
    valid = (high >= 0) & (low >= 0)
    percent = percent[valid]
    decoded[percent] = (high[valid] * 16 + low[valid]).astype(np.uint8)
    keep = np.ones(len(data), dtype=bool)
    keep[percent + 1] = False
    keep[percent + 2] = False
    # Each escape before a value's start shortens everything from there on by two bytes.
    shifted = offsets - 2 * np.searchsorted(percent, offsets, side="left")
    binary = pa.Array.from_buffers(
        pa.large_binary(), len(chunk), [None, pa.py_buffer(shifted), pa.py_buffer(decoded[keep])]
    )
    try:
        return binary.cast(pa.large_string()).cast(chunk.type)
    except pa.ArrowInvalid:
        # Escapes that do not form UTF-8: let Python substitute U+FFFD exactly as unquote_plus does.
        return _unquote_plus_slow(chunk)


def _unquote_plus_slow(chunk: pa.Array) -> pa.Array:
    """Return one chunk decoded value by value (the reference behaviour)."""
    return pa.array(
        [None if value is None else unquote_plus(value) for value in chunk.to_pylist()], type=chunk.type
    )


# --------------------------------------------------------------------------- retries


def failed_tasks(report: pd.DataFrame) -> pd.DataFrame:
    """Return the report's failed tasks, to inspect their error codes or feed a retry manifest."""
    return report[report["task_status"] == "failed"].reset_index(drop=True)


def retry_manifest_csv(failed: pd.DataFrame, bucket: str | None = None) -> bytes:
    """Return a S3BatchOperations_CSV_20180820 manifest (bucket,key[,version]) for the given versions.

    `failed` needs `key` and `version_id`; the bucket comes from its `bucket` column or `bucket`.
    """
    if "bucket" in failed.columns:
        buckets = failed["bucket"].astype(object).tolist()
    elif bucket:
        buckets = [bucket] * len(failed)
    else:
        raise ReportError("retry_manifest_csv needs a bucket column or the bucket argument")
    versions = failed["version_id"].astype(object).where(failed["version_id"].notna(), None).tolist()
    versioned = [v is not None for v in versions]
    if any(versioned) and not all(versioned):
        raise ReportError(
            "some tasks have a version id and some do not; a Batch Operations manifest must be one or the "
            "other. Split the retry into two jobs."
        )
    lines = []
    # Encode all but unreserved characters and '/': '+' becomes %2B and a space %20, which read back
    # the same whether the reader decodes as URL path or as form data.
    for row_bucket, key, version in zip(buckets, failed["key"].tolist(), versions, strict=True):
        fields = [str(row_bucket), quote(str(key), safe="/")]
        if version is not None:
            fields.append(str(version))
        lines.append(",".join(fields))
    return ("\n".join(lines) + "\n").encode() if lines else b""

