"""The job's scope: which vault versions this recovery copies, defined once for every step that needs it.

The Batch Replication job asks S3 to generate its manifest with a filter; verification decides
which versions must be in the recovery bucket; the retry round decides which versions it may copy
again; phase 00 and the evidence say in words what is recovered. All four read this one
definition, so a version the operator left out (created after the point in time, outside the key
constraint, of another replication status) is never expected, never retried and never copied.

A version is in scope when every one of these holds:

- it is an object version, not a delete marker (the replication rule does not replicate markers);
- its storage class is not archived (GLACIER and DEEP_ARCHIVE must be restored before Batch
  Replication can copy them), unless the run restores archived versions first
  (`restore.archived`, `include_archived` here): then they are in scope like any other;
- it was created at or after `created_after` and before `created_before` (a half-open window, as
  the embedded backend applies S3's `CreatedAfter` / `CreatedBefore`; "created" is the version's
  last-modified time, which a replica keeps from its source); a point in time to recover
  (`as_of`, the parameter `recover_as_of`) is the window's `created_before`, and a version created
  at or after it is "after the point in time" (verification's `after_as_of`);
- its key starts with `key_prefix`, ends with `key_suffix` and contains `key_substring`, where
  given (S3's `KeyNameConstraint`; each list takes one string);
- its replication status is one of `replication_statuses` ("NONE" when it has none).

A failed task changes a replica's status from REPLICA to FAILED; verification keeps such a version
expected only when a completion report of this run shows its failed task (see `verify`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pandas as pd

from runbook_lib.aws_facts import ARCHIVED_STORAGE_CLASSES, REPLICATION_STATUS_FILTERS
from runbook_lib.errors import ScopeError

__all__ = [
    "AFTER_AS_OF",
    "ARCHIVED",
    "IN_SCOPE",
    "STATUS_UNREADABLE",
    "JobScope",
    "scope_from_params",
]

# The reason given for a version that is in scope.
IN_SCOPE = ""
# How the reason given for a version created at or after the point in time begins.
AFTER_AS_OF = "created at or after the point in time"
# The reason given for an archived version that is otherwise in scope, when the run does not restore it.
ARCHIVED = "archived (needs a restore first)"
# The reason given for a version whose replication status could not be read (its HEAD failed).
STATUS_UNREADABLE = "replication status unreadable"


@dataclass(frozen=True)
class JobScope:
    """The versions one recovery copies: replication statuses, creation window and key constraints."""

    replication_statuses: tuple[str, ...]
    created_after: datetime | None = None
    created_before: datetime | None = None
    key_prefix: str | None = None
    key_suffix: str | None = None
    key_substring: str | None = None
    # The point in time to recover: the effective created_before, named as such in words and reasons.
    as_of: datetime | None = None
    include_archived: bool = False

    def __post_init__(self) -> None:
        # Kept in the order given: the job request shows them as the operator wrote them.
        statuses = tuple(dict.fromkeys(str(status) for status in self.replication_statuses))
        if not statuses or not set(statuses) <= set(REPLICATION_STATUS_FILTERS):
            raise ValueError(
                f"replication_statuses must be a non-empty subset of {', '.join(REPLICATION_STATUS_FILTERS)}, "
                f"not {list(statuses)}"
            )
        object.__setattr__(self, "replication_statuses", statuses)
        for name in ("created_after", "created_before", "as_of"):
            moment = getattr(self, name)
            if moment is not None:
                if moment.utcoffset() is None:
                    raise ValueError(f"{name} must carry a timezone")
                object.__setattr__(self, name, moment.astimezone(timezone.utc))
        if self.as_of is not None:
            if self.created_before not in (None, self.as_of):
                raise ValueError("created_before must be None or equal to as_of: the point in time is the "
                                 "scope's created_before")
            object.__setattr__(self, "created_before", self.as_of)

    # ------------------------------------------------------------------ the job request

    def manifest_filter(self) -> dict[str, Any]:
        """Return the manifest generator's Filter that selects exactly this scope."""
        filters: dict[str, Any] = {
            "EligibleForReplication": True,
            "ObjectReplicationStatuses": list(self.replication_statuses),
        }
        if self.created_after is not None:
            filters["CreatedAfter"] = self.created_after
        if self.created_before is not None:
            filters["CreatedBefore"] = self.created_before
        constraint = {
            name: [value]
            for name, value in (
                ("MatchAnyPrefix", self.key_prefix),
                ("MatchAnySuffix", self.key_suffix),
                ("MatchAnySubstring", self.key_substring),
            )
            if value is not None
        }
        if constraint:
            filters["KeyNameConstraint"] = constraint
        return filters

    # ------------------------------------------------------------------ in words

    def describe(self) -> str:
        """Return the scope as one sentence an operator can check against the incident."""
        statuses = " or ".join(sorted(self.replication_statuses))
        parts = ["object versions (not delete markers, archived ones in GLACIER or DEEP_ARCHIVE once restored)"
                 if self.include_archived else
                 "object versions (not delete markers, not archived in GLACIER or DEEP_ARCHIVE)"]
        if self.created_after is not None:
            parts.append(f"created at or after {_iso(self.created_after)}")
        if self.as_of is not None:
            parts.append(f"created before the point in time {_iso(self.as_of)}")
        elif self.created_before is not None:
            parts.append(f"created before {_iso(self.created_before)}")
        keys = [
            f"{what} {value!r}"
            for what, value in (
                ("starts with", self.key_prefix),
                ("ends with", self.key_suffix),
                ("contains", self.key_substring),
            )
            if value is not None
        ]
        if keys:
            parts.append("whose key " + " and ".join(keys))
        parts.append(f"with replication status {statuses}")
        return ", ".join(parts)

    def as_record(self) -> dict[str, Any]:
        """Return the scope as JSON-ready values for the run state and summary.json."""
        return {
            "description": self.describe(),
            "replication_statuses": sorted(self.replication_statuses),
            "created_after": _iso(self.created_after) if self.created_after else None,
            "created_before": _iso(self.created_before) if self.created_before else None,
            "as_of": _iso(self.as_of) if self.as_of else None,
            "key_prefix": self.key_prefix,
            "key_suffix": self.key_suffix,
            "key_substring": self.key_substring,
            "include_archived": self.include_archived,
        }

    # ------------------------------------------------------------------ per version

    def reasons(self, versions: pd.DataFrame) -> pd.Series:
        """Return, per snapshot row, why it is outside the scope ("" when it is inside).

        Needs the snapshot columns key, is_delete_marker, storage_class, replication_status and
        (with a creation window) last_modified. The first reason that applies is given; being
        archived comes last, so ARCHIVED marks exactly the archived versions that are otherwise in
        scope (the ones a restore would bring into it).
        """
        reason = np.full(len(versions), IN_SCOPE, dtype=object)

        def mark(outside: np.ndarray, why: str) -> None:
            reason[(reason == IN_SCOPE) & outside] = why

        mark(_true(versions["is_delete_marker"]), "delete marker (not replicated)")
        if self.created_after is not None or self.created_before is not None:
            created = pd.to_datetime(versions["last_modified"], utc=True)
            unknown_time = created.isna().to_numpy()
            mark(unknown_time, "creation time unknown")
            if self.created_after is not None:
                mark((created < pd.Timestamp(self.created_after)).fillna(False).to_numpy(bool),
                     f"created before {_iso(self.created_after)}")
            if self.created_before is not None:
                after = AFTER_AS_OF if self.as_of is not None else "created at or after"
                mark((created >= pd.Timestamp(self.created_before)).fillna(False).to_numpy(bool),
                     f"{after} {_iso(self.created_before)}")
        keys = versions["key"].astype("string")
        if self.key_prefix is not None:
            mark(~_true(keys.str.startswith(self.key_prefix)), f"key does not start with {self.key_prefix!r}")
        if self.key_suffix is not None:
            mark(~_true(keys.str.endswith(self.key_suffix)), f"key does not end with {self.key_suffix!r}")
        if self.key_substring is not None:
            mark(~_true(keys.str.contains(self.key_substring, regex=False)),
                 f"key does not contain {self.key_substring!r}")
        statuses = versions["replication_status"].astype("string").fillna("NONE").str.upper()
        mark(_isin(statuses, ("UNKNOWN",)), STATUS_UNREADABLE)
        mark(~_isin(statuses, self.replication_statuses),
             "replication status not in " + "/".join(sorted(self.replication_statuses)))
        if not self.include_archived:
            mark(self.archived(versions), ARCHIVED)
        return pd.Series(reason, index=versions.index, dtype=object)

    @staticmethod
    def archived(versions: pd.DataFrame) -> np.ndarray:
        """Return where a snapshot row is an object version in an archived storage class."""
        storage = versions["storage_class"].astype("string").str.upper()
        return np.asarray(_isin(storage, ARCHIVED_STORAGE_CLASSES) & ~_true(versions["is_delete_marker"]), dtype=bool)

    def listed_in_scope(self, key: str, last_modified: datetime | None, storage_class: str | None) -> bool:
        """Return whether a listed version passes every part of the scope that a listing can tell."""
        if not self.include_archived and (storage_class or "STANDARD").upper() in ARCHIVED_STORAGE_CLASSES:
            return False
        if self.created_after is not None or self.created_before is not None:
            if last_modified is None:
                return False
            created = last_modified.astimezone(timezone.utc)
            if self.created_after is not None and created < self.created_after:
                return False
            if self.created_before is not None and created >= self.created_before:
                return False
        return _key_matches(self, key)

    def check_retry(self, candidates: pd.DataFrame, vault: pd.DataFrame) -> None:
        """Raise ScopeError when a version about to be copied again is not in scope in the vault."""
        if candidates.empty:
            return
        reasons = self.reasons(vault)
        statuses = vault["replication_status"].astype("string").fillna("NONE").str.upper()
        # A replica whose failed task turned it FAILED stays in scope for its retry.
        failed_replica = (statuses == "FAILED").to_numpy(bool) & ("REPLICA" in self.replication_statuses)
        allowed_rows = (reasons == IN_SCOPE).to_numpy(bool) | (
            failed_replica & reasons.str.startswith("replication status").to_numpy(bool))
        allowed = set(zip(vault["key"].astype(str)[allowed_rows], vault["version_id"].astype(str)[allowed_rows],
                          strict=True))
        outside = [
            f"{key} ({version_id})"
            for key, version_id in zip(candidates["key"].astype(str), candidates["version_id"].astype(str), strict=True)
            if (key, version_id) not in allowed
        ]
        if outside:
            shown = ", ".join(outside[:5]) + (f" and {len(outside) - 5} more" if len(outside) > 5 else "")
            raise ScopeError(
                f"the retry manifest lists {len(outside)} version(s) outside the job's scope ({self.describe()}): "
                f"{shown}. Nothing was copied; this is a defect of the runbook, please report it."
            )


