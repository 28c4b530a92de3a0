"""Columnar building blocks: align frames on (key, version id) and take rows from arrow-backed columns.

Verification joins up to four frames of a million rows each (two snapshots, a manifest and a
completion report) on (key, version id). A string merge in pandas would hold several copies of
every key at once; this module instead

- gives every distinct value of a text column an integer code, hashing one digest group at a time
  so arrow's hash table never holds all distinct values together (`factorize_text`);
- pairs key and version codes into one integer per (key, version id) and records, per frame, which
  of its rows holds each pair (`align`);
- takes rows chunk by chunk, so a chunked arrow column is never first copied into one (`take`,
  `take_values`), and reuses the leading rows when they are already in place;
- hands memory arrow has freed back to the system between those steps (`release_arrow_memory`).

It knows nothing of snapshots or reports: names of frames and of their columns are the caller's.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "STRING",
    "DuplicateKeyError",
    "align",
    "factorize_text",
    "pick",
    "release_arrow_memory",
    "string_buffers",
    "take",
    "take_values",
    "text",
]

# Text columns are arrow-backed strings throughout: no Python object per value.
STRING = pd.StringDtype("pyarrow")
# Digest groups for `factorize_text`; missing values get a group of their own (number _GROUPS).
_GROUPS = 64


class DuplicateKeyError(ValueError):
    """A frame `align` was told holds each (key, version id) once holds one twice; `frame` names it."""

    def __init__(self, frame: str) -> None:
        self.frame = frame
        super().__init__(f"{frame} holds a key and version id twice")


def text(column: pd.Series) -> pd.Series:
    """Return the column as string[pyarrow] (a no-op when it already is), so arrow can read it without copying."""
    return column if column.dtype == STRING else column.astype(STRING)


def release_arrow_memory() -> None:
    """Hand memory arrow has freed back to the system, so numpy's next arrays do not stack on it."""
    # Arrow's allocator keeps freed pages for reuse by arrow only; after a hashing step that
    # briefly needed hundreds of megabytes, that would raise the peak of everything after it.
    pa.default_memory_pool().release_unused()


def string_buffers(chunk: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Return a string chunk's offsets (int64, starting at 0) and UTF-8 bytes as numpy views, to work on raw bytes."""
    offset_type = np.int64 if pa.types.is_large_string(chunk.type) else np.int32
    _, offsets_buffer, data_buffer = chunk.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=offset_type)[chunk.offset : chunk.offset + len(chunk) + 1]
    offsets = offsets.astype(np.int64)
    if data_buffer is None:
        return offsets - offsets[0], np.empty(0, dtype=np.uint8)
    data = np.frombuffer(data_buffer, dtype=np.uint8)[offsets[0] : offsets[-1]]
    return offsets - offsets[0], data


# --------------------------------------------------------------------------- alignment


def align(
    frames: Mapping[str, pd.DataFrame],
    *,
    unique: Collection[str] = (),
    lookup_only: Collection[str] = (),
) -> pd.DataFrame:
    """Return one row per (key, version id) with, per frame, the row holding it (-1 if none).

    The result has `key`, `version_id` and one `<name>_row` column per frame. Rows come in order of
    first appearance, frame by frame, so the first frame's rows usually keep their positions.
    Frames named in `unique` must hold each pair once (else DuplicateKeyError); in the others the
    last row holding a pair counts (reports of several jobs concatenated oldest first). Frames named
    in `lookup_only` get a row column but add no rows of their own.
    """
    names = list(frames)
    keys = pd.concat([text(frame["key"]) for frame in frames.values()], ignore_index=True)
    versions = pd.concat([text(frame["version_id"]) for frame in frames.values()], ignore_index=True)
    pair_codes, count = _pair_codes(keys, versions)
    rows = _row_positions(frames, pair_codes, count, unique)
    del pair_codes
    release_arrow_memory()
    # Where each pair was first seen, as a position in the concatenated inputs.
    # The running total has one entry more than there are frames (the grand total), which zip drops.
    offsets = dict(zip(names, np.cumsum([0] + [len(frame) for frame in frames.values()]), strict=False))
    first = np.full(count, -1, dtype=np.int64)
    for name in reversed([name for name in names if name not in lookup_only]):
        held = rows[name] >= 0
        first[held] = offsets[name] + rows[name][held]
    universe = first >= 0
    first = first[universe]
    leading = len(frames[names[0]]) if names else 0
    aligned = pd.DataFrame({f"{name}_row": rows[name][universe] for name in names}, copy=False)
    aligned.insert(0, "key", pick(keys, first, leading))
    aligned.insert(1, "version_id", pick(versions, first, leading))
    return aligned


