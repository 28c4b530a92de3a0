"""Faults the embedded backend injects on request: failed tasks, throttled requests, latency.

Kept apart from the server so the middleware (throttling, latency) and the Batch Operations job
runner (failed tasks) both read the same settings without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass

from runbook_lib.errors import BackendError

__all__ = ["Faults"]


@dataclass(frozen=True)
class Faults:
    """Faults the backend injects on request, deterministic for a given `seed`."""

    task_failure_rate: float = 0.0
    throttle_rate: float = 0.0
    latency_ms: float = 0.0
    seed: int = 0
    # Vault buckets whose every replication task fails, first attempt and retries alike: a bucket
    # whose copies cannot be written (its job completes with failed tasks, which no retry fixes).
    fail_buckets: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("task_failure_rate", "throttle_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise BackendError(f"fault {name} must be between 0 and 1, got {value}")
        if self.latency_ms < 0:
            raise BackendError(f"fault latency_ms must be >= 0, got {self.latency_ms}")
