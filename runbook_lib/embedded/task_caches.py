"""One switch for the caches that make Batch Replication tasks cheap: on, except to measure them.

A job asks the same questions for each of its versions (the same roles, policies and replication
configuration), so `iam_eval`, `replication` and `replication_rules` keep what they read, keyed by
the very objects moto holds, and read again whatever was replaced. Turning them off makes every
task read everything from scratch, as the job runner first did; the job benchmark does that to
show, side by side, what the caches save. Nothing else should.
"""

from __future__ import annotations

__all__ = ["caches_enabled", "use_caches"]

_enabled = True


def caches_enabled() -> bool:
    """Return whether tasks may reuse what earlier tasks read."""
    return _enabled


def use_caches(enabled: bool) -> None:
    """Turn the task caches on (the default) or off; off is for measuring what they save."""
    global _enabled
    _enabled = enabled
