"""The comparison's SQL: one text in Athena's dialect (Trino), filled in for a scope, translated for DuckDB.

`sql/compare_versions.sql` computes, per object version, every check and category of
`runbook_lib.verify` from two S3 Inventory reports, the manifest and the completion report;
`sql/count_versions.sql` sums them into verify's counts. The texts name their inputs in braces:
table expressions (`{vault_inventory}`, ...) that each engine binds to its own tables, and the
scope's values, rendered here as SQL literals (never pasted as raw text), with the very reason
sentences `scope.JobScope.reasons` gives, so both methods explain a version the same way.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from importlib import resources
from typing import Any

import sqlglot

from runbook_lib.aws_facts import REPLICATION_STATUS_FAILED, REPLICATION_STATUS_REPLICA
from runbook_lib.scope import AFTER_AS_OF, ARCHIVED, STATUS_UNREADABLE, JobScope

__all__ = ["TABLES", "compare_sql", "count_sql", "literal", "to_duckdb"]

_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")
# The table expressions each engine binds.
TABLES = ("vault_inventory", "recovery_inventory", "manifest", "report", "sample")


def _text(name: str) -> str:
    """Return one of the package's SQL texts without its comment lines."""
    text = resources.files("runbook_lib").joinpath("sql", name).read_text()
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))


def literal(value: Any) -> str:
    """Return a value as a Trino literal: text quoted (quotes doubled), times as TIMESTAMP, None as NULL."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        moment = value.astimezone(timezone.utc).replace(tzinfo=None)
        return "TIMESTAMP '" + moment.isoformat(sep=" ", timespec="milliseconds") + "'"
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _scope_values(scope: JobScope) -> dict[str, str]:
    """Return the scope's placeholders as literals, reasons worded as JobScope.reasons words them."""
    statuses = sorted(scope.replication_statuses)
    values: dict[str, Any] = {
        "has_window": scope.created_after is not None or scope.created_before is not None,
        "has_after": scope.created_after is not None,
        "created_after": scope.created_after,
        "reason_after": f"created before {_iso(scope.created_after)}" if scope.created_after else "",
        "has_before": scope.created_before is not None,
        "created_before": scope.created_before,
        "reason_before": (f"{AFTER_AS_OF if scope.as_of is not None else 'created at or after'} "
                          f"{_iso(scope.created_before)}") if scope.created_before else "",
        "has_as_of": scope.as_of is not None,
        "reason_as_of": AFTER_AS_OF,
        "include_archived": scope.include_archived,
        "reason_archived": ARCHIVED,
        "has_prefix": scope.key_prefix is not None,
        "key_prefix": scope.key_prefix,
        "reason_prefix": f"key does not start with {scope.key_prefix!r}",
        "has_suffix": scope.key_suffix is not None,
        "key_suffix": scope.key_suffix,
        "reason_suffix": f"key does not end with {scope.key_suffix!r}",
        "has_substring": scope.key_substring is not None,
        "key_substring": scope.key_substring,
        "reason_substring": f"key does not contain {scope.key_substring!r}",
        "reason_unreadable": STATUS_UNREADABLE,
        "reason_status": "replication status not in " + "/".join(statuses),
        "failed_replica_possible": REPLICATION_STATUS_REPLICA in scope.replication_statuses
        and REPLICATION_STATUS_FAILED not in scope.replication_statuses,
    }
    rendered = {name: literal(value) for name, value in values.items()}
    rendered["statuses"] = ", ".join(literal(status) for status in statuses)
    return rendered


def _fill(text: str, values: dict[str, str]) -> str:
    """Fill every {name} in one pass, so a value (a key prefix, say) is never read as a placeholder."""

    def value(match: re.Match[str]) -> str:
        if match.group(1) not in values:
            raise ValueError(f"the comparison SQL has a placeholder nobody filled: {match.group(0)}")
        return values[match.group(1)]

    return _PLACEHOLDER.sub(value, text)


def compare_sql(scope: JobScope, tables: dict[str, str], has_sample: bool = False) -> str:
    """Return the per-version comparison in Athena's SQL, for this scope and these table expressions.

    With `has_sample` (a sample drill) only the versions the `sample` table lists are expected.
    """
    if set(tables) != set(TABLES):
        raise ValueError(f"compare_sql needs table expressions for exactly {', '.join(TABLES)}")
    return _fill(_text("compare_versions.sql"), {**tables, **_scope_values(scope), "has_sample": literal(has_sample)})


def count_sql(details: str) -> str:
    """Return the summary counts in Athena's SQL over `details`, a query giving compare_sql's rows.

    The counts read nothing else, so they can sum a comparison already written (DuckDB, slice by
    slice) or compute it in the same statement (Athena, `count_sql(compare_sql(...))`).
    """
    return _fill(_text("count_versions.sql"), {"details": details})


def to_duckdb(text: str) -> str:
    """Return Athena SQL translated to DuckDB's dialect."""
    return str(sqlglot.transpile(text, read="athena", write="duckdb")[0])
