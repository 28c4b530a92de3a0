"""The columnar join engine: alignment on (key, version id), text codes, and chunk-wise takes."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from runbook_lib import columnar


def _frame(pairs: list[tuple[str | None, str | None]]) -> pd.DataFrame:
    keys, versions = zip(*pairs, strict=True) if pairs else ((), ())
    return pd.DataFrame({
        "key": pd.array(list(keys), dtype=columnar.STRING),
        "version_id": pd.array(list(versions), dtype=columnar.STRING),
    })


def _chunked(values: list[str | None], *splits: int) -> pd.Series:
    """Return a string[pyarrow] series whose arrow data is split into chunks at `splits`."""
    bounds = [0, *splits, len(values)]
    chunks = [pa.array(values[a:b], type=pa.large_string()) for a, b in itertools.pairwise(bounds)]
    return pd.Series(pd.arrays.ArrowStringArray(pa.chunked_array(chunks)))


def test_align_keeps_the_first_frames_order_and_appends_what_only_later_frames_hold() -> None:
    vault = _frame([("a", "1"), ("b", "1"), ("a", "2")])
    recovery = _frame([("c", "9"), ("a", "2")])
    aligned = columnar.align({"vault": vault, "recovery": recovery}, unique=("vault", "recovery"))
    assert list(zip(aligned["key"], aligned["version_id"], strict=True)) == [
        ("a", "1"), ("b", "1"), ("a", "2"), ("c", "9"),
    ]
    assert aligned["vault_row"].tolist() == [0, 1, 2, -1]
    assert aligned["recovery_row"].tolist() == [-1, -1, 1, 0]


def test_align_lookup_only_frame_adds_no_rows_and_its_last_row_counts() -> None:
    vault = _frame([("a", "1"), ("b", "1")])
    report = _frame([("a", "1"), ("z", "0"), ("a", "1")])
    aligned = columnar.align({"vault": vault, "report": report}, unique=("vault",), lookup_only=("report",))
    assert aligned["key"].tolist() == ["a", "b"]
    assert aligned["report_row"].tolist() == [2, -1]


def test_align_refuses_a_pair_twice_in_a_unique_frame() -> None:
    with pytest.raises(columnar.DuplicateKeyError) as raised:
        columnar.align({"vault": _frame([("a", "1"), ("a", "1")])}, unique=("vault",))
    assert raised.value.frame == "vault"


def test_align_tells_a_missing_version_id_from_the_text_null() -> None:
    aligned = columnar.align({"vault": _frame([("a", None), ("a", "null")])}, unique=("vault",))
    assert aligned["vault_row"].tolist() == [0, 1]


def test_factorize_text_codes_equal_values_alike_across_chunks_and_missing_values_alike() -> None:
    values = ["x", "", None, "y", "x", "", None, "xy"]
    codes, count = columnar.factorize_text(_chunked(values, 3, 5))
    expected, uniques = pd.factorize(pd.Series(values, dtype=object), use_na_sentinel=False)
    assert count == len(uniques)
    # Same partition of the values, whatever the numbering.
    assert len(set(zip(codes.tolist(), expected.tolist(), strict=True))) == count


@pytest.mark.parametrize("positions", [[0, 4, 5, -1], [5, 0, -1, 2, 2], [], [-1, -1]])
def test_take_values_across_chunks_matches_a_plain_take(positions: list[int]) -> None:
    values = ["a", "b", None, "d", "e", "f"]
    wanted = np.array(positions, dtype=np.int64)
    taken = columnar.take_values(_chunked(values, 2, 4).array, wanted)
    assert list(pd.Series(taken).astype(object).where(pd.Series(taken).notna(), None)) == [
        None if p < 0 else values[p] for p in positions
    ]


def test_take_reuses_rows_in_place_and_fills_the_rest_as_missing() -> None:
    frame = pd.DataFrame({"flag": [True, False], "size": pd.array([1, 2], dtype="Int64")})
    taken = columnar.take(frame, np.array([0, 1, -1]))
    assert taken["flag"].tolist() == [True, False, pd.NA]
    assert taken["size"].tolist() == [1, 2, pd.NA]
    shuffled = columnar.take(frame, np.array([1, -1, 0]))
    assert shuffled["flag"].tolist() == [False, pd.NA, True]


def test_string_buffers_are_relative_to_the_slice() -> None:
    chunk = pa.array(["ab", "", "cde", "f"], type=pa.string()).slice(1, 2)
    offsets, data = columnar.string_buffers(chunk)
    assert offsets.tolist() == [0, 0, 3]
    assert bytes(data) == b"cde"