def _pair_codes(keys: pd.Series, versions: pd.Series) -> tuple[np.ndarray, int]:
    """Return a code per (key, version id), numbered in order of first appearance, and their count."""
    # Hashing each column once and then pairs of integer codes is far cheaper than a string merge.
    key_codes, _ = factorize_text(keys)
    version_codes, version_count = factorize_text(versions)
    # Built in place: these arrays are as long as all inputs together.
    pairs = key_codes
    pairs *= version_count
    pairs += version_codes
    del key_codes, version_codes
    codes, uniques = pd.factorize(pairs)
    return codes, len(uniques)


def _row_positions(
    frames: Mapping[str, pd.DataFrame], pair_codes: np.ndarray, count: int, unique: Collection[str]
) -> dict[str, np.ndarray]:
    """Return, per frame, the row holding each pair code, or -1."""
    rows: dict[str, np.ndarray] = {}
    start = 0
    for name, frame in frames.items():
        codes = pair_codes[start : start + len(frame)]
        start += len(frame)
        position = np.full(count, -1, dtype=np.int64)
        if name in unique:
            if (np.bincount(codes, minlength=count) > 1).any():
                raise DuplicateKeyError(name)
            position[codes] = np.arange(len(frame))
        else:
            np.maximum.at(position, codes, np.arange(len(frame), dtype=np.int64))
        rows[name] = position
    return rows


def factorize_text(values: pd.Series) -> tuple[np.ndarray, int]:
    """Return an int64 code per value (equal exactly when the values are, missing included) and the count."""
    column = pa.array(values.array)
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    # Arrow's hash table takes a few hundred bytes per distinct value, so a million distinct
    # version ids would briefly cost hundreds of megabytes. Values are split into groups by a
    # cheap digest of their bytes and each group is encoded on its own: equal values always
    # land in the same group.
    starts = np.cumsum([0] + [len(chunk) for chunk in chunks])
    groups = []
    for chunk in chunks:
        group = _digest(chunk)
        order = np.argsort(group, kind="stable")
        bounds = np.concatenate([[0], np.cumsum(np.bincount(group, minlength=_GROUPS + 1))])
        groups.append((order, bounds))
    codes = np.empty(starts[-1], dtype=np.int64)
    count = 0
    for number in range(_GROUPS + 1):
        rows = [
            start + order[bounds[number] : bounds[number + 1]]
            for start, (order, bounds) in zip(starts[:-1], groups, strict=True)
            if bounds[number + 1] > bounds[number]
        ]
        if not rows:
            continue
        pieces = [
            chunk.take(pa.array(order[bounds[number] : bounds[number + 1]]))
            for chunk, (order, bounds) in zip(chunks, groups, strict=True)
            if bounds[number + 1] > bounds[number]
        ]
        # One encoding over the group's pieces from every chunk shares one dictionary.
        encoded = pc.dictionary_encode(pa.chunked_array(pieces, type=column.type), null_encoding="encode")
        indices = np.concatenate([piece.indices.to_numpy(zero_copy_only=False) for piece in encoded.chunks])
        codes[np.concatenate(rows)] = indices + count
        count += len(encoded.chunks[-1].dictionary)
    release_arrow_memory()
    return codes, count


