"""The outcome of one Batch Operations task, replication or restore, as its completion report row states it."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TaskResult"]


@dataclass(frozen=True)
class TaskResult:
    """Whether a task succeeded, and the HTTP status, error code and message its report row shows."""

    succeeded: bool
    http_status: int
    error_code: str
    message: str
