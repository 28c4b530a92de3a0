"""Detail tables written as CSV column by column in Arrow, byte for byte what `DataFrame.to_csv` writes.

A verification of 10^6 versions writes a detail table of 10^6 rows and some 60 columns.
`DataFrame.to_csv` formats that cell by cell in Python (about 40 s of CPU on this project's
reference machine); formatting each column at once with Arrow's compute functions and joining the
columns into lines takes a small fraction of that. The output is the same bytes: the same text for
booleans ("True"/"False"), integers, UTC times ("2027-03-28 17:27:23+00:00") and
missing values (an empty field), and the same quoting (a field is quoted only when it holds a
comma, a double quote or a line feed, and a carriage return where the running Python's csv module
quotes it, with double quotes doubled).

Text may be held as strings, objects or categories. Times in UTC are written with as many digits
of a second (none, 3, 6 or 9) as the finest value needs among the rows pandas formats together:
`to_csv` formats a table in blocks of 100,000 cells (100,000 // columns rows), so a time's digits
depend on the other times of its block, not of the whole column. A table with a
column of any other kind (floats, naive or non-UTC times, mixed objects, categories of anything
but text) or with a single column is written by `DataFrame.to_csv` itself: this writer only takes
the shapes it reproduces exactly, and `tests/test_csv_writer.py` holds it to that.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["CHUNK_ROWS", "write_csv"]

# Rows formatted at once: bounds the memory of the text built for one chunk.
CHUNK_ROWS = 131_072
# Cells pandas' to_csv formats at once (pandas.io.formats.csvs); a time's digits of a second follow its block.
PANDAS_BLOCK_CELLS = 100_000


def _quoted_characters() -> str:
    """Return the characters that make Python's csv module (which pandas writes with) quote a field.

    A comma, a double quote and a line feed always do; a carriage return does from some Python
    versions on, so it is asked of the running one.
    """
    line = io.StringIO()
    csv.writer(line, lineterminator="\n").writerow(["a\rb", "c"])
    return ',"\n' + ("\r" if line.getvalue().startswith('"') else "")


_QUOTED = _quoted_characters()
_NEEDS_QUOTES = "[" + _QUOTED.replace("\n", "\\n").replace("\r", "\\r") + "]"
_EMPTY = pa.scalar("", pa.large_string())
_COMMA = pa.scalar(",", pa.large_string())
_NEWLINE = pa.scalar("\n", pa.large_string())
_UTC = pa.scalar("+00:00", pa.large_string())
# The times written here have four-digit years: 1000-01-01T00:00:00 to 9999-12-31T23:59:59, in Unix seconds.
_FIRST_SECOND, _LAST_SECOND = -30_610_224_000, 253_402_300_799


def write_csv(frame: pd.DataFrame, path: str | Path) -> None:
    """Write `frame` to `path` exactly as `frame.to_csv(path, index=False)` would, faster for large tables."""
    columns = _formattable(frame)
    if columns is None:
        frame.to_csv(path, index=False)
        return
    with open(path, "wb") as out:
        out.write((",".join(_quote_text(str(name)) for name in frame.columns) + "\n").encode("utf-8"))
        block_rows = max(1, PANDAS_BLOCK_CELLS // len(columns))
        levels = [_fraction_levels(column, block_rows) if pa.types.is_timestamp(column.type) else None
                  for column in columns]
        for start in range(0, len(frame), CHUNK_ROWS):
            texts = [_as_text(column.slice(start, CHUNK_ROWS),
                              None if level is None else level[start:start + CHUNK_ROWS])
                     for column, level in zip(columns, levels, strict=True)]
            lines = pc.binary_join_element_wise(*texts, _COMMA)  # the last argument is the separator
            out.write(_joined_bytes(pc.binary_join_element_wise(lines, _EMPTY, _NEWLINE)))


def _quote_text(text: str) -> str:
    """Return one header field as the csv module's minimal quoting writes it."""
    if any(c in text for c in _QUOTED):
        return '"' + text.replace('"', '""') + '"'
    return text


def _formattable(frame: pd.DataFrame) -> list[pa.Array] | None:
    """Return the frame's columns as Arrow arrays when every one is of a kind written exactly here, else None."""
    if frame.shape[1] < 2 or not all(isinstance(name, str) for name in frame.columns):
        return None
    if frame.columns.has_duplicates:
        return None
    arrays = []
    for name in frame.columns:
        array = _arrow_column(frame[name])
        if array is None:
            return None
        arrays.append(array)
    return arrays


