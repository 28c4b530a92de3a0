"""Which Athena calls the emulator answers: the query API; moto answers every other Athena call.

Athena speaks JSON 1.1: every call is a POST naming its operation in `X-Amz-Target`
(`AmazonAthena.StartQueryExecution`). Kept apart from `responses` so the middleware can route a
request without importing the query engine.
"""

from __future__ import annotations

from typing import Any

__all__ = ["OPERATIONS", "TARGET_PREFIX", "is_athena_query_call"]

TARGET_PREFIX = "AmazonAthena."
OPERATIONS = frozenset({
    "StartQueryExecution", "GetQueryExecution", "GetQueryResults", "StopQueryExecution",
    "ListQueryExecutions", "BatchGetQueryExecution",
})


def is_athena_query_call(environ: dict[str, Any]) -> bool:
    """Return True for an Athena call this emulator answers instead of moto."""
    target = str(environ.get("HTTP_X_AMZ_TARGET", ""))
    return target.startswith(TARGET_PREFIX) and target[len(TARGET_PREFIX):] in OPERATIONS
