"""The job's speed and its extrapolation: the active time from two clocks, Poisson bounds on the rate."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import pytest

from runbook_lib.run_state import JobRecord, ProgressPoint
from runbook_lib.throughput import active_seconds_interval, extrapolate, poisson_interval

START = datetime(2026, 6, 1, 12, 0, 0, tzinfo=timezone.utc)


def point(seconds: float, status: str, done: int = 0, active: int = 0) -> ProgressPoint:
    at = (START + timedelta(seconds=seconds)).isoformat(timespec="milliseconds")
    return ProgressPoint(at=at, status=status, total=max(done, 0), succeeded=done, failed=0, active_seconds=active)


def job(points: list[ProgressPoint], tasks: int, timer: int, failed: int = 0) -> JobRecord:
    final = {"succeeded_tasks": tasks - failed, "failed_tasks": failed, "active_seconds": timer}
    return JobRecord(purpose="recovery-1", job_id="job-1", progress=points, final=final)


# Looked at every 30 s or so: Ready, then running, then done.
LONG_JOB = [point(0, "Ready"), point(30, "Active", 100), point(300, "Active", 4000), point(330, "Complete", 4500)]


# Exact 95 % Poisson bounds (chi-square quantiles / 2), from statistical tables.
@pytest.mark.parametrize(("events", "low", "high"), [(10, 4.795, 18.39), (50, 37.11, 65.92), (1000, 938.9, 1063.6)])
def test_poisson_bounds_are_within_one_percent_of_the_exact_ones(events: int, low: float, high: float) -> None:
    approximate_low, approximate_high = poisson_interval(events)
    assert approximate_low == pytest.approx(low, rel=0.01)
    assert approximate_high == pytest.approx(high, rel=0.01)


def test_no_event_has_a_zero_lower_bound() -> None:
    assert poisson_interval(0) == (0.0, pytest.approx(3.689, rel=0.01))


def test_a_long_job_is_timed_by_s3s_timer_within_a_second() -> None:
    # Looked at every 30 s: the looks bound the time loosely, the timer within a second.
    record = job(LONG_JOB, tasks=4500, timer=312)

    assert active_seconds_interval(record) == (311.0, 313.0)


def test_a_short_job_is_timed_by_the_runs_own_looks_where_they_are_closer() -> None:
    # The timer says 2 s (so 1 to 3); the looks saw it Ready at 0.0, running at 0.4 and 1.6, done at 2.1.
    record = job([point(0.0, "Ready"), point(0.4, "Active", 10), point(1.6, "Active", 40), point(2.1, "Complete", 50)],
                 tasks=50, timer=2)

    low, high = active_seconds_interval(record)  # type: ignore[misc]

    assert (low, high) == (pytest.approx(1.2), pytest.approx(2.1))


def test_the_extrapolation_scales_the_rate_to_the_whole_scope_with_its_interval() -> None:
    record = job(LONG_JOB, tasks=4500, timer=312)

    result = extrapolate(record, 90_000)

    assert result is not None
    rate = result["tasks_per_second"]
    assert rate["estimate"] == pytest.approx(4500 / 312, rel=1e-3)
    count_low, count_high = poisson_interval(4500)
    assert rate["low"] == pytest.approx(count_low / 313, rel=1e-3)
    assert rate["high"] == pytest.approx(count_high / 311, rel=1e-3)
    seconds = result["whole_scope"]["seconds"]
    assert seconds["estimate"] == pytest.approx(90_000 * 312 / 4500, rel=1e-3)
    assert seconds["low"] < seconds["estimate"] < seconds["high"]
    assert seconds["high"] == pytest.approx(90_000 / rate["low"], rel=1e-3)
    assert result["whole_scope"]["versions"] == 90_000 and result["confidence"] == 0.95
    assert "Poisson" in result["method"]


def test_a_job_too_short_for_its_clocks_has_no_upper_bound_on_its_rate() -> None:
    record = job([point(0.0, "Ready"), point(1.0, "Complete", 50)], tasks=50, timer=0)

    result = extrapolate(record, 129)

    assert result is not None
    assert result["active_seconds"] == {"estimate": 0.5, "low": 0.0, "high": 1.0}
    assert result["tasks_per_second"]["high"] is None
    assert result["tasks_per_second"]["estimate"] == 100.0
    assert result["whole_scope"]["seconds"]["low"] == 0.0
    assert result["whole_scope"]["seconds"]["high"] == pytest.approx(129 / poisson_interval(50)[0], rel=1e-2)


def test_failed_tasks_count_as_tasks_run_and_a_job_that_ran_none_has_no_speed() -> None:
    ran = job([point(0, "Ready"), point(12, "Complete", 20)], tasks=20, timer=10, failed=5)
    assert extrapolate(ran, 40)["tasks"] == 20  # type: ignore[index]
    assert extrapolate(job([point(0, "Failed")], tasks=0, timer=0), 40) is None
    assert not math.isnan(extrapolate(ran, 40)["whole_scope"]["seconds"]["estimate"])  # type: ignore[index]