def _arrow_column(series: pd.Series) -> pa.Array | None:
    """Return a column as an Arrow array of a supported type (bool, integer, text, UTC time), else None."""
    dtype = series.dtype
    if isinstance(dtype, pd.DatetimeTZDtype):
        if str(dtype.tz) != "UTC":
            return None
        array = pa.array(series, from_pandas=True)
        low, high = pc.min_max(pc.cast(array, pa.timestamp("s", tz="UTC"), safe=False).cast(pa.int64())).values()
        if low.is_valid and not (low.as_py() >= _FIRST_SECOND and high.as_py() <= _LAST_SECOND):
            return None  # years of other than four digits are left to pandas
        return array
    if isinstance(dtype, pd.CategoricalDtype):
        if not pd.api.types.is_string_dtype(dtype.categories.dtype) or not _all_of(pd.Series(dtype.categories), str):
            return None  # categories of other kinds are printed by pandas' own rules
        return pa.array(series, from_pandas=True).dictionary_decode().cast(pa.large_string())
    if pd.api.types.is_object_dtype(dtype):
        values = series.dropna()
        if len(values) and not (_all_of(values, bool) or _all_of(values, str)):
            return None
        if not len(values):
            return pa.array(np.full(len(series), None, dtype=object), type=pa.large_string())
    elif not (pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_integer_dtype(dtype)
              or pd.api.types.is_string_dtype(dtype)):
        return None
    try:
        array = pa.array(series, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None
    if pa.types.is_string(array.type):
        array = array.cast(pa.large_string())
    if not (pa.types.is_boolean(array.type) or pa.types.is_integer(array.type)
            or pa.types.is_large_string(array.type)):
        return None
    return array


def _all_of(values: pd.Series, kind: type) -> bool:
    """Return True when every value is exactly of `kind` (bools are not taken for ints nor the reverse)."""
    return bool(values.map(type).eq(kind).all())


def _as_text(array: pa.Array, levels: np.ndarray | None) -> pa.Array:
    """Return one column's cells as the text pandas writes for them, missing values as empty text.

    `levels` gives a time column's digits of a second per row (see `_fraction_levels`), None for others.
    """
    kind = array.type
    if pa.types.is_boolean(kind):
        text = pc.if_else(array, pa.scalar("True", pa.large_string()), pa.scalar("False", pa.large_string()))
    elif pa.types.is_integer(kind):
        text = pc.cast(array, pa.large_string())
    elif pa.types.is_timestamp(kind):
        assert levels is not None, "a time column is written with its digits of a second"
        text = _time_text(array, levels)
    else:
        needs_quotes = pc.match_substring_regex(array, _NEEDS_QUOTES)
        if not pc.any(needs_quotes).as_py():
            return pc.fill_null(array, _EMPTY)
        quoted = pc.binary_join_element_wise(
            pa.scalar('"', pa.large_string()), pc.replace_substring(array, '"', '""'),
            pa.scalar('"', pa.large_string()), _EMPTY)
        text = pc.if_else(pc.fill_null(needs_quotes, False), quoted, array)
    return pc.fill_null(text, _EMPTY)


_PER_SECOND = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}


def _fraction_levels(array: pa.Array, block_rows: int) -> np.ndarray:
    """Return per row how many digits of a second pandas writes a UTC time with (0, 1, 2, 3 for none, 3, 6, 9).

    Pandas gives every time of a block of `block_rows` rows the digits its finest value needs.
    """
    per_second = _PER_SECOND[array.type.unit]
    fraction = np.mod(pc.fill_null(array.cast(pa.int64()), 0).to_numpy(), per_second)
    needed = np.zeros(len(fraction), dtype=np.int8)
    for level, digits in enumerate((3, 6, 9), start=1):
        if 10**digits > per_second:
            break
        needed[fraction % (per_second // 10 ** (digits - 3)) != 0] = level  # finer than the level before
    if not len(needed):
        return needed
    starts = np.arange(0, len(needed), block_rows)
    return np.repeat(np.maximum.reduceat(needed, starts), np.diff(np.append(starts, len(needed))))


def _time_text(array: pa.Array, levels: np.ndarray) -> pa.Array:
    """Return UTC times as pandas writes them: "2027-03-28 17:27:23+00:00", with a fraction of a second of
    3, 6 or 9 digits where `levels` (one per row, from `_fraction_levels`) says 1, 2 or 3."""
    per_second = _PER_SECOND[array.type.unit]
    ticks = pc.fill_null(array.cast(pa.int64()), 0).to_numpy()
    seconds, fraction = np.divmod(ticks, per_second)
    # numpy prints times in half the CPU of Arrow's strftime: "2027-03-28T17:27:23", then made pandas' text
    iso = pa.array(np.datetime_as_string(seconds.astype("datetime64[s]"), unit="s"), pa.large_string())
    whole = pc.utf8_replace_slice(iso, 10, 11, " ")
    present = [int(level) for level in np.unique(levels)] or [0]
    texts: dict[int, pa.Array] = {}
    for level in present:
        if level == 0:
            texts[level] = pc.binary_join_element_wise(whole, _UTC, _EMPTY)
            continue
        digits = 3 * level
        scaled = fraction * 10**digits // per_second
        padded = pc.utf8_lpad(pa.array(scaled).cast(pa.large_string()), width=digits, padding="0")
        texts[level] = pc.binary_join_element_wise(whole, pa.scalar(".", pa.large_string()), padded, _UTC, _EMPTY)
    if len(present) == 1:
        text = texts[present[0]]
    else:  # rows of blocks with different digits: each row takes the text of its level
        text = pc.choose(pa.array(levels), *[texts.get(level, texts[present[0]]) for level in range(4)])
    return pc.if_else(pc.is_valid(array), text, pa.scalar(None, pa.large_string()))


def _joined_bytes(lines: pa.Array) -> memoryview:
    """Return the bytes of a large-string array's values end to end (one file chunk)."""
    if isinstance(lines, pa.ChunkedArray):
        lines = lines.combine_chunks()
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int64)[lines.offset:lines.offset + len(lines) + 1]
    data = lines.buffers()[2]
    if data is None or len(lines) == 0:
        return memoryview(b"")
    return memoryview(data)[int(offsets[0]):int(offsets[-1])]