def _digest(chunk: pa.Array) -> np.ndarray:
    """Return a group number per value, from its length and byte sum; missing values get _GROUPS."""
    offsets, data = string_buffers(chunk)
    lengths = np.diff(offsets)
    sums = np.zeros(len(chunk), dtype=np.int64)
    filled = np.flatnonzero(lengths > 0)
    if filled.size:
        # Empty values between two filled ones add no bytes, so each sum covers exactly one value.
        sums[filled] = np.add.reduceat(data, offsets[filled], dtype=np.int64)
    group = ((sums * 40503 + lengths) % _GROUPS).astype(np.int16)
    if chunk.null_count:
        group[chunk.is_null().to_numpy(zero_copy_only=False)] = _GROUPS
    return group


# --------------------------------------------------------------------------- taking rows


def pick(column: pd.Series, positions: np.ndarray, leading: int) -> pd.api.extensions.ExtensionArray:
    """Return column values at `positions`, sharing memory when the first `leading` are 0, 1, 2, ..."""
    if (positions[:leading] == np.arange(leading)).all():
        rest = pd.Series(take_values(column.array, positions[leading:]))
        return pd.concat([column.iloc[:leading], rest], ignore_index=True).array
    return take_values(column.array, positions)


def take_values(values: Any, positions: np.ndarray) -> Any:
    """Return values[positions], missing where a position is -1, without joining arrow chunks first."""
    if not isinstance(values, pd.arrays.ArrowExtensionArray | pd.arrays.ArrowStringArray):
        return values.take(positions, allow_fill=True)
    arrow = pa.array(values)
    chunks = arrow.chunks if isinstance(arrow, pa.ChunkedArray) else [arrow]
    if len(chunks) <= 1:
        return values.take(positions, allow_fill=True)
    # Arrow's take on a chunked column first copies every chunk into one; taking chunk by chunk
    # only ever copies what is taken.
    starts = np.cumsum([0] + [len(chunk) for chunk in chunks])
    owner = np.where(positions < 0, -1, np.searchsorted(starts, positions, side="right") - 1)
    order = np.argsort(owner, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(owner + 1, minlength=len(chunks) + 1))])
    pieces = [pa.nulls(bounds[1], chunks[0].type)]
    for number, chunk in enumerate(chunks):
        local = positions[order[bounds[number + 1] : bounds[number + 2]]] - starts[number]
        pieces.append(chunk.take(pa.array(local)))
    if not len(order) or (order[1:] > order[:-1]).all():
        # Already in the wanted order (the usual case: both listings are sorted by key).
        return type(values)(pa.chunked_array(pieces, type=chunks[0].type))
    back = np.empty_like(order)
    back[order] = np.arange(len(order))
    return type(values)(pa.concat_arrays(pieces).take(pa.array(back)))


def take(frame: pd.DataFrame, positions: np.ndarray) -> pd.DataFrame:
    """Return the frame's rows at `positions`, with missing values where the position is -1."""
    absent = positions < 0
    # The first frame of an alignment usually keeps its rows in place: reuse them.
    in_place = len(frame) <= len(positions) and bool(
        (positions[: len(frame)] == np.arange(len(frame))).all() and absent[len(frame) :].all()
    )
    taken: dict[str, Any] = {}
    for name in frame.columns:
        column = frame[name]
        if column.dtype == np.bool_:
            values = column.to_numpy()
            if in_place:
                picked = np.concatenate([values, absent[len(frame) :]])
            else:
                picked = values[np.where(absent, 0, positions)]
            taken[name] = pd.arrays.BooleanArray(picked, absent.copy())
        elif in_place:
            tail = column.array.take(np.full(len(positions) - len(frame), -1), allow_fill=True)
            taken[name] = pd.concat([column, pd.Series(tail)], ignore_index=True).array
        else:
            taken[name] = take_values(column.array, positions)
    return pd.DataFrame(taken, copy=False)