def scope_from_params(params: Any) -> JobScope:
    """Return the scope the parameters define: `job`, as of `recover_as_of`, archived in with `restore.archived`."""
    job, as_of, restore = params.job, params.recover_as_of, params.restore
    return JobScope(
        include_archived=bool(restore is not None and restore.archived),
        replication_statuses=tuple(job.replication_statuses),
        created_after=job.created_after,
        created_before=job.created_before,
        as_of=as_of,
        key_prefix=job.key_prefix,
        key_suffix=job.key_suffix,
        key_substring=job.key_substring,
    )


def _key_matches(scope: JobScope, key: str) -> bool:
    """Return whether a key satisfies the scope's key constraints."""
    return (
        (scope.key_prefix is None or key.startswith(scope.key_prefix))
        and (scope.key_suffix is None or key.endswith(scope.key_suffix))
        and (scope.key_substring is None or scope.key_substring in key)
    )


def _iso(moment: datetime) -> str:
    """Return a UTC time as ISO 8601 with a Z, to the second."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _true(column: pd.Series) -> np.ndarray:
    """Return a boolean column as a numpy array, missing values as False."""
    return np.asarray(column.astype("boolean").fillna(False).to_numpy(bool), dtype=bool)


def _isin(column: pd.Series, wanted: Iterable[str]) -> np.ndarray:
    """Return where a text column holds one of `wanted`, never where it is missing."""
    return np.asarray(column.isin(list(wanted)).fillna(False).to_numpy(bool), dtype=bool)
