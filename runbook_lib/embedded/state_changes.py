"""A count of the requests that may have changed the embedded backend's state.

A Batch Replication job reads the same roles, policies, keys and buckets for each of its tasks;
`replication` keeps what it read for as long as this count has not moved. The server counts every
request that is not a read (any method but GET and HEAD: IAM, KMS and STS read with POST too, which
only costs a job a fresh look) once when it arrives and once when it has been answered, so a
change made through the API is seen by the first task that starts after the answer.
"""

from __future__ import annotations

import threading

__all__ = ["generation", "note_change"]

_lock = threading.Lock()
_generation = 0


def generation() -> int:
    """Return the current count: equal counts mean no request that may change state came in between."""
    return _generation


def note_change() -> None:
    """Count a request that may change the backend's state (call it before and after serving it)."""
    global _generation
    with _lock:
        _generation += 1
