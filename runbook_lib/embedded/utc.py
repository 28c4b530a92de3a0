"""Moments in UTC, whatever form moto or a client gave them in.

moto stores object times as naive datetimes in UTC, botocore parses request timestamps as aware
ones, and the wire wants ISO-8601 with a `Z`. Every module of the emulator compares and renders
moments through these functions, so a naive value is always read as UTC, never as local time.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone

__all__ = ["as_utc", "epoch_millis", "iso_millis", "iso_nanos_now", "iso_seconds", "utc_now"]


def utc_now() -> datetime:
    """Return the current moment, aware and in UTC."""
    return datetime.now(timezone.utc)


def as_utc(moment: datetime) -> datetime:
    """Return the moment aware and in UTC; a naive one is taken to be UTC already, as moto stores it."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def iso_millis(moment: datetime) -> str:
    """Return the moment as S3 and S3 Control write it: `2026-01-02T03:04:05.678Z`."""
    moment = as_utc(moment)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def iso_seconds(moment: datetime) -> str:
    """Return the moment to the second with a `Z`, as CloudTrail event times are written."""
    return as_utc(moment).strftime("%Y-%m-%dT%H:%M:%SZ")


def epoch_millis(moment: datetime) -> str:
    """Return the moment as milliseconds since the epoch, the inventory manifest's timestamp form."""
    return str(int(as_utc(moment).timestamp() * 1000))


def iso_nanos_now() -> str:
    """Return the current moment with nanoseconds, as S3 stamps a completion report's creation."""
    nanos = time.time_ns()
    moment = datetime.fromtimestamp(nanos // 1_000_000_000, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{nanos % 1_000_000_000:09d}Z"
