"""The Arrow CSV writer of detail tables writes the same bytes as DataFrame.to_csv, for every kind of column."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from runbook_lib import csv_writer

AWKWARD = ["plain", "with,comma", 'with "quotes"', "line\nfeed", "carriage\rreturn", " leading space",
           "trailing space ", "tab\there", "é unicode ✓", "", "semi;colon", "'single'", '"', ",", "#hash"]


def _frame(rows: int, seed: int = 7) -> pd.DataFrame:
    rng = random.Random(seed)
    text = pd.array([rng.choice([*AWKWARD, None]) for _ in range(rows)], dtype="string")
    times = pd.to_datetime([rng.choice([0, 1_700_000_000, 4_102_444_799, None]) for _ in range(rows)],
                           unit="s", utc=True).as_unit("ms")
    return pd.DataFrame({
        "key": text,
        "version_id": pd.array([f"v{rng.getrandbits(64):x}" for _ in range(rows)], dtype="string"),
        "flag": np.array([rng.random() < 0.5 for _ in range(rows)], dtype=bool),
        "maybe_flag": pd.Series([rng.choice([True, False, None]) for _ in range(rows)], dtype=object),
        "size": pd.array([rng.choice([0, 1, -5, 2**40, None]) for _ in range(rows)], dtype="Int64"),
        "status": pd.array([rng.choice([200, 403, None]) for _ in range(rows)], dtype="Int32"),
        "count": np.arange(rows, dtype=np.int64),
        "retain_until": times,
        "modified_ms": times + pd.to_timedelta([rng.choice([0, 250, 999]) for _ in range(rows)], unit="ms"),
        "modified_ns": (times.as_unit("ns") + pd.to_timedelta([rng.choice([0, 1_500, 7]) for _ in range(rows)],
                                                             unit="us")),
        "whole_ns": times.as_unit("ns"),
        "note": pd.Series([rng.choice([*AWKWARD, None]) for _ in range(rows)], dtype=object),
        "category": pd.Series([rng.choice(["recovered_identical", "with,comma", ""]) for _ in range(rows)],
                              dtype="category"),
        'odd,"name"': pd.array(["x"] * rows, dtype="string"),
    })


def _both(frame: pd.DataFrame, tmp_path: Path) -> tuple[bytes, bytes]:
    expected, written = tmp_path / "pandas.csv", tmp_path / "arrow.csv"
    frame.to_csv(expected, index=False)
    csv_writer.write_csv(frame, written)
    return expected.read_bytes(), written.read_bytes()


def test_every_supported_kind_is_written_as_pandas_writes_it(tmp_path: Path) -> None:
    frame = _frame(3_000)
    assert csv_writer._formattable(frame) is not None  # the fast path is the one under test
    expected, written = _both(frame, tmp_path)
    assert written == expected
    assert b'"with,comma"' in written and b'"with ""quotes"""' in written and b"+00:00" in written
    assert b".250+00:00" in written and b".001500+00:00" in written  # a column's finest value sets its digits


def test_chunks_join_into_one_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(csv_writer, "CHUNK_ROWS", 7)
    expected, written = _both(_frame(100, seed=3), tmp_path)
    assert written == expected


@pytest.mark.parametrize(("values", "unit"), [
    (["2026-01-01 00:00:00", "2026-01-02 10:00:00"], "ns"),
    (["2026-01-01 00:00:00.5", "2026-01-02 10:00:00"], "ns"),
    (["2026-01-01 00:00:00.000001", None], "us"),
    (["1969-12-31 23:59:59.999", "1960-01-01 00:00:00"], "ms"),
    (["2026-01-01 00:00:00.123456789", None], "ns"),
])
def test_times_have_as_many_digits_of_a_second_as_pandas_gives_them(values: list[Any], unit: str,
                                                                      tmp_path: Path) -> None:
    times = pd.Series(pd.to_datetime(values, utc=True, format="ISO8601")).dt.as_unit(unit)
    frame = pd.DataFrame({"when": times, "n": range(len(values))})
    assert csv_writer._formattable(frame) is not None
    expected, written = _both(frame, tmp_path)
    assert written == expected


def test_empty_and_all_missing_columns(tmp_path: Path) -> None:
    frame = _frame(10).iloc[:0]
    assert _both(frame, tmp_path)[1] == _both(frame, tmp_path)[0]
    missing = pd.DataFrame({"key": pd.array(["a", "b"], dtype="string"),
                            "nothing": pd.Series([None, None], dtype=object)})
    expected, written = _both(missing, tmp_path)
    assert written == expected == b"key,nothing\na,\nb,\n"


@pytest.mark.parametrize("column", [
    pd.Series([1.5, None, 3.0]),  # floats: pandas' own number formatting
    pd.Series(pd.to_datetime(["2026-01-01", "2026-01-02", None])),  # naive times
    pd.Series(pd.to_datetime(["2026-01-01", None, None]).tz_localize("Europe/Paris")),
    pd.Series([pd.Timestamp("0999-01-01", tz="UTC"), None, None]).astype("datetime64[s, UTC]"),
    pd.Series([1, "a", None], dtype=object),  # mixed objects
    pd.Series([1, 2, 1], dtype="category"),  # categories that are not text
])
def test_other_kinds_are_left_to_pandas(column: pd.Series, tmp_path: Path) -> None:
    frame = pd.DataFrame({"key": pd.array(["a", "b,c", None], dtype="string"), "value": column})
    assert csv_writer._formattable(frame) is None
    expected, written = _both(frame, tmp_path)
    assert written == expected


def test_a_single_column_is_left_to_pandas(tmp_path: Path) -> None:
    frame = pd.DataFrame({"key": pd.array(["a", "", None], dtype="string")})  # pandas quotes a lone empty field
    assert csv_writer._formattable(frame) is None
    expected, written = _both(frame, tmp_path)
    assert written == expected


def test_time_digits_follow_the_rows_pandas_formats_together(tmp_path: Path) -> None:
    # to_csv formats 100,000 cells at a time: with 500 columns a block is 200 rows, and a time written
    # with a fraction in one block does not give the fraction to the times of another block.
    rows, columns = 450, 500
    times = pd.Series(pd.to_datetime(np.arange(rows), unit="s", utc=True)).dt.as_unit("ms")
    times[250] += pd.Timedelta(milliseconds=250)  # only the second block needs digits of a second
    numbers = pd.DataFrame(np.zeros((rows, columns - 1), dtype=np.int64), columns=[f"n{i}" for i in range(columns - 1)])
    frame = pd.concat([pd.DataFrame({"when": times}), numbers], axis=1)
    assert csv_writer._formattable(frame) is not None
    expected, written = _both(frame, tmp_path)
    lines = written.split(b"\n")
    assert lines[1].startswith(b"1970-01-01 00:00:00+00:00,")
    assert lines[201].startswith(b"1970-01-01 00:03:20.000+00:00,")
    assert lines[401].startswith(b"1970-01-01 00:06:40+00:00,")
    assert written == expected
