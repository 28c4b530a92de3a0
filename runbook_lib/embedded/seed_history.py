"""When the seeded vault's versions were created: a fixed history, so a drill can recover as of any time in it.

The seeder draws each key's versions at random intervals; this module then places every version in
one fixed stretch of time, keeping each key's order, so a user can pick a point in time before
starting a drill (`runbook drill --as-of`) and the ground truth says what that time selects.

Any moment from `AS_OF_EARLIEST` to `AS_OF_LATEST` (the history less a day at each end) has, on
each side, object versions, delete markers, and keys whose current version is later: three keys
are placed at the edges for that. The first key deleted in the vault has its whole history in the
first day (a delete marker before any such moment); the second has its first version in the first
day and its later versions, its delete marker last, in the last day; one key that is never deleted
has its first version in the first day and the rest in the last day (its current version is later
than any such moment, and an older one is recovered). Every other version is spread, in its key's
order, over the times in between.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from runbook_lib.embedded import moto_state

__all__ = ["AS_OF_EARLIEST", "AS_OF_LATEST", "HISTORY_END", "HISTORY_START", "place_in_history"]

HISTORY_START = datetime(2024, 1, 1, tzinfo=timezone.utc)
HISTORY_END = datetime(2025, 12, 31, tzinfo=timezone.utc)
_EDGE = timedelta(days=1)
AS_OF_EARLIEST = HISTORY_START + _EDGE
AS_OF_LATEST = HISTORY_END - _EDGE
_STEP = timedelta(minutes=10)


def place_in_history(written: Sequence[tuple[str, Any, str]], recover: str) -> None:
    """Give every seeded version (key, stored version, outcome) its creation time in the fixed history.

    `recover` is the outcome of a version a recovery brings back; the key whose current version is
    placed last is chosen among keys whose first and last versions have it.
    """
    by_key: dict[str, list[tuple[Any, str]]] = {}
    for name, stored, outcome in written:
        by_key.setdefault(name, []).append((stored, outcome))
    deleted = [name for name, versions in by_key.items()
               if len(versions) >= 2 and moto_state.is_delete_marker(versions[-1][0])]
    kept = [name for name, versions in by_key.items()
            if len(versions) >= 2 and not moto_state.is_delete_marker(versions[-1][0])]
    if len(deleted) < 2 or not kept:
        raise ValueError("the seeded vault needs two deleted keys and one kept key with two versions or more")
    recoverable = [name for name in kept if by_key[name][0][1] == recover and by_key[name][-1][1] == recover]
    early_deleted, late_deleted, late_kept = deleted[0], deleted[1], (recoverable or kept)[0]

    edges = {early_deleted, late_deleted, late_kept}
    _spread([stored for name, versions in by_key.items() if name not in edges for stored, _ in versions], by_key, edges)
    _set_times([stored for stored, _ in by_key[early_deleted]], HISTORY_START)
    for offset, name in ((timedelta(hours=12), late_deleted), (timedelta(hours=13), late_kept)):
        first, *rest = [stored for stored, _ in by_key[name]]
        _set_times([first], HISTORY_START + offset)
        _set_times(rest, AS_OF_LATEST + offset)


def _spread(versions: list[Any], by_key: dict[str, list[tuple[Any, str]]], edges: set[str]) -> None:
    """Map the drawn times linearly onto AS_OF_EARLIEST..AS_OF_LATEST, each key's versions a second apart at least."""
    drawn = [stored.last_modified for stored in versions]
    low, high = min(drawn), max(drawn)
    span = (high - low).total_seconds() or 1.0
    width = (AS_OF_LATEST - AS_OF_EARLIEST).total_seconds()
    for stored, moment in zip(versions, drawn, strict=True):
        seconds = round((moment - low).total_seconds() / span * width)
        stored.last_modified = _naive(AS_OF_EARLIEST + timedelta(seconds=seconds))
    for name, entries in by_key.items():
        if name in edges:
            continue
        previous: datetime | None = None
        for stored, _ in entries:
            if previous is not None and stored.last_modified <= previous:
                stored.last_modified = previous + timedelta(seconds=1)
            previous = stored.last_modified


def _set_times(versions: list[Any], start: datetime) -> None:
    """Give versions of one key consecutive times ten minutes apart from `start`."""
    for index, stored in enumerate(versions):
        stored.last_modified = _naive(start + index * _STEP)


def _naive(moment: datetime) -> datetime:
    """Return a UTC moment as moto stores it (naive, in UTC)."""
    return moment.astimezone(timezone.utc).replace(tzinfo=None, microsecond=0)
